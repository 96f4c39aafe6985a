"""Training: teacher, distillation, resume equivalence, DDP, evaluator on a foreign folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facemat.checkpoint import load_checkpoint, read_checkpoint
from facemat.errors import CheckpointError, ConfigError
from tests.helpers import write_disc_folder
from training.distill import DistillSettings, train_student
from training.evaluate import EvaluateSettings, evaluate
from training.teacher import TeacherSettings, train_teacher

FAST = dict(steps=6, batch=2, size=64, val_every=3, ckpt_every=2, log_every=1, workers=0, val_count=4, warmup=2)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture()
def teacher_run(tmp_path: Path, disc_folder: Path) -> Path:
    train_teacher(TeacherSettings(data=str(disc_folder), out=str(tmp_path / "teacher"), **FAST))
    return tmp_path / "teacher"


def test_teacher_writes_its_outputs(teacher_run: Path):
    assert sorted(p.name for p in teacher_run.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.jsonl"]
    config = json.loads((teacher_run / "config.json").read_text())
    assert config["steps"] == 6 and config["nll_beta"] == 0.5 and config["command"] == "training.teacher"
    records = _records(teacher_run)
    kinds = [r["kind"] for r in records]
    assert kinds.count("train") == 6 and kinds.count("val") == 2 and kinds[-1] == "done"
    train_rec = next(r for r in records if r["kind"] == "train")
    assert {"loss", "nll", "matte", "lr", "samples_per_s"} <= set(train_rec)
    model, ckpt = load_checkpoint(teacher_run / "last.pt", expect="teacher")
    assert ckpt["meta"]["step"] == 6 and ckpt["train_state"]["step"] == 6
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])


def test_resume_reaches_the_same_weights(tmp_path: Path, disc_folder: Path):
    whole = train_teacher(TeacherSettings(data=str(disc_folder), out=str(tmp_path / "a"), **FAST))
    part = train_teacher(TeacherSettings(data=str(disc_folder), out=str(tmp_path / "b"), **FAST), stop_after=3)
    assert part.steps == 3 and part.final_digest != whole.final_digest
    assert read_checkpoint(tmp_path / "b" / "last.pt")["train_state"]["step"] == 3
    resumed = train_teacher(TeacherSettings(data=str(disc_folder), out=str(tmp_path / "b"), resume=True, **FAST))
    assert resumed.steps == 6
    assert resumed.final_digest == whole.final_digest
    a_sd = read_checkpoint(tmp_path / "a" / "last.pt")["state_dict"]
    b_sd = read_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    assert all(torch.equal(a_sd[k], b_sd[k]) for k in a_sd)
    # The resumed log has each step once.
    steps = [r["step"] for r in _records(tmp_path / "b") if r["kind"] == "train"]
    assert steps == list(range(1, 7))
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.endswith(".tmp")]
    # Resuming a finished run is a no-op: same weights, no new log records.
    log_before = (tmp_path / "b" / "metrics.jsonl").read_text()
    again = train_teacher(TeacherSettings(data=str(disc_folder), out=str(tmp_path / "b"), resume=True, **FAST))
    assert again.steps == 6 and again.final_digest == whole.final_digest
    assert (tmp_path / "b" / "metrics.jsonl").read_text() == log_before


def test_existing_run_needs_resume(teacher_run: Path, disc_folder: Path):
    with pytest.raises(ConfigError, match="already holds a run .*--resume"):
        train_teacher(TeacherSettings(data=str(disc_folder), out=str(teacher_run), **FAST))
    changed = {**FAST, "batch": 4}
    with pytest.raises(ConfigError, match=r"settings differ .*batch: 2 -> 4"):
        train_teacher(TeacherSettings(data=str(disc_folder), out=str(teacher_run), resume=True, **changed))


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"steps": -1}, "--steps must be an integer >= 1"),
        ({"batch": 0}, "--batch must be an integer >= 1"),
        ({"size": 100}, "--size must be a positive multiple of 32"),
        ({"data": "/no/such/folder"}, "--data: /no/such/folder is not a folder"),
        ({"nll_beta": 2.0}, r"--nll-beta must be in \[0, 1\]"),
    ],
)
def test_teacher_settings_validation(flags, message):
    with pytest.raises(ConfigError, match=message):
        TeacherSettings(**{**dict(out="x"), **flags})


@pytest.mark.parametrize("kd", ["uncertainty", "uniform", "none"])
def test_distill_modes_train(tmp_path: Path, disc_folder: Path, teacher_run: Path, kd: str):
    out = tmp_path / f"student-{kd}"
    s = DistillSettings(data=str(disc_folder), out=str(out), teacher=str(teacher_run / "best.pt"), kd=kd, **FAST)
    train_student(s)
    model, ckpt = load_checkpoint(out / "best.pt", expect="student")
    assert ckpt["meta"]["settings"]["kd"] == kd
    rec = next(r for r in _records(out) if r["kind"] == "train")
    assert ("kd" in rec) == (kd != "none")


def test_distill_refuses_a_student_as_teacher(tmp_path: Path, disc_folder: Path, teacher_run: Path):
    s = DistillSettings(data=str(disc_folder), out=str(tmp_path / "s"), teacher=str(teacher_run / "best.pt"), **FAST)
    train_student(s)
    bad = DistillSettings(data=str(disc_folder), out=str(tmp_path / "s2"), teacher=str(tmp_path / "s" / "best.pt"),
                          **FAST)
    with pytest.raises(CheckpointError, match="holds a student .* but a teacher checkpoint is needed"):
        train_student(bad)


def test_distill_kd_weight_follows_teacher_uncertainty():
    # The uncertainty-weighted KD loss must weigh pixels by b: identical errors
    # at a high-b pixel cost more than at a low-b pixel.
    from training.distill import distill_loss

    class FixedTeacher(torch.nn.Module):
        def forward(self, x):
            b = torch.ones(x.shape[0], 1, *x.shape[-2:])
            b[..., 0, 0] = 9.0
            return torch.zeros(x.shape[0], 1, *x.shape[-2:]), b

    class Student(torch.nn.Module):
        def __init__(self, where):
            super().__init__()
            self.where = where

        def forward(self, x):
            a = torch.zeros(x.shape[0], 1, *x.shape[-2:])
            a[..., self.where[0], self.where[1]] = 1.0
            return a

    batch = {"image": torch.zeros(1, 3, 32, 32), "alpha": torch.zeros(1, 1, 32, 32)}
    base = dict(out="x", kd="uncertainty", teacher=__file__, kd_lambda=1.0, gamma=0.0)
    fn = distill_loss(DistillSettings(**base), FixedTeacher())
    high, _ = fn(Student((0, 0)), batch)
    low, _ = fn(Student((3, 3)), batch)
    # mean(b) = (9 + 1023) / 1024; w = 1 + b / mean(b); one unit error out of 1024 pixels.
    mean_b = (9 + 1023) / 1024
    assert high.item() == pytest.approx((1 + 9 / mean_b) / 1024)
    assert low.item() == pytest.approx((1 + 1 / mean_b) / 1024)
    uniform = distill_loss(DistillSettings(**{**base, "kd": "uniform"}), FixedTeacher())
    assert uniform(Student((0, 0)), batch)[0].item() == pytest.approx(1 / 1024)


def test_ddp_two_cpu_processes_end_identical(tmp_path: Path, disc_folder: Path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "training.teacher", "--data", str(disc_folder), "--out", str(out), "--steps", "3", "--batch", "2",
           "--size", "64", "--val-every", "3", "--workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = [r for r in _records(out) if r["kind"] == "ddp"]
    assert len(ddp) == 1
    assert len(ddp[0]["rank_param_sha256"]) == 2 and len(set(ddp[0]["rank_param_sha256"])) == 1
    assert len(set(ddp[0]["rank_weight_sha256"])) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    # Only rank 0 wrote checkpoints, from the unwrapped model.
    load_checkpoint(out / "last.pt", expect="teacher")
    assert proc.stdout.count("teacher: 3 steps") == 1


def test_evaluator_on_a_foreign_folder(tmp_path: Path, teacher_run: Path):
    from facemat.data.folder import MattingFolder
    from facemat.metrics import matting_metrics

    foreign = write_disc_folder(tmp_path / "foreign", count=5, size=96, seed=123)
    report = evaluate(EvaluateSettings(checkpoint=str(teacher_run / "best.pt"), data=str(foreign),
                                       json_out=None, batch=2))
    assert report["images"] == 5 and report["teacher"] == "self"
    assert set(report["bands"]) == {"overall", "boundary", "uncertainty"}
    assert set(report["bands"]["overall"]) == {"sad", "mse", "grad", "conn", "iou"}
    # The overall figures are the per-image means of facemat.metrics on the model's output.
    model, _ = load_checkpoint(teacher_run / "best.pt")
    folder = MattingFolder(foreign)
    sads = []
    with torch.no_grad():
        for i in range(5):
            item = folder[i]
            alpha, _ = model(item["image"][None])
            sads.append(matting_metrics(alpha[0, 0].numpy(), item["alpha"][0].numpy())["sad"])
    assert report["bands"]["overall"]["sad"] == pytest.approx(np.mean(sads), rel=1e-5)
    rho = report["uncertainty_error_spearman"]
    assert -1 <= rho["pooled"] <= 1 and rho["images"] == 5


def test_evaluator_counts_face_free_images(tmp_path: Path, teacher_run: Path):
    import cv2

    from training.evaluate import format_table

    folder = write_disc_folder(tmp_path / "free", count=4, size=64, seed=7)
    blank = sorted((folder / "alphas").glob("*.png"))[:2]
    for path in blank:
        cv2.imwrite(str(path), np.zeros((64, 64), np.uint8))
    report = evaluate(EvaluateSettings(checkpoint=str(teacher_run / "best.pt"), data=str(folder), json_out=None,
                                       batch=2, baseline=False))
    assert report["face_free_images"] == 2
    assert "2 of these images hold no face" in format_table(report)
    for path in sorted((folder / "alphas").glob("*.png"))[2:]:
        cv2.imwrite(str(path), np.zeros((64, 64), np.uint8))
    report = evaluate(EvaluateSettings(checkpoint=str(teacher_run / "best.pt"), data=str(folder), json_out=None,
                                       batch=2, baseline=False))
    assert report["face_free_images"] == 4 and "No image here holds a face" in format_table(report)


def test_evaluate_cli_json(tmp_path: Path, teacher_run: Path, disc_folder: Path):
    out_json = tmp_path / "eval.json"
    train_student(DistillSettings(data=str(disc_folder), out=str(tmp_path / "s"),
                                  teacher=str(teacher_run / "best.pt"), **FAST))
    proc = subprocess.run(
        [sys.executable, "-m", "training.evaluate", "--checkpoint", str(tmp_path / "s" / "best.pt"),
         "--teacher", str(teacher_run / "best.pt"), "--data", str(disc_folder), "--json", str(out_json)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out_json.read_text())
    assert report["kind"] == "student" and report["teacher"] == str(teacher_run / "best.pt")
    assert "uncertainty" in report["bands"]
    assert "boundary" in proc.stdout and "Spearman" in proc.stdout


def test_evaluate_cli_errors(tmp_path: Path, disc_folder: Path):
    proc = subprocess.run([sys.executable, "-m", "training.evaluate", "--checkpoint", str(tmp_path / "none.pt"),
                           "--data", str(disc_folder)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --checkpoint: {tmp_path / 'none.pt'} is not a file"]


def test_synth_stream_trains_on_deterministic_crops_of_full_renders():
    from facemat.data.stream import StreamDataset, build_datasets
    from facemat.data.synth import SynthDataset
    from training.common import TrainSettings

    render = SynthDataset(100, seed=3, size=128)
    stream = StreamDataset(render, None, seed=3, crop=64)
    item = stream[7]
    full = render[7]
    assert item["image"].shape == (3, 64, 64) and item["alpha"].shape == (1, 64, 64)
    # The crop is a window of the full render, at the same pixel scale.
    found = [(y, x) for y in range(65) for x in range(65)
             if torch.equal(full["alpha"][:, y:y + 64, x:x + 64], item["alpha"])
             and torch.equal(full["image"][:, y:y + 64, x:x + 64], item["image"])]
    assert found
    assert torch.equal(stream[7]["image"], item["image"])  # deterministic per index
    train, val, desc = build_datasets("synth", size=64, seed=0, render_size=128, val_count=2)
    assert train[0]["image"].shape[-1] == 64 and val[0]["image"].shape[-1] == 128
    with pytest.raises(ConfigError, match="--render-size must be a multiple of 32 and >= --size"):
        TrainSettings(size=128, render_size=96, out="x")


def test_kd_ablation_runs_each_arm_per_seed_and_reports_mean_and_sd(tmp_path: Path, teacher_run: Path,
                                                                  disc_folder: Path):
    from training.ablation import main as ablation_main

    out = tmp_path / "abl"
    argv = ["--teacher", str(teacher_run / "best.pt"), "--out", str(out), "--eval", str(disc_folder),
            "--seeds", "1,2", "--arms", "uniform", "--", "--data", str(disc_folder), "--steps", "2", "--batch", "2",
            "--size", "64", "--val-every", "2", "--ckpt-every", "2", "--workers", "0", "--val-count", "2"]
    assert ablation_main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    row = report["rows"]["uniform"][str(disc_folder)]
    sads = [json.loads((out / f"uniform-seed{s}" / "eval.json").read_text())["bands"]["overall"]["sad"]
            for s in (1, 2)]
    assert row["sad"]["mean"] == pytest.approx(np.mean(sads)) and row["sad"]["n"] == 2
    assert row["sad"]["sd"] == pytest.approx(np.std(sads, ddof=1))
    assert row["mesh_oval_iou"] is not None and 0.0 <= row["mesh_oval_iou"] <= 1.0
    # A finished run is reused, not trained again.
    stamp = (out / "uniform-seed1" / "best.pt").stat().st_mtime_ns
    assert ablation_main(argv) == 0
    assert (out / "uniform-seed1" / "best.pt").stat().st_mtime_ns == stamp
    with pytest.raises(ConfigError, match="--arms"):
        ablation_main(["--teacher", str(teacher_run / "best.pt"), "--out", str(out), "--eval", str(disc_folder),
                       "--arms", "bogus"])
