"""Quantization: BN folding, PT2E QAT/PTQ per recipe, converted-model checks, comparison report."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import CheckpointError, ConfigError
from facemat.models import build_model
from quantize.core import fold_batchnorm, load_quantized, require_recipe
from quantize.ptq import PTQSettings, run_ptq
from quantize.qat import QATSettings, run_qat
from tests.helpers import warm_bn


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("q")
    torch.manual_seed(0)
    student = warm_bn(build_model("student-full", size=64))
    teacher = warm_bn(build_model("teacher", size=64))
    return {"student": save_checkpoint(root / "student.pt", student),
            "teacher": save_checkpoint(root / "teacher.pt", teacher)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from tests.helpers import write_disc_folder

    return write_disc_folder(tmp_path_factory.mktemp("d") / "discs", count=12)


def test_fold_batchnorm_keeps_outputs():
    torch.manual_seed(0)
    model = warm_bn(build_model("student-full", size=64))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the source is untouched
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


def _ops(program) -> set[str]:
    return {str(n.target) for n in program.graph.nodes if n.op == "call_function"}


def test_qat_xnnpack_lowers_loss_and_saves_converted_model(tmp_path: Path, ckpts, folder: Path):
    s = QATSettings(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack",
                    out=str(tmp_path / "qat"), data=str(folder), steps=20, lr=1e-3, batch=4, size=64, calib=2,
                    val_batches=1, workers=0, log_every=5, freeze_at=0.5)
    path = run_qat(s)
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json", "metrics.jsonl", "model.pt2",
                                                              "recipe.json"]
    q = load_quantized(path.parent)
    assert q.recipe["recipe"] == "xnnpack" and q.recipe["method"] == "qat" and q.recipe["weighting"] == "uncertainty"
    assert q.recipe["kd_from"] == "teacher"  # the default distillation target
    assert len(q.recipe["source_checkpoint_sha256"]) == 64
    # QAT lowered the distillation + matting loss measured with frozen observers.
    assert q.recipe["val_loss_after"] < q.recipe["val_loss_before"]
    # Converted: real quantize/dequantize ops, batch 1 at the model's size.
    ops = _ops(q.program)
    assert any("quantize_per_tensor" in o for o in ops)
    assert any("dequantize_per_channel" in o for o in ops)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        alpha = q.module()(x)
    assert alpha.shape == (1, 1, 64, 64) and 0 <= alpha.min() and alpha.max() <= 1
    records = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]
    # Observers adapt for the first half (steps 1-10), then the ranges are frozen.
    assert [r["observers"] for r in records if r["kind"] == "train"] == [True, True, False, False]


@pytest.mark.parametrize("recipe", ["xnnpack", "litert", pytest.param("coreml", marks=pytest.mark.slow)])
def test_ptq_each_recipe_tracks_fp32(tmp_path: Path, ckpts, folder: Path, recipe: str):
    from facemat.checkpoint import load_checkpoint

    path = run_ptq(PTQSettings(student=str(ckpts["student"]), recipe=recipe, out=str(tmp_path / recipe),
                               data=str(folder), calib=8, batch=4, size=64, workers=0))
    q = load_quantized(path)
    assert q.recipe["recipe"] == recipe and q.recipe["method"] == "ptq"
    student, _ = load_checkpoint(ckpts["student"])
    from facemat.data.folder import MattingFolder

    x = MattingFolder(folder)[0]["image"][None]
    with torch.no_grad():
        err = (q.module()(x) - student(x)).abs()
    # int8 of an untrained net: close to FP32 but not identical.
    assert 0 < err.mean().item() < 0.05


def test_qat_litert_uniform_weighting_from_student_needs_no_teacher(tmp_path: Path, ckpts, folder: Path):
    s = QATSettings(student=str(ckpts["student"]), recipe="litert", weighting="uniform", kd_from="student",
                    out=str(tmp_path / "l"),
                    data=str(folder), steps=2, batch=2, size=64, calib=1, val_batches=1, workers=0)
    q = load_quantized(run_qat(s))
    assert q.recipe["weighting"] == "uniform" and q.recipe["teacher_sha256"] is None
    assert q.recipe["kd_from"] == "student"


@pytest.mark.parametrize("kd_from", ["teacher", "student"])
def test_qat_distils_from_the_chosen_target(ckpts, kd_from: str):
    # The KD term vanishes exactly when the model being trained outputs the chosen target.
    from facemat.checkpoint import load_checkpoint
    from quantize.qat import _loss

    student, _ = load_checkpoint(ckpts["student"])
    teacher, _ = load_checkpoint(ckpts["teacher"])
    s = QATSettings(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack", out="x",
                    kd_from=kd_from, gamma=0.0)
    batch = {"image": torch.rand(2, 3, 64, 64), "alpha": torch.rand(2, 1, 64, 64)}
    with torch.no_grad():
        as_teacher = _loss(s, lambda x: teacher(x)[0], student, teacher, batch)[1]["kd"]
        as_student = _loss(s, student, student, teacher, batch)[1]["kd"]
    assert (as_teacher == 0.0) == (kd_from == "teacher") and (as_student == 0.0) == (kd_from == "student")
    assert max(as_teacher, as_student) > 1e-3


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"recipe": "tensorrt"}, "--recipe must be one of xnnpack, coreml, litert"),
        ({"weighting": "half"}, "--weighting must be one of uncertainty, uniform"),
        ({"teacher": None}, "--teacher: None is not a file"),
        ({"kd_from": "oracle"}, "--kd-from must be one of student, teacher"),
        ({"teacher": None, "weighting": "uniform", "kd_from": "teacher"}, r"needed for --kd-from teacher"),
        ({"steps": 0}, "--steps must be >= 1"),
        ({"size": 100}, "--size must be a positive multiple of 32"),
        ({"freeze_at": -0.1}, r"--freeze-at must be in \[0, 1\]"),
    ],
)
def test_qat_settings_errors(ckpts, flags, message):
    base = dict(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack", out="x")
    with pytest.raises(ConfigError, match=message):
        QATSettings(**{**base, **flags})


def test_recipe_mismatch_and_bad_folders(tmp_path: Path):
    with pytest.raises(ConfigError, match="quantized with recipe 'coreml', but this target needs recipe 'xnnpack'"):
        require_recipe("coreml", "xnnpack", "--quantized runs/q")
    with pytest.raises(CheckpointError, match="no model.pt2"):
        load_quantized(tmp_path)
    (tmp_path / "model.pt2").write_bytes(b"\x00" * 100)
    (tmp_path / "recipe.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a readable exported program"):
        load_quantized(tmp_path)


@pytest.mark.slow
def test_compare_report(tmp_path: Path, ckpts, folder: Path):
    from quantize.compare import ARMS, CompareSettings, format_report, run_compare

    s = CompareSettings(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack",
                        out=str(tmp_path / "cmp"), data=str(folder), eval_data=str(folder), eval_count=3,
                        qat_steps=2, calib=4, size=64, seeds=(1, 2), workers=0)
    report = run_compare(s)
    assert set(report["rows"]) == {"fp32", *ARMS}
    for name, row in report["rows"].items():
        assert set(row["gt"]) == {"overall", "boundary", "uncertainty"}
        assert ("ref" in row) == (name != "fp32")
    # Each quantized row is the mean over the two seeds' converted models, with their spread.
    for arm in ARMS:
        per_seed = [report["runs"][arm][seed]["gt"]["uncertainty"]["sad"] for seed in ("1", "2")]
        assert report["rows"][arm]["gt"]["uncertainty"]["sad"] == pytest.approx(sum(per_seed) / 2)
        assert report["sd"][arm]["gt"]["uncertainty"]["sad"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    assert (tmp_path / "cmp" / "seed-2" / "qat-uncertainty" / "model.pt2").is_file()
    # The acceptance checks are computed from the measured means, whichever way they come out.
    checks = {c["check"]: c for c in report["checks"]}
    ptq_overall = 100 * (report["rows"]["ptq"]["gt"]["overall"]["sad"] / report["rows"]["fp32"]["gt"]["overall"]["sad"] - 1)
    assert checks["ptq: SAD overall within 2 % of FP32"]["ok"] == (ptq_overall <= 2.0)
    rows = report["rows"]
    assert checks["qat-uncertainty no worse than qat-uniform (uncertainty-band SAD)"]["ok"] == (
        rows["qat-uncertainty"]["gt"]["uncertainty"]["sad"] <= rows["qat-uniform"]["gt"]["uncertainty"]["sad"])
    assert len(report["checks"]) == 11
    assert json.loads((tmp_path / "cmp" / "report.json").read_text())["recipe"] == "xnnpack"
    text = format_report(report)
    assert "qat-uncertainty" in text and "acceptance checks:" in text and "mean over 2 seed(s)" in text
    # A second run reuses the finished quantizations; changed QAT settings rerun QAT only.
    pt2 = {p: p.stat().st_mtime_ns for p in (tmp_path / "cmp").rglob("model.pt2")}
    assert run_compare(s)["rows"] == report["rows"]
    assert {p: p.stat().st_mtime_ns for p in pt2} == pt2
    run_compare(replace(s, qat_steps=3))
    changed = {p.parent.name for p, t in pt2.items() if p.stat().st_mtime_ns != t}
    assert changed == {"qat-uniform", "qat-uncertainty"}


def test_compare_shows_whether_int8_adds_flicker(tmp_path: Path, ckpts):
    from facemat.checkpoint import load_checkpoint
    from facemat.data.synth import SynthSettings, generate
    from quantize.compare import CompareSettings, _temporal, format_temporal

    generate(SynthSettings(out=tmp_path / "clips", count=2, seed=5, size=64, split="test", frames=3))
    student, _ = load_checkpoint(ckpts["student"], expect="student")

    class Shimmer(torch.nn.Module):  # stands in for an int8 model whose output jitters frame to frame
        def __init__(self):
            super().__init__()
            self.gen = torch.Generator().manual_seed(0)

        def forward(self, x):
            return (student(x) + 0.05 * torch.randn(student(x).shape, generator=self.gen)).clamp(0, 1)

    s = CompareSettings(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack", out="x",
                        seeds=(1,), clips=str(tmp_path / "clips"))
    models = {"fp32": student, "seed-1/ptq": student, "seed-1/qat-uniform": Shimmer(),
              "seed-1/qat-uncertainty": student}
    t = _temporal(s, models, 64)
    assert t["int8_minus_fp32"]["ptq"]["flicker"] == 0.0
    assert t["int8_minus_fp32"]["qat-uniform"]["flicker"] > 1.0
    assert t["int8_minus_fp32"]["qat-uniform+filter"]["flicker"] < t["int8_minus_fp32"]["qat-uniform"]["flicker"]
    text = "\n".join(format_temporal(t))
    assert re.search(r"qat-uniform +flicker \+\d+\.\d+.*: adds flicker", text)
    assert re.search(r"ptq +flicker \+0\.00.*: no added flicker", text)
    with pytest.raises(ConfigError, match="--clips: .* is not a folder"):
        CompareSettings(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack", out="x",
                        clips=str(tmp_path / "none"))


def test_compare_settings_errors(ckpts):
    from quantize.compare import CompareSettings, parse_seeds

    assert parse_seeds("1, 2,3") == (1, 2, 3)
    with pytest.raises(ConfigError, match="--seeds must be comma-separated integers"):
        parse_seeds("1,two")
    base = dict(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack", out="x")
    for seeds in ((), (1, 1), (-1,)):
        with pytest.raises(ConfigError, match="--seeds must be distinct integers >= 0"):
            CompareSettings(**base, seeds=seeds)


def test_calibration_sees_whole_images_not_training_crops():
    # Moving-average observers fed with crops clipped full-frame activations;
    # calibration therefore runs on the uncropped stream.
    from facemat.data.stream import build_datasets
    from quantize.core import full_view

    train, _, _ = build_datasets("synth", size=64, seed=0, render_size=128, val_count=1)
    whole = full_view(train)
    assert train[3]["image"].shape[-1] == 64
    assert whole[3]["image"].shape[-1] == 128
    assert torch.equal(whole[3]["alpha"], train.base[3]["alpha"])
