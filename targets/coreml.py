"""Core ML target: an ``.mlpackage`` (ML program) built with coremltools from ``torch.export``.

Precisions:

* ``fp32``: FP32 compute, FP32 weights;
* ``fp16``: FP16 compute and weights (what the Neural Engine runs);
* ``w8``: the fp16 model with every conv weight stored as int8 (symmetric,
  per output channel) via ``coremltools.optimize.coreml.linear_quantize_weights``;
  activations stay fp16, weights are dequantized on load;
* ``w8a8``: the PT2E program quantized with the Core ML quantizer
  (``quantize.ptq/qat --recipe coreml``): int8 weights and quantize/dequantize
  ops on the activations, fp16 compute between them.

Conversion goes through ``torch.export`` (the ``torch.jit.trace`` path fails on
this model's resize, see TOOLCHAIN-NOTES). Every artifact keeps float32 I/O: a
``1 x 3 x S x S`` tensor in [0, 1], or with ``io.input_kind == "image"`` an RGB
image (an iOS app passes a ``CVPixelBuffer``) that Core ML scales by 1/255; the
output ``io.output_name`` is alpha ``1 x 1 x S x S`` in [0, 1].

Core ML cannot predict off macOS, so ``build`` verifies the *saved* package
instead: the MIL op histogram, the storage type of every conv weight, the
activation quantize ops (w8a8), the 1/255 image scale and the I/O spec read
back from the package. ``load_runner`` runs it on macOS.

Metadata in every package: short description, input/output descriptions,
version, author, license, and user-defined keys ``size``, ``normalisation``,
``precision``, ``compute_precision``, ``min_deployment``, ``source_sha256``,
``source_kind`` (plus ``recipe`` for w8a8).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemat.errors import ConfigError
from targets.common import (
    COREML_DEFAULT_MIN_DEPLOYMENT,
    COREML_INT8_WEIGHT_OPS,
    BuiltArtifact,
    ExportError,
    ExportJob,
    IOSpec,
    RuntimeUnavailable,
    Source,
    check_io,
    check_precision,
    check_source,
    coreml_min_deployment,
    first_line,
    versions,
)

PRECISIONS: dict[str, str] = {"fp32": "checkpoint", "fp16": "checkpoint", "w8": "checkpoint", "w8a8": "coreml"}

NOT_RUN_REASON = "runtime check: macOS only (Core ML prediction needs macOS)"

# The oldest OS whose ML-program opset has what each precision emits: mlprogram
# itself (iOS15), constexpr_affine_dequantize for int8 weights (iOS16), and the
# quantize/dequantize activation ops (iOS17).
_MIN_TARGET = {"fp32": "iOS15", "fp16": "iOS15", "w8": "iOS16", "w8a8": "iOS17"}
DEFAULT_MIN_DEPLOYMENT = COREML_DEFAULT_MIN_DEPLOYMENT

_CONV_OPS = ("conv", "conv_transpose")
# coremltools writes tensors of fewer elements inline in the program, not to the weight file.
_INLINE_LIMIT = 10


def build(job: ExportJob, source: Source) -> BuiltArtifact:
    """Convert, quantize if asked, save ``job.path`` (``.mlpackage``) atomically and verify it.

    Args:
        job: ``precision`` one of :data:`PRECISIONS`; ``io`` NCHW, size = the
            model's; ``options``: ``min_deployment`` (e.g. ``"iOS17"``), ``version``,
            ``author``, ``license``.
        source: the FP32 checkpoint (fp32, fp16, w8) or a ``coreml``-recipe
            quantized model (w8a8).

    Returns:
        The artifact with ``checks`` (``mil_ops``, ``conv_weights``, ``io``,
        ``metadata``, ...) read back from the saved package; ``runs_here`` is
        True only on macOS.

    Raises:
        ConfigError: precision/source mismatch, bad path, layout, size or
            deployment target.
        ExportError: conversion failed, or the saved package does not hold what
            was asked (op set, weight storage, I/O spec).
    """
    import coremltools as ct

    _check_job(job, source)
    min_name = _min_deployment(job)
    compute = "fp32" if job.precision == "fp32" else "fp16"
    program = _program(job, source)
    try:
        model = ct.convert(
            program,
            convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, min_name),
            compute_precision=ct.precision.FLOAT32 if compute == "fp32" else ct.precision.FLOAT16,
            inputs=[_input_type(job.io)],
            outputs=[ct.TensorType(name=job.io.output_name, dtype=np.float32)],
        )
    except Exception as exc:  # noqa: BLE001 - the converter raises many types
        raise ExportError(f"{job.path}: coremltools could not convert the {job.precision} model: "
                          f"{type(exc).__name__}: {first_line(exc)}") from exc
    if job.precision == "w8":
        model = _quantize_weights(model)
    _set_metadata(model, job, source, min_name, compute)

    checks = _save_verified(model, job.path, job.precision, job.io)
    checks.update({"min_deployment": min_name, "min_deployment_needed": _MIN_TARGET[job.precision],
                   "compute_precision": compute, "model_type": "mlprogram"})
    runs_here = sys.platform == "darwin"
    return BuiltArtifact(
        path=job.path, io=job.io, dtype="float32", runs_here=runs_here,
        not_run_reason=None if runs_here else NOT_RUN_REASON, checks=checks,
        converter=versions("coremltools", "torch", "torchao") if job.precision == "w8a8"
        else versions("coremltools", "torch"),
        runtime={"Core ML": f"{min_name} or newer (Apple OS framework)", **versions("coremltools")},
    )


def _check_job(job: ExportJob, source: Source) -> None:
    """Refuse jobs this target cannot build, before any conversion work."""
    check_precision("coreml", job.precision, tuple(PRECISIONS))
    if Path(job.path).suffix != ".mlpackage":
        raise ConfigError(f"{job.path}: a Core ML ML program is a folder ending in .mlpackage")
    # Camera buffers come in as input kind 'image' (a CVPixelBuffer), never as NHWC.
    check_io(job, source, "coreml", layouts=("NCHW",), input_kinds=("tensor", "image"))
    check_source(job, source, "coreml", PRECISIONS[job.precision])


def _min_deployment(job: ExportJob) -> str:
    """``options["min_deployment"]`` or the default, checked against the precision."""
    return coreml_min_deployment(job, "coreml", _MIN_TARGET[job.precision])


def _program(job: ExportJob, source: Source) -> torch.export.ExportedProgram:
    """The batch-1 ATen-dialect program to convert (coremltools refuses the training dialect)."""
    if job.precision == "w8a8":
        assert source.program is not None  # _check_job
        program = source.program
    else:
        example = torch.zeros(1, 3, source.size, source.size)
        try:
            program = torch.export.export(source.model.eval(), (example,), strict=True)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"{source.path}: torch.export of the student failed: {first_line(exc)}") from exc
    return program.run_decompositions({})


def _input_type(io: IOSpec):
    """``ct.ImageType`` (RGB, scaled by 1/255 inside Core ML) or a float32 ``ct.TensorType``."""
    import coremltools as ct

    shape = (1, 3, io.size, io.size)
    if io.input_kind == "image":
        # The 1/255 scale is Core ML's own image preprocessing rather than a
        # Scale255 wrapper: the same torch program serves both input kinds
        # (the w8a8 PT2E program cannot be re-wrapped without re-exporting it),
        # and the scale happens in fp32 before the cast to fp16.
        return ct.ImageType(name=io.input_name, shape=shape, scale=1.0 / 255.0, bias=[0.0, 0.0, 0.0],
                            color_layout=ct.colorlayout.RGB)
    return ct.TensorType(name=io.input_name, shape=shape, dtype=np.float32)


def _quantize_weights(model):
    """int8 symmetric per-output-channel storage for every conv weight; biases stay float.

    coremltools skips tensors under 2048 elements by default, which is most of
    this small net's convs: each conv weight is named explicitly with no
    threshold instead. Weights under 10 elements (kept inline in the program,
    not in the weight file) are still left as they are by coremltools.
    """
    import coremltools.optimize.coreml as cto

    names = [op.weight.op.name for op in _pymil_ops(model)
             if op.op_type in _CONV_OPS and op.weight.op.op_type == "const"]
    cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                      weight_threshold=0)
    config = cto.OptimizationConfig(op_name_configs=dict.fromkeys(names, cfg))
    try:
        return cto.linear_quantize_weights(model, config=config)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"coremltools linear_quantize_weights failed: {type(exc).__name__}: "
                          f"{first_line(exc)}") from exc


def _pymil_ops(model) -> list:
    """All operations of the converted model's MIL program (every function, nested blocks included)."""
    out = []

    def walk(block) -> None:
        for op in block.operations:
            out.append(op)
            for b in op.blocks:
                walk(b)

    for fn in model._mil_program.functions.values():
        walk(fn)
    return out


