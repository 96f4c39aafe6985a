"""``student-selfie`` through the deployment chain: the quantization-friendly graph, then PTQ -> TFLite int8.

The fast tests pin the two graph changes that let PT2E quantize the rebuilt
selfie segmenter without changing its outputs: RESIZE_BILINEAR as a fixed scale
factor (no symbolic-int size arithmetic for the quantizer to observe) and the
2x input pool as a fixed depthwise convolution (quantized, so the ``.tflite``
keeps a float32 input). The slow test runs the whole chain at 128x128.
"""

from __future__ import annotations

import json
import operator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facemat.models import build_model
from facemat.models.selfie import ImagePool
from facemat.pretrained import tflite as tfl
from targets.common import ExportError

SIZE = 128  # the smallest size the student takes: multiples of 64 (2x pool, then five stride-2 stages)


@pytest.fixture(scope="module")
def student() -> torch.nn.Module:
    return build_model("student-selfie", size=SIZE).eval()


def _resize_by_size(self: tfl.TFLiteGraph, op: dict, ins: list) -> torch.Tensor:
    """The former RESIZE_BILINEAR: output size computed from ``x.shape`` (half-pixel centres only)."""
    x = ins[0]
    size, in_shape = op["options"]["const_inputs"]["1"], self._shape(op["inputs"][0])
    assert op["options"].get("halfPixelCenters") and not op["options"].get("alignCorners")
    out = (int(round(x.shape[2] * size[0] / in_shape[1])), int(round(x.shape[3] * size[1] / in_shape[2])))
    return F.interpolate(x, size=out, mode="bilinear", align_corners=False)


def test_quantization_friendly_graph_keeps_the_outputs(student: torch.nn.Module, monkeypatch) -> None:
    """Same alpha as the former formulation (avg_pool2d input pool, size-based resize) on a random input:
    generated faces with random noise added, cropped non-square (not the config size)."""
    from targets.parity import parity_images

    faces = torch.from_numpy(parity_images(256, count=2, seed=7).images[:, :, 32:224, :])
    x = (faces + 0.1 * torch.randn(faces.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    with torch.no_grad():
        ours = student(x)
        monkeypatch.setattr(tfl.TFLiteGraph, "_op_RESIZE_BILINEAR", _resize_by_size)
        (logit,) = student.backbone(F.avg_pool2d(x, 2))
        before = torch.sigmoid(F.interpolate(logit, scale_factor=2, mode="bilinear", align_corners=False))
    assert ours.shape == (2, 1, 192, 256)
    # The resize is bit-identical; the pool as a conv sums quarters instead of quartering a sum.
    torch.testing.assert_close(ours, before, atol=1e-5, rtol=0)
    assert 0.01 < float(ours.std())  # a real output, not a constant both sides agree on
    pool = ImagePool(2)
    torch.testing.assert_close(pool(x), F.avg_pool2d(x, 2), atol=1e-6, rtol=0)
    assert not pool.state_dict()  # the fixed kernel is not in checkpoints
    assert not any(k.startswith("pool.") for k in student.state_dict())


@pytest.mark.slow  # torch.export with dynamic H, W of the 150-op graph: ~50 s of CPU
def test_dynamic_export_has_no_symbolic_arithmetic(student: torch.nn.Module) -> None:
    """With dynamic H and W, no op computes on SymInts (what the PT2E observers choked on: 'int' has no numel),
    and the image's first consumer is a convolution (quantized, so the int8 artifact keeps float input)."""
    from quantize.core import export_for_quantization

    gm = export_for_quantization(student, SIZE)
    sym_math = [n for n in gm.graph.nodes if n.op == "call_function" and n.target in
                (operator.mul, operator.truediv, operator.floordiv, operator.add, operator.sub, round)]
    assert not sym_math, [f"{n.name}: {n.target}" for n in sym_math]
    image = next(n for n in gm.graph.nodes if n.op == "placeholder" and n.name == "image")
    assert {u.target for u in image.users if u.op == "call_function"} == {torch.ops.aten.conv2d.default}
    upsamples = [n for n in gm.graph.nodes if n.target == torch.ops.aten.upsample_bilinear2d.vec]
    assert len(upsamples) == 4  # the graph's three 2x resizes and the student's logit upsampling


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=ExportError, reason=(
    "known: MediaPipe's pretrained (untrained here) segmenter is too sensitive for int8 on generated faces: "
    "PTQ parity MSE ~0.02 vs the 2e-3 limit in TFLite, ExecuTorch and ONNX alike; int8-sized random weight "
    "noise alone gives ~1.6e-3 in FP32. strict: a fix makes this XPASS, which fails until the mark is removed"))
def test_student_selfie_ptq_litert_to_tflite_int8(tmp_path: Path, student: torch.nn.Module) -> None:
    """Build -> PTQ (litert, 4 calibration images) -> TFLite int8 -> run in LiteRT: parity passed in the manifest."""
    from facemat.checkpoint import save_checkpoint
    from quantize.ptq import PTQSettings, run_ptq
    from targets.export import ExportSettings, run_export

    ckpt = save_checkpoint(tmp_path / "student.pt", student)
    run_ptq(PTQSettings(student=str(ckpt), recipe="litert", out=str(tmp_path / "q"), calib=4, batch=4,
                        size=SIZE, workers=0))
    run_export(ExportSettings(out=str(tmp_path / "art"), target="tflite", precision="int8",
                              quantized=(str(tmp_path / "q"),), parity_images=8))
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    (entry,) = manifest["artifacts"].values() if isinstance(manifest["artifacts"], dict) else manifest["artifacts"]
    assert entry["target"] == "tflite" and entry["precision"] == "int8"
    assert entry["parity"]["passed"] is True
    assert entry["parity"]["vs_fp32"]["mse"] <= entry["parity"]["thresholds"]["mse"]
    io = entry["checks"]["io"]
    assert [t["dtype"] for t in io["inputs"]] == ["float32"] and [t["dtype"] for t in io["outputs"]] == ["float32"]
    assert entry["checks"]["xnnpack"]["fully_delegated"] is True
