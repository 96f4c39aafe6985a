"""ONNX target: fp32 and int8 QDQ artifacts, run in onnxruntime on generated faces; error paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import ConfigError
from facemat.models import build_model
from targets import onnx as target
from targets.common import ExportError, ExportJob, IOSpec, Source
from targets.parity import THRESHOLDS, check, measure, parity_images, torch_outputs
from targets.source import from_checkpoint
from tests.helpers import warm_bn

SIZE = 64
IO = IOSpec(size=SIZE)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    torch.manual_seed(0)
    student = warm_bn(build_model("student-full", size=SIZE))
    return from_checkpoint(save_checkpoint(tmp_path_factory.mktemp("onnx") / "student.pt", student))


@pytest.fixture(scope="module")
def faces(source: Source):
    data = parity_images(SIZE, count=8)
    return data, torch_outputs(source.model, data.images)


def _calib(count: int = 8) -> list[np.ndarray]:
    from facemat.data.synth import render_sample

    return [np.asarray(render_sample(0, i, size=SIZE, split="calib").image, np.float32).transpose(2, 0, 1)[None] / 255.0
            for i in range(count)]


def _one_file(folder: Path, name: str) -> None:
    # One self-contained file: no external weights, no temp file left behind.
    assert sorted(p.name for p in folder.iterdir()) == [name]


def test_fp32_exports_simplified_single_file_and_matches_eager(tmp_path: Path, source: Source, faces):
    import onnx

    built = target.build(ExportJob("onnx", "fp32", tmp_path / "m.onnx", IO), source)
    _one_file(tmp_path, "m.onnx")
    c = built.checks
    assert c["simplified"] and c["external_data"] is False and c["opset"] >= 18
    assert c["io"] == {"inputs": [{"name": "image", "dtype": "float32", "shape": [1, 3, SIZE, SIZE]}],
                       "outputs": [{"name": "alpha", "dtype": "float32", "shape": [1, 1, SIZE, SIZE]}]}
    # BatchNorm folded into the convolutions; only the student's own ops remain.
    assert set(c["ops"]) <= {"Conv", "Relu", "Add", "Concat", "Resize", "Sigmoid", "Sub", "Div", "Mul"}
    assert c["ops"]["Conv"] > 20 and set(c["initializer_dtypes"]) == {"FLOAT"}
    assert built.runs_here and built.converter["onnxsim"] != "missing" and "onnxruntime" in built.runtime
    model = onnx.load_model(str(built.path))
    assert {p.key: p.value for p in model.metadata_props}["facemat.source_sha256"] == source.sha256
    assert target.conv_quantization(model)["conv_weights_quantized"] == 0

    runner = target.load_runner(built.path, IO, threads=1)
    data, ref = faces
    alpha = runner(data.images[:1])
    assert alpha.shape == (1, 1, SIZE, SIZE) and alpha.dtype == np.float32
    result = measure(runner, ref, data)
    check("fp32", result["vs_fp32"], None, "onnx fp32")
    assert result["vs_fp32"]["max_abs"] <= THRESHOLDS["fp32"]["max_abs"]


def test_fp32_nhwc_takes_and_returns_channels_last(tmp_path: Path, source: Source, faces):
    io = IOSpec(size=SIZE, layout="NHWC")
    built = target.build(ExportJob("onnx", "fp32", tmp_path / "m.onnx", io), source)
    assert built.checks["io"]["inputs"][0]["shape"] == [1, SIZE, SIZE, 3]
    assert built.checks["io"]["outputs"][0]["shape"] == [1, SIZE, SIZE, 1]
    runner = target.load_runner(built.path, io, threads=1)
    data, ref = faces
    assert runner.invoke(runner.prepare(data.images[:1])).shape == (1, SIZE, SIZE, 1)
    check("fp32", measure(runner, ref, data)["vs_fp32"], None, "onnx fp32 NHWC")


def test_int8_quantizes_every_conv_and_stays_close_to_fp32(tmp_path: Path, source: Source, faces):
    job = ExportJob("onnx", "int8", tmp_path / "m.onnx", IO, options={"calib_images": _calib()})
    built = target.build(job, source)
    _one_file(tmp_path, "m.onnx")
    q = built.checks["quantization"]
    assert q["convs"] > 20 and q["conv_weights_quantized"] == q["convs"] == q["conv_inputs_quantized"]
    assert q["weight_dtypes"] == {"INT8": q["convs"]} and q["unquantized_convs"] == []
    assert (q["format"], q["activation_type"], q["per_channel"], q["reduce_range"]) == ("QDQ", "uint8", True, True)
    assert q["calibration_images"] == 8
    # onnxruntime really runs int8 kernels: every Conv fused into a QLinearConv.
    assert q["ort_fused_ops"].get("QLinearConv") == q["convs"] and "Conv" not in q["ort_fused_ops"]
    assert built.checks["opsets"] == {"ai.onnx": built.checks["opset"]}  # no stray domains from the quantizer
    assert built.checks["io"]["inputs"][0]["dtype"] == "float32"  # float I/O, quantize/dequantize inside

    data, ref = faces
    result = measure(target.load_runner(built.path, IO, threads=1), ref, data)
    check("int8", result["vs_fp32"], None, "onnx int8")
    assert 0 < result["vs_fp32"]["mse"] <= THRESHOLDS["int8"]["mse"]


def test_refuses_unknown_precision_and_quantized_source(tmp_path: Path, source: Source):
    with pytest.raises(ConfigError, match=r"precision 'fp16' is not offered; choose one of fp32, int8"):
        target.build(ExportJob("onnx", "fp16", tmp_path / "m.onnx", IO), source)
    quantized = Source(kind="quantized", path=tmp_path / "model.pt2", sha256="0" * 64, model=source.model,
                       size=SIZE, recipe="xnnpack")
    with pytest.raises(ConfigError, match="ONNX int8 is made from the checkpoint"):
        target.build(ExportJob("onnx", "int8", tmp_path / "m.onnx", IO), quantized)
    with pytest.raises(ConfigError, match="input kind 'image' is not offered"):
        target.build(ExportJob("onnx", "fp32", tmp_path / "m.onnx", IOSpec(size=SIZE, input_kind="image")), source)
    with pytest.raises(ConfigError, match="differs from the model's fixed size 64"):
        target.build(ExportJob("onnx", "fp32", tmp_path / "m.onnx", IOSpec(size=128)), source)
    assert not list(tmp_path.iterdir())


def test_refuses_bad_calibration_images_and_writes_nothing(tmp_path: Path, source: Source):
    bad = [np.zeros((1, SIZE, SIZE, 3), np.float32)]
    with pytest.raises(ConfigError, match=r"calib_images\[0\] has shape \[1, 64, 64, 3\], expected \[1, 3, 64, 64\]"):
        target.build(ExportJob("onnx", "int8", tmp_path / "m.onnx", IO, options={"calib_images": bad}), source)
    with pytest.raises(ConfigError, match="calib_images'] is empty"):
        target.build(ExportJob("onnx", "int8", tmp_path / "m.onnx", IO, options={"calib_images": []}), source)
    with pytest.raises(ConfigError, match=r"options\['reduce_range'\] must be True or False, got 'no'"):
        target.build(ExportJob("onnx", "int8", tmp_path / "m.onnx", IO, options={"reduce_range": "no"}), source)
    assert not list(tmp_path.iterdir())


def test_load_runner_errors(tmp_path: Path):
    with pytest.raises(ExportError, match="no such ONNX artifact"):
        target.load_runner(tmp_path / "missing.onnx", IO)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="onnxruntime cannot load it"):
        target.load_runner(tmp_path / "junk.onnx", IO)
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        target.load_runner(tmp_path / "junk.onnx", IO, threads=0)


def test_import_is_light_and_onnx_is_the_real_package():
    # targets/onnx.py shares its name with the onnx package: the module must not shadow it,
    # and importing it must not load onnxruntime (style rule 11).
    code = ("import sys, targets.onnx as t; assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'; "
            "import onnx; assert onnx.__name__ == 'onnx' and hasattr(onnx, 'checker'), onnx.__file__; "
            "assert t.PRECISIONS == {'fp32': 'checkpoint', 'int8': 'checkpoint'}")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
