"""targets.export: the artifact matrix, the manifest, parity at export, no-op re-runs, failures that keep old work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.crop import DEFAULT as DEFAULT_CROP
from facemat.crop import CropSpec
from facemat.errors import CheckpointError, ConfigError
from facemat.models import build_model
from targets.common import ExportError
from targets.export import ExportSettings, main, plan_matrix, run_export
from targets.manifest import artifact_sha256, read_manifest, update_manifest, verify_entry
from targets.parity import check, compare
from tests.helpers import warm_bn


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = warm_bn(build_model("student-full", size=64))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.pt", model)


def test_plan_matrix_from_a_checkpoint_and_recipes(student_ckpt: Path):
    s = ExportSettings(checkpoint=str(student_ckpt), all=True)
    ids = [p.id for p in plan_matrix(s, {"checkpoint"})]
    assert ids == ["executorch-xnnpack-fp32", "executorch-coreml-fp16", "coreml-fp32", "coreml-fp16", "coreml-w8",
                   "tflite-fp32", "tflite-fp16", "onnx-fp32", "onnx-int8"]
    ids = [p.id for p in plan_matrix(s, {"checkpoint", "xnnpack", "coreml", "litert"})]
    assert {"executorch-xnnpack-int8", "executorch-coreml-int8", "coreml-w8a8", "tflite-int8"} <= set(ids)
    assert len(ids) == 13
    one = ExportSettings(checkpoint=str(student_ckpt), target="tflite", precision="fp32", layout="NHWC")
    assert [p.id for p in plan_matrix(one, {"checkpoint"})] == ["tflite-fp32-nhwc"]


@pytest.mark.parametrize("kwargs, message", [
    ({"target": "tflite"}, "give --target and --precision"),
    ({"target": "tflite", "precision": "fp32", "checkpoint": None}, "nothing to export"),
    ({"target": "tflite", "precision": "fp32", "delegate": "coreml"}, "--delegate applies to --target executorch"),
    ({"target": "tflite", "precision": "fp32", "size": 100}, "--size must be a positive multiple of 32"),
    ({"target": "tflite", "precision": "fp32", "layout": "HWC"}, "--layout must be NCHW or NHWC"),
])
def test_settings_errors(student_ckpt: Path, kwargs, message):
    base = {"checkpoint": str(student_ckpt)}
    with pytest.raises(ConfigError, match=message):
        ExportSettings(**{**base, **kwargs})


def test_missing_source_and_unknown_precision_are_named(student_ckpt: Path):
    s = ExportSettings(checkpoint=str(student_ckpt), target="tflite", precision="int8")
    with pytest.raises(ConfigError, match="tflite int8 is built from --quantized DIR made with the 'litert' recipe"):
        plan_matrix(s, {"checkpoint"})
    s = ExportSettings(checkpoint=str(student_ckpt), target="onnx", precision="w8")
    with pytest.raises(ConfigError, match="--precision 'w8' is not offered for onnx; choose from fp32, int8"):
        plan_matrix(s, {"checkpoint"})


def test_manifest_hashes_updates_and_refuses_changed_files(tmp_path: Path):
    f = tmp_path / "a.onnx"
    f.write_bytes(b"abc")
    pkg = tmp_path / "m.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Data" / "w.bin").write_bytes(b"123")
    h_dir = artifact_sha256(pkg)
    (pkg / "Data" / "w.bin").write_bytes(b"124")
    assert artifact_sha256(pkg) != h_dir
    m = tmp_path / "manifest.json"
    update_manifest(m, {"a": {"id": "a", "path": "a.onnx", "sha256": artifact_sha256(f)}})
    update_manifest(m, {"b": {"id": "b", "path": "m.mlpackage", "sha256": h_dir}})
    data = read_manifest(m)
    assert set(data["artifacts"]) == {"a", "b"}
    assert verify_entry(tmp_path, data["artifacts"]["a"]) == f
    with pytest.raises(CheckpointError, match="b: .*m.mlpackage has sha256 .* the file changed after export"):
        verify_entry(tmp_path, data["artifacts"]["b"])
    m.write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
        read_manifest(m)


def test_parity_check_names_image_and_band():
    ref = np.zeros((3, 8, 8), np.float32)
    gt = np.zeros((3, 8, 8), np.float32)
    gt[2, 4:, :] = 0.5
    out = ref.copy()
    out[2, 5, 3] = 0.2
    fig = compare(out, ref, gt)
    assert fig["worst"] == {"image": 2, "y": 5, "x": 3, "band": "transition (0 < gt alpha < 1)"}
    assert fig["max_abs"] == pytest.approx(0.2)
    with pytest.raises(ExportError, match=r"parity failed: max_abs 0.2 > 0.0001 .* parity image 2 at \(y=5, x=3\) "
                                          r"in the transition"):
        check("fp32", fig, None, "onnx-fp32")
    with pytest.raises(ExportError, match="max_abs 0.2 > 0.02 .*; mse 0.000208 > 1e-05"):
        check("fp16", fig, None, "x")
    assert check("fp16", {**fig, "max_abs": 0.015, "mse": 2e-6}, None, "x") == {"max_abs": 2e-2, "mse": 1e-5}


def test_int8_parity_limits_follow_the_quantization_method():
    from targets.parity import QAT_FROM_TEACHER_THRESHOLDS, THRESHOLDS, parity_limits

    ptq = {"method": "ptq", "kd_from": None}
    qat_student = {"method": "qat", "kd_from": "student"}
    qat_teacher = {"method": "qat", "kd_from": "teacher"}
    assert parity_limits("int8", ptq) == parity_limits("int8", qat_student) == THRESHOLDS["int8"]
    assert parity_limits("w8a8", qat_teacher) == parity_limits("int8", qat_teacher) == QAT_FROM_TEACHER_THRESHOLDS
    assert parity_limits("fp32", None) == THRESHOLDS["fp32"]
    # A teacher-distilled QAT program sits ~2.5e-3 (MSE) from FP32 by design: that fails the PTQ bound only;
    # a collapsed run fails both, and a broken conversion fails the program bound whatever the method.
    fig = {"max_abs": 0.9, "mse": 2.5e-3, "worst": {"image": 0, "y": 1, "x": 2, "band": "transition"}}
    faithful = {**fig, "mse": 1e-6}
    with pytest.raises(ExportError, match="mse 0.0025 > 0.002 against the eager FP32 model"):
        check("int8", fig, faithful, "x", parity_limits("int8", ptq))
    assert check("int8", fig, faithful, "x", parity_limits("int8", qat_teacher)) == QAT_FROM_TEACHER_THRESHOLDS
    with pytest.raises(ExportError, match="mse 0.05 > 0.01 against the eager FP32 model"):
        check("int8", {**fig, "mse": 0.05}, faithful, "x", parity_limits("int8", qat_teacher))
    with pytest.raises(ExportError, match="mse 0.001 > 0.0005 against the int8 torch program"):
        check("int8", fig, {**fig, "mse": 1e-3}, "x", parity_limits("int8", qat_teacher))


def test_export_onnx_and_tflite_fp32_writes_manifest_and_reruns_as_noop(tmp_path: Path, student_ckpt: Path,
                                                                        capsys):
    out = tmp_path / "artifacts"
    for target in ("onnx", "tflite"):
        assert main(["--target", target, "--precision", "fp32", "--checkpoint", str(student_ckpt),
                     "--out", str(out), "--parity-images", "4"]) == 0
    data = json.loads((out / "manifest.json").read_text())
    assert set(data["artifacts"]) == {"onnx-fp32", "tflite-fp32"}
    for aid, e in data["artifacts"].items():
        assert (out / e["path"]).is_file() and e["sha256"] == artifact_sha256(out / e["path"])
        assert e["input"]["shape"] == [1, 3, 64, 64] and e["input"]["layout"] == "NCHW"
        assert e["input"]["value_range"] == [0.0, 1.0] and e["outputs"][0]["shape"] == [1, 1, 64, 64]
        assert e["source"]["sha256"] == __import__("facemat.checkpoint", fromlist=["x"]).file_sha256(student_ckpt)
        assert e["runs_here"] and e["parity"]["passed"] and e["parity"]["images"] == 4
        assert e["parity"]["vs_fp32"]["max_abs"] <= 1e-4
        assert e["converter"] and e["runtime"]
        # The crop contract the artifact was trained for is the code's, field for field.
        assert e["crop"] == DEFAULT_CROP.to_manifest() and CropSpec.from_manifest(e["crop"]) == DEFAULT_CROP
    assert not (out / ".staging").exists()
    capsys.readouterr()
    before = (out / "manifest.json").read_text()
    run_export(ExportSettings(out=str(out), target="onnx", precision="fp32", checkpoint=str(student_ckpt),
                              parity_images=4))
    assert "up to date, skipped" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["artifacts"] == json.loads(before)["artifacts"]


def test_failed_parity_keeps_the_old_artifact_and_manifest(tmp_path: Path, student_ckpt: Path, monkeypatch):
    out = tmp_path / "artifacts"
    s = ExportSettings(out=str(out), target="onnx", precision="fp32", checkpoint=str(student_ckpt), parity_images=2)
    run_export(s)
    old_bytes = (out / "onnx-fp32.onnx").read_bytes()
    old_manifest = (out / "manifest.json").read_text()
    import targets.parity

    monkeypatch.setitem(targets.parity.THRESHOLDS, "fp32", {"max_abs": -1.0})
    with pytest.raises(ExportError, match=r"onnx-fp32: parity failed: max_abs .* parity image \d+ at \(y=\d+, x=\d+\)"):
        run_export(ExportSettings(out=str(out), target="onnx", precision="fp32", checkpoint=str(student_ckpt),
                                  parity_images=2, force=True))
    assert (out / "onnx-fp32.onnx").read_bytes() == old_bytes
    assert (out / "manifest.json").read_text() == old_manifest