def _set_metadata(model, job: ExportJob, source: Source, min_name: str, compute: str) -> None:
    """Description, version, author, license and the user-defined keys an app or the bench reads."""
    io = job.io
    s = io.size
    model.short_description = (f"FaceMat Edge face matting ({job.precision}): RGB face crop {s}x{s} -> alpha matte "
                               "(1 = face, 0 = background or occluder)")
    model.version = str(job.options.get("version", versions("facemat-edge")["facemat-edge"]))
    model.author = str(job.options.get("author", "FaceMat Edge"))
    model.license = str(job.options.get("license", "Apache-2.0"))
    if io.input_kind == "image":
        model.input_description[io.input_name] = (f"RGB image {s}x{s}, 0-255 per channel (CVPixelBuffer); "
                                                  "scaled to [0, 1] inside the model")
    else:
        model.input_description[io.input_name] = f"RGB image 1x3x{s}x{s} (NCHW), float32 in [0, 1]"
    model.output_description[io.output_name] = (f"alpha matte 1x1x{s}x{s} (NCHW), float32 in [0, 1]: "
                                                "1 = face, 0 = background or occluder")
    meta = {
        "size": str(s),
        "normalisation": "0-255 image" if io.input_kind == "image" else "RGB in [0,1]",
        "precision": job.precision,
        "compute_precision": compute,
        "min_deployment": min_name,
        "source_sha256": source.sha256,
        "source_kind": source.kind,
    }
    if source.recipe is not None:
        meta["recipe"] = source.recipe
    model.user_defined_metadata.update(meta)


