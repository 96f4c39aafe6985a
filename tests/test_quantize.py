"""Quantization: BN folding, PT2E QAT/PTQ per recipe, converted-model checks, comparison report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import CheckpointError, ConfigError
from facemat.models import build_model
from quantize.core import fold_batchnorm, load_quantized, require_recipe
from quantize.ptq import PTQSettings, run_ptq
from quantize.qat import QATSettings, run_qat
from tests.conftest import warm_bn


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
    from tests.conftest import write_disc_folder

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


def test_qat_litert_and_uniform_weighting_need_no_teacher(tmp_path: Path, ckpts, folder: Path):
    s = QATSettings(student=str(ckpts["student"]), recipe="litert", weighting="uniform", out=str(tmp_path / "l"),
                    data=str(folder), steps=2, batch=2, size=64, calib=1, val_batches=1, workers=0)
    q = load_quantized(run_qat(s))
    assert q.recipe["weighting"] == "uniform" and q.recipe["teacher_sha256"] is None


@pytest.mark.parametrize(
    "flags, message",
    [
        ({"recipe": "tensorrt"}, "--recipe must be one of xnnpack, coreml, litert"),
        ({"weighting": "half"}, "--weighting must be one of uncertainty, uniform"),
        ({"teacher": None}, "--teacher: None is not a file"),
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
    from quantize.compare import CompareSettings, format_report, run_compare

    s = CompareSettings(student=str(ckpts["student"]), teacher=str(ckpts["teacher"]), recipe="xnnpack",
                        out=str(tmp_path / "cmp"), data=str(folder), eval_data=str(folder), eval_count=3,
                        qat_steps=2, calib=4, size=64, workers=0)
    report = run_compare(s)
    assert set(report["rows"]) == {"fp32", "ptq", "qat-uniform", "qat-uncertainty"}
    for name, row in report["rows"].items():
        assert set(row["gt"]) == {"overall", "boundary", "uncertainty"}
        assert ("ref" in row) == (name != "fp32")
    assert json.loads((tmp_path / "cmp" / "report.json").read_text())["recipe"] == "xnnpack"
    assert "qat-uncertainty" in format_report(report)
    # A second run reuses the finished quantizations.
    again = run_compare(s)
    assert again["rows"] == report["rows"]


def test_calibration_sees_whole_images_not_training_crops():
    # Moving-average observers fed with crops clipped full-frame activations;
    # calibration therefore runs on the uncropped stream.
    from quantize.core import full_view
    from training.common import TrainSettings, build_datasets

    train, _, _ = build_datasets(TrainSettings(size=64, render_size=128, val_count=1, out="x"))
    whole = full_view(train)
    assert train[3]["image"].shape[-1] == 64
    assert whole[3]["image"].shape[-1] == 128
    assert torch.equal(whole[3]["alpha"], train.base[3]["alpha"])
