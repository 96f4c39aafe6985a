"""ExecuTorch target: lower, check delegation, save, load the .pte in ExecuTorch's runtime, compare with eager.

One chained test per delegate x precision, on generated faces (targets.parity),
plus the error paths checked by their message. The Core ML delegate builds here
but cannot run (no CoreMLBackend in the Linux runtime): its tests check the
delegation, the Core ML model inside the payload and the RuntimeUnavailable.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facemat.checkpoint import save_checkpoint
from facemat.errors import ConfigError
from facemat.models import build_model
from targets import executorch as et
from targets.common import ExportError, ExportJob, IOSpec, RuntimeUnavailable, Source
from targets.parity import check, measure, parity_images, torch_outputs
from targets.source import from_checkpoint, from_quantized
from tests.helpers import warm_bn

SIZE = 64


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("et") / "student.pt", warm_bn(build_model("student-full", size=SIZE)))


@pytest.fixture(scope="module")
def discs(tmp_path_factory) -> Path:
    from tests.helpers import write_disc_folder

    return write_disc_folder(tmp_path_factory.mktemp("etd") / "discs", count=12)


def _ptq(student: Path, discs: Path, recipe: str, out: Path) -> Source:
    from quantize.ptq import PTQSettings, run_ptq

    run_ptq(PTQSettings(student=str(student), recipe=recipe, out=str(out), data=str(discs), calib=8, batch=4,
                        size=SIZE, workers=0))
    return from_quantized(out)


@pytest.fixture(scope="module")
def xnnpack_int8(tmp_path_factory, student: Path, discs: Path) -> Source:
    return _ptq(student, discs, "xnnpack", tmp_path_factory.mktemp("ptq") / "xnnpack")


@pytest.fixture(scope="module")
def faces():
    return parity_images(SIZE, count=8)


def _job(path: Path, precision: str, delegate: str | None = None, layout: str = "NCHW", **options) -> ExportJob:
    return ExportJob(target="executorch", precision=precision, path=path, io=IOSpec(size=SIZE, layout=layout),
                     delegate=delegate, options=options)


def _tensor(value) -> np.ndarray:
    """A bundled tensor (flatbuffer schema) as a float32 array."""
    return np.frombuffer(bytes(value.val.data), np.float32).reshape(value.val.sizes)


def test_precision_tables():
    assert et.PRECISIONS == {"fp32": "checkpoint", "int8": "xnnpack"}
    assert et.PRECISIONS_BY_DELEGATE["coreml"] == {"fp16": "checkpoint", "int8": "coreml"}


def test_xnnpack_fp32_chain_with_bundled_program(tmp_path: Path, student: Path, faces):
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program

    source = from_checkpoint(student)
    reference = torch_outputs(source.model, faces.images)
    bundle_in = [faces.images[i:i + 1] for i in range(2)]
    bundle_out = [reference[i][None, None] for i in range(2)]
    art = et.build(_job(tmp_path / "m.pte", "fp32", bundle_inputs=bundle_in, bundle_expected=bundle_out), source)

    # Lowered: every op inside the XNNPACK delegate, nothing left to portable kernels.
    d = art.checks["delegation"]
    assert d["delegates"] == ["XnnpackBackend"] and d["portable_ops"] == {}
    assert d["delegated_op_types"]["aten.convolution.default"] == 33
    assert d["delegated_op_types"]["aten.upsample_bilinear2d.vec"] == 6
    assert art.checks["io"] == {"inputs": [{"shape": [1, 3, SIZE, SIZE], "dtype": "float32"}],
                                "outputs": [{"shape": [1, 1, SIZE, SIZE], "dtype": "float32"}]}
    assert art.runs_here and art.not_run_reason is None and art.dtype == "float32"
    assert art.converter["executorch"] == art.runtime["executorch"] != "missing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bpte", "m.pte"]  # no temp files left
    assert et.delegate_ids(art.path) == ["XnnpackBackend"]

    # Saved file, loaded in ExecuTorch's runtime, against eager FP32 on generated faces.
    runner = et.load_runner(art.path, art.io, threads=1)
    result = measure(runner, reference, faces)
    check("fp32", result["vs_fp32"], None, "executorch xnnpack fp32")
    print(f"\nexecutorch xnnpack fp32 vs eager: max abs {result['vs_fp32']['max_abs']:.3g}, "
          f"mse {result['vs_fp32']['mse']:.3g}")
    # The prepare/invoke split the bench times gives the same answer.
    x = faces.images[:1]
    first = runner(x)
    assert np.array_equal(runner.invoke(runner.prepare(x)), first)
    # Another thread count replaces the process-wide pool: the older runner refuses to run on the freed one.
    again = et.load_runner(art.path, art.io, threads=2)
    assert np.abs(again(x) - first).max() < 1e-6
    with pytest.raises(RuntimeError, match="thread pool was resized after this runner was loaded"):
        runner(x)

    # The bundled program: its test cases round-trip, and ExecuTorch verifies them.
    assert art.extra_files == ["m.bpte"] and art.checks["bundled"]["test_cases"] == 2
    bundle = art.path.with_suffix(".bpte")
    suites = deserialize_from_flatbuffer_to_bundled_program(bundle.read_bytes()).method_test_suites
    assert [s.method_name for s in suites] == ["forward"]
    cases = suites[0].test_cases
    assert len(cases) == 2
    for case, xin, yout in zip(cases, bundle_in, bundle_out, strict=True):
        assert np.array_equal(_tensor(case.inputs[0]), xin)
        assert np.array_equal(_tensor(case.expected_outputs[0]), yout)
    assert et.verify_bundled(bundle, atol=1e-4) == 2


def test_verify_bundled_reports_a_wrong_expected_output(tmp_path: Path):
    # A program small enough to lower in a second; the expected output is off by 0.5.
    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer
    from executorch.exir import to_edge_transform_and_lower

    class Sig(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(x)

    x = torch.rand(1, 1, 4, 4)
    program = to_edge_transform_and_lower(torch.export.export(Sig(), (x,), strict=True)).to_executorch()
    bad = [MethodTestSuite("forward", [MethodTestCase(inputs=[x], expected_outputs=[torch.sigmoid(x) + 0.5])])]
    path = tmp_path / "bad.bpte"
    path.write_bytes(serialize_from_bundled_program_to_flatbuffer(BundledProgram(program, bad)))
    with pytest.raises(ExportError, match=r"bundled test case 0 of 'forward' differs from its expected output"):
        et.verify_bundled(path)


def test_xnnpack_int8_chain(tmp_path: Path, xnnpack_int8: Source, faces):
    source = xnnpack_int8
    reference = torch_outputs(source.model, faces.images)
    program_ref = torch_outputs(source.program.module(), faces.images)
    art = et.build(_job(tmp_path / "q.pte", "int8"), source)
    # Lowering did not alter the source program (other targets may lower it too).
    assert np.array_equal(torch_outputs(source.program.module(), faces.images[:2]), program_ref[:2])

    d = art.checks["delegation"]
    assert d["delegates"] == ["XnnpackBackend"] and d["portable_ops"] == {}
    # The quantize/dequantize pairs went into the delegate: int8 kernels, float32 I/O.
    assert d["delegated_op_types"]["quantized_decomposed.quantize_per_tensor.default"] > 30
    assert d["delegated_op_types"]["quantized_decomposed.dequantize_per_channel.default"] == 33
    assert art.checks["io"]["inputs"][0]["dtype"] == "float32" and art.runs_here

    runner = et.load_runner(art.path, art.io, threads=2)
    result = measure(runner, reference, faces, program_ref)
    check("int8", result["vs_fp32"], result["vs_program"], "executorch xnnpack int8")
    print(f"\nexecutorch xnnpack int8: vs FP32 mse {result['vs_fp32']['mse']:.3g} (max abs "
          f"{result['vs_fp32']['max_abs']:.3g}); vs int8 program mse {result['vs_program']['mse']:.3g} (max abs "
          f"{result['vs_program']['max_abs']:.3g}); program vs FP32 mse {result['program_vs_fp32']['mse']:.3g}")


@pytest.mark.slow
def test_xnnpack_int8_nhwc_chain(tmp_path: Path, xnnpack_int8: Source, faces):
    # NHWC wraps the converted int8 graph and re-exports it; the bundle takes NCHW arrays like the runner.
    source = xnnpack_int8
    reference = torch_outputs(source.model, faces.images)
    program_ref = torch_outputs(source.program.module(), faces.images)
    art = et.build(_job(tmp_path / "n.pte", "int8", layout="NHWC", bundle_inputs=[faces.images[:1]],
                        bundle_expected=[program_ref[:1][None]]), source)
    d = art.checks["delegation"]
    assert d["portable_ops"] == {} and d["delegated_op_types"]["aten.permute_copy.default"] == 2
    assert art.checks["io"] == {"inputs": [{"shape": [1, SIZE, SIZE, 3], "dtype": "float32"}],
                                "outputs": [{"shape": [1, SIZE, SIZE, 1], "dtype": "float32"}]}
    result = measure(et.load_runner(art.path, art.io), reference, faces, program_ref)
    check("int8", result["vs_fp32"], result["vs_program"], "executorch xnnpack int8 nhwc")
    assert et.verify_bundled(art.path.with_suffix(".bpte"), atol=5e-3) == 1


class _Cumsum(nn.Module):
    """conv -> cumsum -> sigmoid: XNNPACK has no cumsum, so it stays on the portable kernels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.cumsum(self.conv(image), dim=3) * 0.1)