def _save_verified(model, dest: Path, precision: str, io: IOSpec) -> dict[str, Any]:
    """Save into a staging folder beside ``dest``, verify the saved copy, then move it into place.

    A folder cannot be swapped atomically with ``os.replace``: an existing
    package is first renamed aside and restored if the move fails, so ``dest``
    is never a half-written package.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        staged = staging / dest.name
        try:
            model.save(str(staged))
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"{dest}: saving the package failed: {type(exc).__name__}: {first_line(exc)}") from exc
        checks = verify_package(staged, precision, io, name=dest)
        old = None
        if dest.exists():
            old = staging / "previous"
            os.replace(dest, old)
        try:
            os.replace(staged, dest)
        except BaseException:
            if old is not None:
                os.replace(old, dest)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checks


# --------------------------------------------------------------------------- verification


def verify_package(path: str | Path, precision: str, io: IOSpec, name: str | Path | None = None) -> dict[str, Any]:
    """Read a saved ``.mlpackage`` back (no prediction) and check it holds what ``precision`` promises.

    Checks: the I/O spec (names, shapes, types) matches ``io``; convolutions are
    present; every conv weight is stored as fp32 (``fp32``), fp16 (``fp16``) or
    int8 (``w8``, ``w8a8``); no fp16 tensor constants in ``fp32``; activation
    ``quantize``/``dequantize`` ops in ``w8a8``; an image input is scaled by 1/255.

    Args:
        path: the saved package.
        precision: a key of :data:`PRECISIONS`.
        io: the contract the package must present.
        name: how error messages name the package (default ``path``).

    Returns:
        ``{"mil_ops": {op: count}, "opset", "spec_version", "conv_weights":
        {storage: count}, "conv_biases", "const_dtypes", "io", "image_scale",
        "metadata"}``.

    Raises:
        ExportError: naming each check that failed.
    """
    import coremltools as ct

    name = name or path
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ExportError(f"{name}: not an ML program (found {spec.WhichOneof('Type')})")
    mil = _MilView(spec)
    io_found = _read_io(spec)
    convs = [op for op in mil.ops if op.type in _CONV_OPS]
    weights = Counter(mil.weight_storage(op, "weight") for op in convs)
    biases = Counter(mil.weight_storage(op, "bias") for op in convs if "bias" in op.inputs)
    checks: dict[str, Any] = {
        "mil_ops": dict(sorted(mil.histogram.items())),
        "opset": mil.opset,
        "spec_version": int(spec.specificationVersion),
        "conv_weights": dict(sorted(weights.items())),
        "conv_biases": dict(sorted(biases.items())),
        "const_dtypes": dict(sorted(mil.const_dtypes().items())),
        "io": io_found,
        "metadata": dict(spec.description.metadata.userDefined),
    }

    problems = _io_problems(io_found, io)
    n_conv = sum(weights.values())
    if n_conv == 0:
        problems.append("no conv op in the MIL program")
    want = {"fp32": ("fp32",), "fp16": ("fp16",), "w8": tuple(f"int8 ({o})" for o in COREML_INT8_WEIGHT_OPS[:2]),
            "w8a8": tuple(f"int8 ({o})" for o in COREML_INT8_WEIGHT_OPS)}[precision]
    wrong: Counter = Counter()
    for op in convs:
        storage = mil.weight_storage(op, "weight")
        if storage in want:
            continue
        if precision == "w8" and storage == "fp16" and mil.arg_numel(op, "weight") < _INLINE_LIMIT:
            # linear_quantize_weights only compresses weight-file blobs; coremltools
            # keeps tensors under 10 elements inline (here the 1 x 8 x 1 x 1 alpha
            # heads): 16 bytes of fp16 each, so they are allowed and reported.
            checks.setdefault("int8_exempt_inline", []).append(
                {"conv": op.outputs[0].name, "elements": mil.arg_numel(op, "weight"), "storage": storage})
            continue
        wrong[storage] += 1
    if wrong:
        problems.append(f"{sum(wrong.values())} of {n_conv} conv weights are not stored as "
                        f"{' or '.join(want)}: {dict(wrong)}")
    if precision == "fp32" and checks["const_dtypes"].get("fp16"):
        problems.append(f"{checks['const_dtypes']['fp16']} fp16 tensor constants in an fp32 model")
    if precision == "w8a8":
        missing = [o for o in ("quantize", "dequantize") if not mil.histogram.get(o)]
        if missing:
            problems.append(f"no activation {' / '.join(missing)} ops (w8a8 needs int8 activations)")
    if io.input_kind == "image":
        scale = mil.input_scale(io.input_name)
        checks["image_scale"] = scale
        if scale is None or abs(scale - 1.0 / 255.0) > 1e-6:
            problems.append(f"the image input is not scaled by 1/255 on entry (found {scale}); the model would "
                            "see 0-255 instead of [0, 1]")
    if problems:
        raise ExportError(f"{name}: the saved Core ML {precision} package fails its checks: " + "; ".join(problems))
    return checks


_DTYPE_NAMES = {"FLOAT32": "fp32", "FLOAT16": "fp16", "FLOAT64": "fp64", "BFLOAT16": "bf16", "INT8": "int8",
                "UINT8": "uint8", "INT4": "int4", "UINT4": "uint4", "INT16": "int16", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "STRING": "string"}


class _MilView:
    """The ``main`` function of a saved ML program's protobuf: ops, producers and dtypes."""

    def __init__(self, spec) -> None:
        fn = spec.mlProgram.functions["main"]
        self.opset = fn.opset
        self.ops: list = []

        def walk(block) -> None:
            for op in block.operations:
                self.ops.append(op)
                for b in op.blocks:
                    walk(b)

        walk(fn.block_specializations[fn.opset])
        self.producer = {out.name: op for op in self.ops for out in op.outputs}
        self.histogram = Counter(op.type for op in self.ops)

    @staticmethod
    def _dtype(value_type) -> str:
        from coremltools.proto import MIL_pb2

        name = MIL_pb2.DataType.Name(value_type.tensorType.dataType)
        return _DTYPE_NAMES.get(name, name.lower())

    def _arg(self, op, param: str):
        """``(producer op or None, value type or None, inline value or None)`` of ``op``'s input ``param``.

        An argument is bound by name (to a const, another op or a function
        input) or, from iOS18, holds its value inline.
        """
        args = op.inputs[param].arguments
        if not args:
            return None, None, None
        arg = args[0]
        if arg.WhichOneof("binding") == "value":
            return None, arg.value.type, arg.value
        src = self.producer.get(arg.name)
        if src is None:  # a function input
            return None, None, None
        out = next(o for o in src.outputs if o.name == arg.name)
        value = src.attributes["val"] if src.type == "const" else None
        return src, out.type, value

    def arg_numel(self, op, param: str) -> int:
        """Number of elements of ``op``'s input ``param`` (from its declared tensor type; -1 if unknown)."""
        _, vtype, _ = self._arg(op, param)
        if vtype is None:
            return -1
        return int(np.prod([d.constant.size for d in vtype.tensorType.dimensions]))

    def weight_storage(self, op, param: str) -> str:
        """How ``op``'s input ``param`` is stored: ``fp32``, ``fp16``, ``int8 (constexpr_...)``, ``computed (...)``."""
        src, vtype, value = self._arg(op, param)
        if vtype is None:
            return "input"
        if value is not None:  # a const op or an inline value
            return self._dtype(vtype)
        if src.type in COREML_INT8_WEIGHT_OPS:
            return f"{self._quantized_dtype(src)} ({src.type})"
        return f"computed ({src.type})"

    def _quantized_dtype(self, op) -> str:
        # iOS16 constexpr ops hold the data as an attribute; iOS18 ones and
        # ``dequantize`` take it as an input (inline or from a const).
        for key in ("quantized_data", "data", "input"):
            if key in op.attributes:
                return self._dtype(op.attributes[key].type)
            if key in op.inputs:
                _, vtype, value = self._arg(op, key)
                if value is not None:
                    return self._dtype(vtype)
        return "unknown"

    def const_dtypes(self) -> Counter:
        """dtype -> number of tensor (rank >= 1) constants, scalars and strings excluded."""
        out: Counter = Counter()
        for op in self.ops:
            if op.type == "const" and op.outputs[0].type.WhichOneof("type") == "tensorType":
                t = op.outputs[0].type.tensorType
                if t.rank >= 1:
                    out[self._dtype(op.outputs[0].type)] += 1
        return out

    def input_scale(self, name: str) -> float | None:
        """The scalar by which a ``mul`` scales function input ``name``, if a ``mul`` consumes it."""
        for op in self.ops:
            if op.type != "mul" or not all(p in op.inputs for p in ("x", "y")):
                continue
            bound = {p: op.inputs[p].arguments[0] for p in ("x", "y")}
            hits = [p for p, a in bound.items() if a.WhichOneof("binding") == "name" and a.name == name]
            if not hits:
                continue
            _, _, value = self._arg(op, "y" if hits[0] == "x" else "x")
            if value is not None:
                val = np.asarray(_immediate(value), np.float64).reshape(-1)
                if val.size >= 1 and np.allclose(val, val[0]):
                    return float(val[0])
        return None


