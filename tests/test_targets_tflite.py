"""TFLite / LiteRT target: build each precision, read the saved file back, run it in ai-edge-litert on
generated faces and compare with the eager FP32 student (and, for int8, with the int8 torch program)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import ConfigError
from facemat.models import build_model
from targets import parity, tflite, tflite_rewrites
from targets.common import ExportError, ExportJob, IOSpec, Source
from targets.source import from_checkpoint, from_quantized
from tests.helpers import warm_bn

SIZE = 64
FACES = 8


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Source:
    torch.manual_seed(0)
    model = warm_bn(build_model("student-full", size=SIZE))
    path = save_checkpoint(tmp_path_factory.mktemp("tflite") / "student.pt", model)
    return from_checkpoint(path)


@pytest.fixture(scope="module")
def litert_int8(tmp_path_factory, student: Source) -> Source:
    from quantize.ptq import PTQSettings, run_ptq
    from tests.helpers import write_disc_folder

    root = tmp_path_factory.mktemp("ptq")
    discs = write_disc_folder(root / "discs", count=12)
    run_ptq(PTQSettings(student=str(student.path), recipe="litert", out=str(root / "litert"), data=str(discs),
                        calib=8, batch=4, size=SIZE, workers=0))
    return from_quantized(root / "litert")


@pytest.fixture(scope="module")
def faces(student: Source) -> tuple[parity.ParityImages, np.ndarray]:
    data = parity.parity_images(SIZE, count=FACES)
    return data, parity.torch_outputs(student.model, data.images)


def _job(tmp_path: Path, precision: str, layout: str = "NCHW") -> ExportJob:
    return ExportJob("tflite", precision, tmp_path / f"{precision}-{layout}.tflite", IOSpec(size=SIZE, layout=layout))


def _n_convs(checks: dict) -> int:
    return checks["ops"]["CONV_2D"] + checks["ops"]["DEPTHWISE_CONV_2D"]


def _check_common(art, job: ExportJob) -> None:
    """What every artifact must show when read back: the file, the I/O contract, one XNNPACK partition."""
    assert art.path == job.path and job.path.is_file() and art.checks["file_bytes"] == job.path.stat().st_size
    assert not list(job.path.parent.glob(".*.tmp*"))  # the temp file was renamed, not left behind
    assert art.dtype == "float32" and art.runs_here and art.not_run_reason is None
    assert art.converter["litert-torch"] != "missing" and art.runtime["ai-edge-litert"] != "missing"
    io = art.checks["io"]
    assert io["signatures"] == ["serving_default"]
    assert [(t["name"], t["shape"], t["dtype"], t["quantization"]) for t in io["inputs"]] == [
        ("image", job.io.input_shape(), "float32", None)]
    assert [(t["name"], t["shape"], t["dtype"], t["quantization"]) for t in io["outputs"]] == [
        ("alpha", job.io.output_shape(), "float32", None)]
    assert art.checks["xnnpack"] == {"partitions": 1, "fully_delegated": True}


def _run_parity(art, job: ExportJob, faces, program_ref: np.ndarray | None = None) -> dict:
    data, ref = faces
    runner = tflite.load_runner(art.path, job.io, threads=1)
    # prepare puts the NCHW image in the artifact's layout; invoke returns the raw output tensor.
    prepared = runner.prepare(data.images[:1])
    assert list(prepared.shape) == job.io.input_shape() and prepared.dtype == np.float32
    assert list(runner.invoke(prepared).shape) == job.io.output_shape()
    figures = parity.measure(runner, ref, data, program_ref)
    parity.check(job.precision, figures["vs_fp32"], figures.get("vs_program"), f"tflite {job.precision}")
    return figures


def test_fp32_nchw_matches_eager(tmp_path: Path, student: Source, faces):
    job = _job(tmp_path, "fp32")
    art = tflite.build(job, student)
    _check_common(art, job)
    assert art.checks["conv_weights"] == {"float32": _n_convs(art.checks)}
    assert art.checks["compute"] == "float32"
    assert "rewrites" not in art.checks and "float_ops" not in art.checks
    # NCHW I/O keeps one TRANSPOSE at the input edge (TFLite convolutions are NHWC).
    assert art.checks["transposes"] == 1
    figures = _run_parity(art, job, faces)
    assert figures["vs_fp32"]["max_abs"] <= 1e-4
    print(f"tflite fp32 NCHW vs eager: max_abs {figures['vs_fp32']['max_abs']:.3g}")
    # A runner for the wrong layout is refused with the found and expected shapes.
    with pytest.raises(ExportError, match=r"\[1, 64, 64, 3\]"):
        tflite.load_runner(job.path, IOSpec(size=SIZE, layout="NHWC"))


@pytest.mark.slow
def test_fp32_nhwc_has_no_transpose(tmp_path: Path, student: Source, faces):
    job = _job(tmp_path, "fp32", layout="NHWC")
    art = tflite.build(job, student)
    _check_common(art, job)
    assert art.checks["transposes"] == 0 and "TRANSPOSE" not in art.checks["ops"]
    figures = _run_parity(art, job, faces)
    assert figures["vs_fp32"]["max_abs"] <= 1e-4
    print(f"tflite fp32 NHWC vs eager: max_abs {figures['vs_fp32']['max_abs']:.3g}")


@pytest.mark.slow
def test_fp16_weights_dequantized_to_fp32_compute(tmp_path: Path, student: Source, faces):
    job = _job(tmp_path, "fp16")
    art = tflite.build(job, student)
    _check_common(art, job)
    n = _n_convs(art.checks)
    assert art.checks["conv_weights"] == {"float16 (DEQUANTIZE)": n}
    assert art.checks["ops"]["DEQUANTIZE"] == n  # one per conv weight, nothing else
    assert art.checks["compute"].startswith("float32")
    assert art.converter["ai-edge-quantizer"] != "missing"
    figures = _run_parity(art, job, faces)
    assert figures["vs_fp32"]["max_abs"] <= 1e-2
    print(f"tflite fp16 vs eager: max_abs {figures['vs_fp32']['max_abs']:.3g}")


@pytest.mark.slow
def test_int8_full_integer_matches_program(tmp_path: Path, litert_int8: Source, faces):
    job = _job(tmp_path, "int8")
    art = tflite.build(job, litert_int8)
    _check_common(art, job)
    checks = art.checks
    n = _n_convs(checks)
    assert checks["conv_weights"] == {"int8": n} and checks["conv_weights_per_channel"] == n
    # student-full normalises the raw image in float first, so its input needs no relu (float_inputs 0).
    assert checks["rewrites"] == {"weights_unfolded": n, "float_uses_rerouted": 0, "float_outputs": 1,
                                  "float_inputs": 0}
    # Float is left only at the edges: normalisation before the first QUANTIZE, the
    # NCHW layout ops, and the RELU that keeps the output DEQUANTIZE.
    assert set(checks["float_ops"]) <= {"SUB", "MUL", "TRANSPOSE", "RESHAPE", "RELU"}
    assert checks["ops"]["DEQUANTIZE"] == 1
    assert art.converter["torchao"] != "missing"
    program_ref = parity.torch_outputs(litert_int8.program.module(), faces[0].images)
    figures = _run_parity(art, job, faces, program_ref)
    assert figures["vs_fp32"]["mse"] <= 2e-3 and figures["vs_program"]["mse"] <= 5e-4
    print(f"tflite int8 vs eager: mse {figures['vs_fp32']['mse']:.3g} max_abs {figures['vs_fp32']['max_abs']:.3g}; "
          f"vs int8 program: mse {figures['vs_program']['mse']:.3g} max_abs {figures['vs_program']['max_abs']:.3g}")


@pytest.mark.slow
def test_int8_rewrites_keep_the_program_outputs(litert_int8: Source):
    qd = torch.ops.quantized_decomposed
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    want = litert_int8.program.module()(x)

    gm = litert_int8.program.module()
    n = tflite_rewrites.unfold_int8_weights(gm)
    assert n > 0
    for node in gm.graph.nodes:  # no dequantize reads an int8 constant any more
        if node.op == "call_function" and node.target == qd.dequantize_per_channel.default:
            assert node.args[0].target == qd.quantize_per_channel.default
    gm.recompile()
    assert torch.equal(gm(x), want)

    # Simulate a concat the quantizer left unannotated: it reads the float tensor
    # that also feeds a quantize (the trap behind "'tfl.pad' op ... same scale constraint").
    cat = next(n for n in gm.graph.nodes if n.op == "call_function" and n.target == torch.ops.aten.cat.default
               and any(a.args[0].args[0].target == torch.ops.aten.div.Tensor for a in n.args[0]))
    dequant = next(a for a in cat.args[0] if a.args[0].args[0].target == torch.ops.aten.div.Tensor)
    quant = dequant.args[0]
    float_src = quant.args[0]
    cat.replace_input_with(dequant, float_src)
    gm.graph.eliminate_dead_code()  # drops that dequantize; the conv's one is left
    gm.recompile()
    assert tflite_rewrites.route_float_uses(gm) == 1
    assert list(float_src.users) == [quant]
    # The concat now reads the conv's existing dequantize node; no new node was made.
    assert len(quant.users) == 1 and next(iter(quant.users)) in cat.args[0]
    gm.graph.lint()
    gm.recompile()
    assert torch.equal(gm(x), want)

    assert tflite_rewrites.float_output(gm) == 1
    gm.recompile()
    assert torch.equal(gm(x), want)  # relu on alpha >= 0 is an identity


def _quantized_source(student: Source, recipe: str) -> Source:
    program = torch.export.export(student.model, (torch.rand(1, 3, SIZE, SIZE),))
    return dataclasses.replace(student, kind="quantized", program=program, recipe=recipe)


@pytest.mark.parametrize(
    "precision, io, source, message",
    [
        ("int8", {}, "checkpoint", r"tflite int8: got an FP32 checkpoint .* --recipe litert"),
        ("int8", {}, "xnnpack", r"quantized with recipe 'xnnpack', but this target needs recipe 'litert'"),
        ("fp32", {}, "litert", r"tflite fp32: got a quantized source .*pass that instead"),
        ("w8", {}, "checkpoint", r"precision 'w8' is not offered; choose one of fp32, fp16, int8"),
        ("fp32", {"size": 128}, "checkpoint", r"I/O size 128 differs from the model's fixed size 64"),
        ("fp32", {"input_kind": "image"}, "checkpoint", r"input kind 'image' is not offered"),
        ("fp32", {"layout": "NCWH"}, "checkpoint", r"I/O layout 'NCWH'"),
    ],
)
def test_build_refuses_mismatched_jobs(tmp_path: Path, student: Source, precision: str, io: dict, source: str,
                                       message: str):
    src = student if source == "checkpoint" else _quantized_source(student, source)
    job = ExportJob("tflite", precision, tmp_path / "x.tflite", IOSpec(**{"size": SIZE, **io}))
    with pytest.raises(ConfigError, match=message):
        tflite.build(job, src)
    assert not (tmp_path / "x.tflite").exists()


def test_load_runner_errors(tmp_path: Path):
    io = IOSpec(size=SIZE)
    with pytest.raises(ExportError, match="no such TFLite artifact"):
        tflite.load_runner(tmp_path / "missing.tflite", io)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer")
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        tflite.load_runner(junk, io, threads=0)
    with pytest.raises(ExportError, match="the LiteRT interpreter cannot load it"):
        tflite.load_runner(junk, io)


def test_precisions_and_lazy_imports():
    import subprocess
    import sys

    assert tflite.PRECISIONS == {"fp32": "checkpoint", "fp16": "checkpoint", "int8": "litert"}
    # Importing the target loads no back-end (style rule 11).
    code = ("import sys, targets.tflite; heavy = [m for m in ('litert_torch', 'ai_edge_litert', 'tensorflow', "
            "'torchao') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