def _hand_source(tmp_path: Path) -> Source:
    """The cumsum net wrapped into a Source by hand, as if it were a student checkpoint."""
    torch.manual_seed(0)
    return Source(kind="checkpoint", path=tmp_path / "hand.pt", sha256="0" * 64, model=_Cumsum().eval(), size=SIZE)


def test_ops_left_to_portable_kernels_fail_unless_allowed(tmp_path: Path, faces):
    source = _hand_source(tmp_path)
    with pytest.raises(ExportError, match=r"not taken by the xnnpack delegate .*: aten\.cumsum\.default x1\. .*"
                                          r"allow_portable"):
        et.build(_job(tmp_path / "c.pte", "fp32"), source)
    assert not (tmp_path / "c.pte").exists()

    art = et.build(_job(tmp_path / "c.pte", "fp32", allow_portable=True), source)
    d = art.checks["delegation"]
    assert d["portable_ops"] == {"aten.cumsum.default": 1}
    assert d["delegates"] == ["XnnpackBackend"] and d["delegate_calls"] == 2  # conv | cumsum | mul + sigmoid
    out = et.load_runner(art.path, art.io)(faces.images[:1])
    with torch.no_grad():
        want = source.model(torch.from_numpy(faces.images[:1])).numpy()
    assert np.abs(out - want).max() < 1e-5