def _immediate(value) -> list[float]:
    """The numbers of an immediate MIL tensor value (the scale constant is small, never a blob)."""
    if value.WhichOneof("value") != "immediateValue":
        return []
    t = value.immediateValue.tensor
    which = t.WhichOneof("value")
    if which == "bytes":  # fp16 values are packed as bytes
        return np.frombuffer(t.bytes.values, np.float16).astype(np.float64).tolist()
    return list(getattr(t, which).values)


def _read_io(spec) -> dict[str, Any]:
    """Inputs and outputs as the saved model description declares them."""
    from coremltools.proto import FeatureTypes_pb2

    def feature(f) -> dict[str, Any]:
        kind = f.type.WhichOneof("Type")
        if kind == "imageType":
            t = f.type.imageType
            colour = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.colorSpace)
            return {"name": f.name, "type": "image", "colour": colour, "shape": [1, 3, int(t.height), int(t.width)]}
        if kind == "multiArrayType":
            t = f.type.multiArrayType
            dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(t.dataType).lower()
            return {"name": f.name, "type": "multiarray", "dtype": dtype, "shape": [int(d) for d in t.shape]}
        return {"name": f.name, "type": kind}

    return {"inputs": [feature(f) for f in spec.description.input],
            "outputs": [feature(f) for f in spec.description.output]}


