"""Core ML target: one chained test per precision (build, verify the saved package, run it where
Core ML can), the image-input variant, atomic replacement, and the error paths.

Core ML predicts on macOS only: elsewhere each chained test checks that the runner
refuses with RuntimeUnavailable; on macOS it runs the package on generated faces and
compares with the eager FP32 student within targets.parity.THRESHOLDS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import ConfigError
from facemat.models import build_model
from targets import coreml
from targets.common import ExportError, ExportJob, IOSpec, RuntimeUnavailable, Source
from targets.source import from_checkpoint
from tests.helpers import warm_bn

SIZE = 64
ON_MAC = sys.platform == "darwin"


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("cm") / "student.pt", warm_bn(build_model("student-full", size=SIZE)))


@pytest.fixture(scope="module")
def ckpt_source(student: Path) -> Source:
    return from_checkpoint(student)


@pytest.fixture(scope="module")
def coreml_ptq(tmp_path_factory, student: Path) -> Source:
    """A Core ML-recipe PTQ result (the Core ML quantizer's prepare takes ~90 s here)."""
    from quantize.ptq import PTQSettings, run_ptq
    from targets.source import from_quantized
    from tests.helpers import write_disc_folder

    root = tmp_path_factory.mktemp("cmq")
    discs = write_disc_folder(root / "discs", count=8)
    run_ptq(PTQSettings(student=str(student), recipe="coreml", out=str(root / "ptq"), data=str(discs), calib=8,
                        batch=4, size=SIZE, workers=0))
    return from_quantized(root / "ptq")


def _job(path: Path, precision: str, **kw) -> ExportJob:
    options = kw.pop("options", {})
    return ExportJob(target="coreml", precision=precision, path=path, io=IOSpec(size=SIZE, **kw), options=options)


def _reread(path: Path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _run_or_refuse(built, source: Source, precision: str) -> None:
    """macOS: parity on generated faces; elsewhere: the runner refuses with the manifest's reason."""
    if not ON_MAC:
        assert not built.runs_here and built.not_run_reason == coreml.NOT_RUN_REASON
        with pytest.raises(RuntimeUnavailable, match="macOS only"):
            coreml.load_runner(built.path, built.io)
        return
    from targets.parity import check, measure, parity_images, torch_outputs

    data = parity_images(SIZE, count=4)
    ref = torch_outputs(source.model, data.images)
    prog = torch_outputs(source.program.module(), data.images) if source.program is not None else None
    result = measure(coreml.load_runner(built.path, built.io), ref, data, prog)
    check(precision, result["vs_fp32"], result.get("vs_program"), str(built.path))


def test_fp32_package_holds_fp32_weights_and_metadata(tmp_path: Path, ckpt_source: Source):
    built = coreml.build(_job(tmp_path / "m.mlpackage", "fp32"), ckpt_source)
    c = built.checks
    assert built.path.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
    assert c["mil_ops"]["conv"] == 33 and "quantize" not in c["mil_ops"]
    assert c["conv_weights"] == {"fp32": 33} and c["const_dtypes"].get("fp16", 0) == 0
    assert c["compute_precision"] == "fp32" and c["min_deployment"] == coreml.DEFAULT_MIN_DEPLOYMENT == "iOS17"
    assert c["io"] == {
        "inputs": [{"name": "image", "type": "multiarray", "dtype": "float32", "shape": [1, 3, SIZE, SIZE]}],
        "outputs": [{"name": "alpha", "type": "multiarray", "dtype": "float32", "shape": [1, 1, SIZE, SIZE]}]}
    # Metadata, read back from the saved package independently of build's checks.
    spec = _reread(built.path)
    meta = spec.description.metadata
    assert "FaceMat" in meta.shortDescription and meta.author == "FaceMat Edge" and meta.license == "Apache-2.0"
    assert meta.versionString == "0.1.0"
    user = dict(meta.userDefined)
    assert {k: user[k] for k in ("size", "normalisation", "precision", "source_sha256")} == {
        "size": str(SIZE), "normalisation": "RGB in [0,1]", "precision": "fp32", "source_sha256": ckpt_source.sha256}
    assert "[0, 1]" in spec.description.input[0].shortDescription
    assert "alpha" in spec.description.output[0].shortDescription
    assert built.converter["coremltools"].startswith("9.")
    _run_or_refuse(built, ckpt_source, "fp32")


def test_fp16_package_holds_fp16_weights(tmp_path: Path, ckpt_source: Source):
    built = coreml.build(_job(tmp_path / "m.mlpackage", "fp16", options={"version": "2.3"}), ckpt_source)
    c = built.checks
    assert c["mil_ops"]["conv"] == 33 and c["mil_ops"]["cast"] == 2  # float32 I/O around fp16 compute
    assert c["conv_weights"] == {"fp16": 33} and c["conv_biases"] == {"fp16": 33}
    assert c["const_dtypes"].get("fp32", 0) == 0
    assert _reread(built.path).description.metadata.versionString == "2.3"
    # The verifier is not a rubber stamp: the same package is not a w8 or an fp32 one.
    with pytest.raises(ExportError, match=r"31 of 33 conv weights are not stored as int8"):
        coreml.verify_package(built.path, "w8", built.io)
    with pytest.raises(ExportError, match=r"not stored as fp32.*fp16 tensor constants in an fp32 model"):
        coreml.verify_package(built.path, "fp32", built.io)
    _run_or_refuse(built, ckpt_source, "fp16")


def test_w8_package_stores_conv_weights_int8(tmp_path: Path, ckpt_source: Source):
    built = coreml.build(_job(tmp_path / "m.mlpackage", "w8"), ckpt_source)
    c = built.checks
    assert c["mil_ops"]["constexpr_affine_dequantize"] == 31 and "quantize" not in c["mil_ops"]
    # The two 1 x 8 x 1 x 1 alpha heads are below coremltools' weight-file size (10
    # elements) and stay fp16 inline; every other conv weight is int8.
    assert c["conv_weights"] == {"int8 (constexpr_affine_dequantize)": 31, "fp16": 2}
    assert [e["elements"] for e in c["int8_exempt_inline"]] == [8, 8]
    assert c["compute_precision"] == "fp16" and c["min_deployment_needed"] == "iOS16"
    _run_or_refuse(built, ckpt_source, "w8")


def test_w8_ios18_uses_blockwise_shift_scale(tmp_path: Path, ckpt_source: Source):
    built = coreml.build(_job(tmp_path / "m.mlpackage", "w8", options={"min_deployment": "iOS18"}), ckpt_source)
    c = built.checks
    assert c["min_deployment"] == "iOS18" and c["opset"] == "CoreML8"
    assert c["conv_weights"]["int8 (constexpr_blockwise_shift_scale)"] == 31
    assert dict(_reread(built.path).description.metadata.userDefined)["min_deployment"] == "iOS18"


def test_image_input_takes_rgb_image_scaled_to_unit_range(tmp_path: Path, ckpt_source: Source):
    from coremltools.proto import FeatureTypes_pb2

    built = coreml.build(_job(tmp_path / "m.mlpackage", "fp16", input_kind="image"), ckpt_source)
    spec = _reread(built.path)
    inp = spec.description.input[0]
    assert inp.name == "image" and inp.type.WhichOneof("Type") == "imageType"
    assert inp.type.imageType.colorSpace == FeatureTypes_pb2.ImageFeatureType.ColorSpace.Value("RGB")
    assert (inp.type.imageType.width, inp.type.imageType.height) == (SIZE, SIZE)
    assert built.checks["image_scale"] == pytest.approx(1 / 255)
    assert dict(spec.description.metadata.userDefined)["normalisation"] == "0-255 image"
    assert "0-255" in inp.shortDescription
    _run_or_refuse(built, ckpt_source, "fp16")


def test_rebuild_replaces_package_and_failed_check_keeps_previous(tmp_path: Path, ckpt_source: Source,
                                                                  monkeypatch):
    dest = tmp_path / "m.mlpackage"
    dest.mkdir()
    (dest / "previous.txt").write_text("old package")

    def failing(path, precision, io, name=None):
        assert Path(path) != dest and Path(path).is_dir()  # verified in a staging folder
        raise ExportError(f"{name}: forced failure")

    monkeypatch.setattr(coreml, "verify_package", failing)
    with pytest.raises(ExportError, match="forced failure"):
        coreml.build(_job(dest, "fp16"), ckpt_source)
    assert (dest / "previous.txt").read_text() == "old package"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]  # no staging left behind

    monkeypatch.undo()
    coreml.build(_job(dest, "fp16"), ckpt_source)
    assert not (dest / "previous.txt").exists() and (dest / "Manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]


@pytest.mark.slow
def test_w8a8_package_has_activation_quantization(tmp_path: Path, coreml_ptq: Source):
    built = coreml.build(_job(tmp_path / "m.mlpackage", "w8a8"), coreml_ptq)
    c = built.checks
    assert c["mil_ops"]["quantize"] > 0 and c["mil_ops"]["dequantize"] > 0 and c["mil_ops"]["conv"] == 33
    assert c["conv_weights"] == {"int8 (constexpr_affine_dequantize)": 33}
    assert c["min_deployment_needed"] == "iOS17" and c["compute_precision"] == "fp16"
    user = dict(_reread(built.path).description.metadata.userDefined)
    assert user["recipe"] == "coreml" and user["source_sha256"] == coreml_ptq.sha256 and user["precision"] == "w8a8"
    _run_or_refuse(built, coreml_ptq, "w8a8")


@pytest.mark.slow
def test_w8a8_image_input(tmp_path: Path, coreml_ptq: Source):
    built = coreml.build(_job(tmp_path / "m.mlpackage", "w8a8", input_kind="image"), coreml_ptq)
    assert built.checks["io"]["inputs"][0]["type"] == "image"
    assert built.checks["image_scale"] == pytest.approx(1 / 255) and built.checks["mil_ops"]["quantize"] > 0


def _fake_quantized(ckpt_source: Source, recipe: str) -> Source:
    # The checks refuse before any conversion, so any program will do.
    program = torch.export.export(ckpt_source.model, (torch.zeros(1, 3, SIZE, SIZE),))
    return Source(kind="quantized", path=Path("q/model.pt2"), sha256="0" * 64, model=ckpt_source.model, size=SIZE,
                  program=program, recipe=recipe)


@pytest.mark.parametrize(
    "precision, source_kind, kw, message",
    [
        ("w8a8", "checkpoint", {}, r"coreml w8a8: needs a model quantized with recipe 'coreml'"),
        ("w8a8", "xnnpack", {}, r"quantized with recipe 'xnnpack', but this target needs recipe 'coreml'"),
        ("fp16", "coreml", {}, r"coreml fp16: needs the FP32 student checkpoint, got a quantized model"),
        ("w8a8", "coreml", {"options": {"min_deployment": "iOS16"}},
         r"coreml w8a8: min_deployment iOS16 is too old; this precision needs iOS17"),
        ("fp32", "checkpoint", {"options": {"min_deployment": "ios17"}}, r"min_deployment must be one of iOS15, "),
        ("int4", "checkpoint", {}, r"precision 'int4' is not offered; choose one of fp32, fp16, w8, w8a8"),
        ("fp32", "checkpoint", {"layout": "NHWC"}, r"I/O layout 'NHWC' with input kind 'tensor' is not offered; choose layout NCHW"),
        ("fp32", "checkpoint", {"input_kind": "video"}, r"input kind 'video' is not offered; choose layout NCHW with input kind tensor or image"),
    ],
)
def test_config_errors(tmp_path: Path, ckpt_source: Source, precision: str, source_kind: str, kw: dict,
                       message: str):
    source = ckpt_source if source_kind == "checkpoint" else _fake_quantized(ckpt_source, source_kind)
    with pytest.raises(ConfigError, match=message):
        coreml.build(_job(tmp_path / "m.mlpackage", precision, **kw), source)
    assert not any(tmp_path.iterdir())


def test_path_and_size_errors(tmp_path: Path, ckpt_source: Source):
    with pytest.raises(ConfigError, match=r"m.mlmodel: a Core ML ML program is a folder ending in .mlpackage"):
        coreml.build(_job(tmp_path / "m.mlmodel", "fp32"), ckpt_source)
    job = ExportJob(target="coreml", precision="fp32", path=tmp_path / "m.mlpackage", io=IOSpec(size=128))
    with pytest.raises(ConfigError, match=r"I/O size 128 differs from the model's fixed size 64"):
        coreml.build(job, ckpt_source)


@pytest.mark.skipif(ON_MAC, reason="Core ML predicts on macOS")
def test_load_runner_refuses_off_macos(tmp_path: Path):
    with pytest.raises(RuntimeUnavailable, match=r"m.mlpackage: runtime check: macOS only \(Core ML prediction"):
        coreml.load_runner(tmp_path / "m.mlpackage", IOSpec(size=SIZE))


def test_runner_prepares_image_and_tensor_inputs():
    # The pre-processing load_runner uses on macOS, checked here with a stand-in model.
    class Echo:
        def predict(self, feed):
            (value,) = feed.values()
            x = np.asarray(value, np.float32)
            return {"alpha": x.reshape(1, -1)[:, : SIZE * SIZE]}

    image = np.random.default_rng(0).integers(0, 256, (1, 3, SIZE, SIZE)).astype(np.float32) / 255.0
    pil = coreml.CoreMLRunner(Echo(), IOSpec(size=SIZE, input_kind="image")).prepare(image)["image"]
    assert pil.mode == "RGB" and pil.size == (SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(pil), np.round(image[0].transpose(1, 2, 0) * 255).astype(np.uint8))
    out = coreml.CoreMLRunner(Echo(), IOSpec(size=SIZE))(image)
    assert out.shape == (1, 1, SIZE, SIZE) and out.dtype == np.float32
    np.testing.assert_array_equal(out.reshape(-1), image.reshape(-1)[: SIZE * SIZE])