def _tiny_program() -> torch.export.ExportedProgram:
    return torch.export.export(_Cumsum().eval(), (torch.rand(1, 3, SIZE, SIZE),), strict=False)


@pytest.mark.parametrize(
    "precision, delegate, kind, recipe, options, path, message",
    [
        ("fp32", "qnn", "checkpoint", None, {}, "m.pte", "delegate must be one of xnnpack, coreml, got 'qnn'"),
        ("fp16", None, "checkpoint", None, {}, "m.pte", "executorch xnnpack: precision 'fp16' is not offered; choose one of fp32, int8"),
        ("fp32", "coreml", "checkpoint", None, {}, "m.pte", "executorch coreml: precision 'fp32' is not offered; choose one of fp16, int8"),
        ("fp32", None, "checkpoint", None, {}, "m.tflite", r"m\.tflite: an ExecuTorch program is a file ending in"),
        ("int8", None, "checkpoint", None, {}, "m.pte",
         "xnnpack int8: needs a model quantized with recipe 'xnnpack'"),
        ("int8", None, "quantized", "coreml", {}, "m.pte",
         "quantized with recipe 'coreml', but this target needs recipe 'xnnpack'"),
        ("fp32", None, "quantized", "xnnpack", {}, "m.pte", "xnnpack fp32: needs the FP32 student checkpoint"),
        ("int8", "coreml", "quantized", "coreml", {"min_deployment": "iOS16"}, "m.pte",
         "coreml int8: min_deployment iOS16 is too old; this precision needs iOS17"),
        ("fp16", "coreml", "checkpoint", None, {"min_deployment": "android"}, "m.pte",
         "min_deployment must be one of iOS15"),
        ("fp32", None, "checkpoint", None, {"bundle_inputs": [np.zeros((1, 3, 32, 32), np.float32)]}, "m.pte",
         r"bundle_inputs\[0\] is float32 \[1, 3, 32, 32\]; expected float32 \[1, 3, 64, 64\]"),
        ("fp32", None, "checkpoint", None, {"bundle_inputs": [np.zeros((1, 3, 64, 64), np.float32)],
                                            "bundle_expected": []}, "m.pte",
         "option bundle_expected must be a non-empty list"),
    ],
)
def test_config_errors_before_any_lowering(tmp_path: Path, precision, delegate, kind, recipe, options, path,
                                           message):
    program = _tiny_program() if kind == "quantized" else None
    source = dataclasses.replace(_hand_source(tmp_path), kind=kind, recipe=recipe, program=program)
    with pytest.raises(ConfigError, match=message):
        et.build(_job(tmp_path / path, precision, delegate, **options), source)
    assert not list(tmp_path.glob("m.*"))