def _io_problems(found: dict[str, Any], io: IOSpec) -> list[str]:
    """Differences between the package's declared I/O and the job's contract."""
    if io.input_kind == "image":
        want_in = {"name": io.input_name, "type": "image", "colour": "RGB", "shape": io.input_shape()}
    else:
        want_in = {"name": io.input_name, "type": "multiarray", "dtype": "float32", "shape": io.input_shape()}
    want_out = {"name": io.output_name, "type": "multiarray", "dtype": "float32", "shape": io.output_shape()}
    problems = []
    if found["inputs"] != [want_in]:
        problems.append(f"inputs are {found['inputs']}, expected [{want_in}]")
    if found["outputs"] != [want_out]:
        problems.append(f"outputs are {found['outputs']}, expected [{want_out}]")
    return problems


# --------------------------------------------------------------------------- runtime


@dataclass
class CoreMLRunner:
    """A loaded ``.mlpackage`` (macOS only). Implements :class:`targets.common.Runner`.

    ``prepare`` turns a ``1 x 3 x S x S`` float32 image in [0, 1] into the
    feature dict the model takes (an RGB ``PIL.Image`` for image input);
    ``invoke`` runs ``predict``; ``__call__`` returns alpha ``1 x 1 x S x S`` float32.
    """

    model: Any
    io: IOSpec

    def prepare(self, image: np.ndarray) -> dict[str, Any]:
        x = np.asarray(image, np.float32)
        if self.io.input_kind == "image":
            from PIL import Image

            rgb = np.clip(np.round(x[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)  # S x S x 3
            return {self.io.input_name: Image.fromarray(rgb, "RGB")}
        return {self.io.input_name: np.ascontiguousarray(x)}

    def invoke(self, prepared: dict[str, Any]) -> Any:
        return self.model.predict(prepared)[self.io.output_name]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return np.asarray(self.invoke(self.prepare(image)), np.float32).reshape(self.io.output_shape())


def load_runner(path: str | Path, io: IOSpec, threads: int | None = None) -> CoreMLRunner:
    """Load a saved ``.mlpackage`` for prediction (all compute units).

    ``threads`` is ignored: Core ML chooses its own threads and devices.

    Raises:
        RuntimeUnavailable: off macOS, where Core ML cannot predict.
    """
    if sys.platform != "darwin":
        raise RuntimeUnavailable(f"{path}: {NOT_RUN_REASON}")
    import coremltools as ct

    del threads  # Core ML has no thread-count setting
    return CoreMLRunner(ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL), io)
