"""The pooled students (low-resolution body, upsampled logits) through quantization and every runnable target.

The per-target tests use the full-resolution ``student-full`` at 64x64 because it
is the cheapest net that exercises every op; this file chains ``student`` and
``student-wide`` (which pool their input 2x, so their sizes are multiples of 64)
through PTQ and export, so the variants that ship are covered end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import ConfigError
from facemat.models import build_model
from tests.helpers import warm_bn

SIZE = 128


@pytest.fixture(scope="module", params=["student", "student-wide"])
def student(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = warm_bn(build_model(request.param, size=SIZE))
    return save_checkpoint(tmp_path_factory.mktemp("default") / f"{request.param}.pt", model)


def test_quantization_refuses_sizes_the_pooled_student_cannot_take(student: Path, tmp_path: Path):
    from quantize.ptq import PTQSettings, run_ptq

    with pytest.raises(ConfigError, match="--size 64: this student needs a multiple of 64 of at least 128"):
        run_ptq(PTQSettings(student=str(student), recipe="xnnpack", out=str(tmp_path / "q"), calib=1, batch=1,
                            size=64, workers=0))


@pytest.mark.slow
def test_default_student_ptq_and_export_pass_parity(student: Path, tmp_path: Path):
    from quantize.ptq import PTQSettings, run_ptq
    from targets.export import ExportSettings, run_export

    qdirs = []
    for recipe in ("xnnpack", "litert"):
        out = tmp_path / f"ptq-{recipe}"
        run_ptq(PTQSettings(student=str(student), recipe=recipe, out=str(out), calib=4, batch=2, size=SIZE,
                            workers=0))
        qdirs.append(str(out))
    art = tmp_path / "artifacts"
    for target, precision in (("executorch", "fp32"), ("executorch", "int8"), ("tflite", "int8"),
                              ("onnx", "int8")):
        run_export(ExportSettings(out=str(art), target=target, precision=precision, checkpoint=str(student),
                                  quantized=tuple(qdirs), parity_images=4, calib_images=4, layout="NHWC"))
    manifest = json.loads((art / "manifest.json").read_text())["artifacts"]
    assert set(manifest) == {"executorch-xnnpack-fp32-nhwc", "executorch-xnnpack-int8-nhwc", "tflite-int8-nhwc",
                             "onnx-int8-nhwc"}
    for aid, e in manifest.items():
        assert e["parity"]["passed"], aid
        assert e["input"]["shape"] == [1, SIZE, SIZE, 3] and e["input"]["dtype"] == "float32", aid
    assert manifest["executorch-xnnpack-fp32-nhwc"]["parity"]["vs_fp32"]["max_abs"] <= 1e-4
    assert manifest["executorch-xnnpack-int8-nhwc"]["checks"]["delegation"]["portable_ops"] == {}
    assert manifest["tflite-int8-nhwc"]["checks"]["xnnpack"]["fully_delegated"]


@pytest.mark.slow
def test_guided_student_tflite_int8_keeps_float_input(tmp_path: Path):
    """student-guided feeds the raw image only to quantized ops (pooling, the guide multiply):
    without the export's relu, litert-torch would fold the quantize into an int8 input."""
    from facemat.checkpoint import save_checkpoint
    from quantize.ptq import PTQSettings, run_ptq
    from targets.export import ExportSettings, run_export

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "guided.pt", build_model("student-guided", size=SIZE).eval())
    run_ptq(PTQSettings(student=str(ckpt), recipe="litert", out=str(tmp_path / "q"), calib=2, batch=2, size=SIZE,
                        workers=0))
    run_export(ExportSettings(out=str(tmp_path / "a"), target="tflite", precision="int8", checkpoint=str(ckpt),
                              quantized=(str(tmp_path / "q"),), parity_images=2))
    entry = json.loads((tmp_path / "a" / "manifest.json").read_text())["artifacts"]["tflite-int8"]
    assert entry["checks"]["rewrites"]["float_inputs"] == 1
    assert entry["input"]["dtype"] == "float32" and entry["checks"]["io"]["inputs"][0]["dtype"] == "float32"