def test_io_contract_errors(tmp_path: Path):
    source = _hand_source(tmp_path)
    image = dataclasses.replace(_job(tmp_path / "m.pte", "fp32"), io=IOSpec(size=SIZE, input_kind="image"))
    with pytest.raises(ConfigError, match="I/O layout 'NCHW' with input kind 'image' is not offered; choose layout "
                                          "NCHW or NHWC with input kind tensor"):
        et.build(image, source)
    small = dataclasses.replace(_job(tmp_path / "m.pte", "fp32"), io=IOSpec(size=32))
    with pytest.raises(ConfigError, match="I/O size 32 differs from the model's fixed size 64"):
        et.build(small, source)
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        et.load_runner(tmp_path / "m.pte", IOSpec(size=SIZE), threads=0)


def _assert_coreml_not_runnable(art) -> None:
    assert not art.runs_here and "no CoreMLBackend" in art.not_run_reason
    assert art.converter["coremltools"] != "missing"
    with pytest.raises(RuntimeUnavailable, match="lowered to CoreMLBackend, which ExecuTorch's runtime on this "
                                                 "platform does not have"):
        et.load_runner(art.path, art.io)


@pytest.mark.slow
def test_coreml_fp16_builds_fully_delegated_but_cannot_run_here(tmp_path: Path, student: Path):
    art = et.build(_job(tmp_path / "c16.pte", "fp16", "coreml"), from_checkpoint(student))
    d = art.checks["delegation"]
    assert d["delegates"] == ["CoreMLBackend"] and d["portable_ops"] == {} and d["delegate_calls"] == 1
    c = art.checks["coreml"]
    assert c["compute_precision"] == "fp16" and c["minimum_deployment_target"] == "iOS17"
    assert c["conv_weight_dtypes"] == {"float16": 33} and c["mil_ops"]["conv"] == 33
    assert art.checks["io"]["outputs"] == [{"shape": [1, 1, SIZE, SIZE], "dtype": "float32"}]
    _assert_coreml_not_runnable(art)


@pytest.mark.slow
def test_coreml_int8_builds_fully_delegated_but_cannot_run_here(tmp_path: Path, student: Path, discs: Path):
    # The Core ML quantizer's prepare step is the slow part (~1.5-2 min on 2 cores).
    source = _ptq(student, discs, "coreml", tmp_path / "ptq-coreml")
    art = et.build(_job(tmp_path / "c8.pte", "int8", "coreml"), source)
    d = art.checks["delegation"]
    assert d["delegates"] == ["CoreMLBackend"] and d["portable_ops"] == {}
    assert d["delegated_op_types"]["quantized_decomposed.quantize_per_tensor.default"] > 30
    c = art.checks["coreml"]
    assert c["conv_weight_dtypes"] == {"int8": 33} and c["mil_ops"]["quantize"] > 30
    _assert_coreml_not_runnable(art)
    # The xnnpack delegate refuses the coreml recipe's program.
    with pytest.raises(ConfigError, match="quantized with recipe 'coreml', but this target needs recipe 'xnnpack'"):
        et.build(_job(tmp_path / "x8.pte", "int8"), source)


def test_qat_from_teacher_exports_under_its_own_parity_limits(tmp_path: Path, student: Path, discs: Path):
    # quantize.qat distils from the teacher by default, so its program is meant to leave FP32; export
    # records where the program came from and judges it by the limits made for it (targets.parity).
    from quantize.qat import QATSettings, run_qat
    from targets.export import ExportSettings, run_export
    from targets.parity import QAT_FROM_TEACHER_THRESHOLDS

    torch.manual_seed(0)
    teacher = save_checkpoint(tmp_path / "teacher.pt", warm_bn(build_model("teacher", size=SIZE)))
    run_qat(QATSettings(student=str(student), teacher=str(teacher), recipe="xnnpack", out=str(tmp_path / "qat"),
                        data=str(discs), steps=2, batch=2, size=SIZE, calib=1, val_batches=1, workers=0))
    run_export(ExportSettings(out=str(tmp_path / "art"), target="executorch", precision="int8",
                              quantized=(str(tmp_path / "qat"),), parity_images=4))
    (entry,) = json.loads((tmp_path / "art" / "manifest.json").read_text())["artifacts"].values()
    assert entry["source"]["method"] == "qat" and entry["source"]["kd_from"] == "teacher"
    assert entry["parity"]["passed"] and entry["parity"]["thresholds"] == QAT_FROM_TEACHER_THRESHOLDS
    assert entry["parity"]["vs_program"]["mse"] <= QAT_FROM_TEACHER_THRESHOLDS["vs_program_mse"]
