"""TFLite / LiteRT target: one ``.tflite`` file, converted by litert-torch, run by ``ai-edge-litert``.

Precisions:

* ``fp32``: ``litert_torch.convert`` of the eager FP32 student;
* ``fp16``: the same conversion with litert-torch's fp16 weight recipe
  (ai-edge-quantizer float casting): conv weights are stored as float16 and
  expanded by ``DEQUANTIZE`` ops when the model loads, so compute stays FP32
  (half the file, no faster on a CPU);
* ``int8``: full-integer static model from the PT2E program quantized with
  litert-torch's ``PT2EQuantizer`` (``python -m quantize.ptq/qat --recipe
  litert``): int8 per-channel conv weights, int8 per-tensor activations. The
  normalisation ``(x - 0.5) / 0.25`` runs in float before the first ``QUANTIZE``.

The converted PT2E program needs export-only rewrites (on a copy of the
program, never on the model) before litert-torch takes it; they live in
:mod:`targets.tflite_rewrites` (unfold the int8 weights, route float uses
through the dequantize, keep float output and input).

I/O: signature ``serving_default`` with input ``io.input_name`` (``1 x 3 x S x S``
or, with ``io.layout == "NHWC"``, ``1 x S x S x 3`` float32 RGB in [0, 1]) and
output ``io.output_name`` (alpha ``1 x 1 x S x S`` or ``1 x S x S x 1`` float32 in
[0, 1]). NHWC goes through :class:`targets.wrappers.NHWC`: litert-torch's layout
pass cancels its permutes against the ones it inserts for TFLite's NHWC convs,
so the file has no TRANSPOSE at all (NCHW keeps one at the input edge).
:func:`litert_torch.to_channel_last_io` is the same wrapper; ours is used so
every target shares one.

``build`` reads the saved file back with the interpreter (no inference): op
histogram, the stored dtype of every conv weight, I/O names, shapes, dtypes and
quantization, and whether the default interpreter's XNNPACK delegate takes the
whole graph (recorded, not enforced: an op left to the reference kernels still runs).
"""

from __future__ import annotations

import contextlib
import io as _io
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facemat.errors import ConfigError
from facemat.io import atomic_path
from targets.common import (
    BuiltArtifact,
    ExportError,
    ExportJob,
    IOSpec,
    RuntimeUnavailable,
    Source,
    check_io,
    check_precision,
    first_line,
    from_layout,
    to_layout,
    versions,
)

PRECISIONS: dict[str, str] = {"fp32": "checkpoint", "fp16": "checkpoint", "int8": "litert"}

SIGNATURE = "serving_default"

_CONVERTER = ("litert-torch", "litert-converter", "torch")
_RUNTIME = ("ai-edge-litert",)
_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# What every conv weight must be stored as, per precision (``fp16``: float16
# behind a DEQUANTIZE op, see ``inspect_tflite``).
_WEIGHT_DTYPE = {"fp32": "float32", "fp16": "float16 (DEQUANTIZE)", "int8": "int8"}
_FP16_COMPUTE = ("float32: conv weights are stored as float16 and expanded to float32 by DEQUANTIZE ops when "
                 "the interpreter loads the model; conv weights take half the bytes, not faster on a CPU")


# --------------------------------------------------------------------------- build


def build(job: ExportJob, source: Source) -> BuiltArtifact:
    """Convert ``source`` to ``job.path`` (``.tflite``) at ``job.precision`` and verify the saved file.

    Args:
        job: ``precision`` one of :data:`PRECISIONS`; ``io``: tensor input at the
            model's size, layout ``"NCHW"`` (default) or ``"NHWC"``.
        source: an FP32 checkpoint (``fp32``, ``fp16``) or a quantize result made
            with recipe ``litert`` (``int8``).

    Returns:
        The artifact (float32 I/O for every precision), with ``checks``: ``ops``
        (op histogram), ``conv_weights`` (stored dtype -> count), ``io`` (read
        back from the file), ``transposes``, ``xnnpack`` (partitions, fully_delegated),
        ``file_bytes``, ``compute``; for ``int8`` also ``float_ops`` (ops left in
        float: the input normalisation and layout edge, the output dequantize)
        and ``rewrites`` (what the export-only graph rewrites changed).

    Raises:
        ConfigError: unknown precision, a source of the wrong kind or recipe, or
            an I/O spec this target does not offer.
        ExportError: conversion failed, or the saved file fails a check (a conv
            weight not in the precision's dtype, I/O not as requested, a
            TRANSPOSE left in an NHWC model).
    """
    _check_job(job, source)
    checks: dict[str, Any] = {}
    converter = versions(*_CONVERTER)
    if job.precision == "int8":
        from targets.tflite_rewrites import int8_module

        module, checks["rewrites"] = int8_module(source.program)
        converter.update(versions("torchao"))
    else:
        module = source.model.eval()
    if job.io.layout == "NHWC":
        from targets.wrappers import NHWC

        module = NHWC(module)
    if job.precision == "fp16":
        converter.update(versions("ai-edge-quantizer"))
    edge = _convert(_Signature(module, job.io), job, source)

    job.path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(job.path, suffix=".tmp.tflite") as tmp:
        with _quiet():
            edge.export(str(tmp))
        # Verify the bytes that will ship, before they get the final name.
        checks.update(_verify_file(tmp, job.io, job.precision))
    checks["file_bytes"] = job.path.stat().st_size
    checks["compute"] = {"fp32": "float32", "fp16": _FP16_COMPUTE,
                         "int8": "int8 (full-integer; input normalisation and output dequantize in float)"}[
        job.precision]
    runs_here = _runtime_available()
    return BuiltArtifact(path=job.path, io=job.io, dtype="float32", runs_here=runs_here,
                         not_run_reason=None if runs_here else "ai-edge-litert is not installed here",
                         checks=checks, converter=converter, runtime=versions(*_RUNTIME))


def _check_job(job: ExportJob, source: Source) -> None:
    from quantize.core import require_recipe

    check_precision("tflite", job.precision, tuple(PRECISIONS))
    if job.precision == "int8":
        if source.kind != "quantized" or source.program is None:
            raise ConfigError(f"tflite int8: got an FP32 checkpoint ({source.path}); int8 is converted from a PT2E "
                              "program: run python -m quantize.ptq (or quantize.qat) --recipe litert on it and "
                              "pass that output folder")
        require_recipe(source.recipe or "", PRECISIONS["int8"], f"tflite int8 ({source.path})")
    elif source.kind != "checkpoint":
        raise ConfigError(f"tflite {job.precision}: got a quantized source ({source.path}, recipe "
                          f"{source.recipe!r}); {job.precision} is converted from the FP32 student checkpoint: "
                          "pass that instead")
    check_io(job, source, "tflite")
    if not job.io.input_name.isidentifier():
        raise ConfigError(f"tflite: input name {job.io.input_name!r} is not a Python identifier; the signature "
                          "input is named after a keyword argument")


class _Signature(nn.Module):
    """Names the signature's input and output after ``io`` (apps look tensors up by signature key).

    ``forward(**{io.input_name: image})`` -> ``{io.output_name: alpha}``.
    """

    def __init__(self, model: nn.Module, io: IOSpec):
        super().__init__()
        self.model = model
        self.input_name = io.input_name
        self.output_name = io.output_name
        # Convert in eval mode (litert-torch warns on a training-mode module). The flag
        # only: exported int8 graphs refuse .eval(), and the FP32 model is already in eval.
        for m in self.modules():
            m.training = False

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.output_name: self.model(inputs[self.input_name])}


def _convert(module: _Signature, job: ExportJob, source: Source) -> Any:
    """``litert_torch.convert`` with the precision's quantization config; returns the in-memory model."""
    import litert_torch

    example = torch.rand(*job.io.input_shape(), generator=torch.Generator().manual_seed(0))
    if job.precision == "fp16":
        from litert_torch.generative.quantize.quant_recipes import full_fp16_recipe

        quant_config = full_fp16_recipe()
    elif job.precision == "int8":
        from litert_torch.quantize.quant_config import QuantConfig

        from quantize.recipes import make_quantizer

        # Only tells the converter that the QDQ pairs are static (full-integer) ones.
        quant_config = QuantConfig(pt2e_quantizer=make_quantizer(PRECISIONS["int8"], qat=False))
    else:
        quant_config = None
    try:
        with _quiet():
            return litert_torch.convert(module, sample_kwargs={job.io.input_name: example},
                                        quant_config=quant_config)
    except Exception as exc:  # torch.export, MLIR and the quantizer raise many types
        hint = ""
        if "same scale constraint" in str(exc):
            hint = ("; a quantized tensor is still read in float somewhere the float-use rewrite did not reach: "
                    "check the program's quantize/dequantize placement")
        raise ExportError(f"tflite {job.precision}: litert_torch.convert failed on {source.path}: "
                          f"{first_line(exc, limit=400)}{hint}") from exc


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """litert-torch prints a progress line per step on stdout; keep it out of the CLI's output."""
    with contextlib.redirect_stdout(_io.StringIO()):
        yield


# --------------------------------------------------------------------------- checks


def _verify_file(path: Path, io: IOSpec, precision: str) -> dict[str, Any]:
    """Read the saved file back (no inference) and check it against ``io`` and ``precision``."""
    found = inspect_tflite(path)
    problems = _io_problems(found["io"], io)
    want = _WEIGHT_DTYPE[precision]
    wrong = {k: v for k, v in found["conv_weights"].items() if k != want}
    if wrong:
        problems.append(f"conv weights stored as {wrong} (every one should be {want}; ops: {found['ops']})")
    if io.layout == "NHWC" and found["transposes"]:
        problems.append(f"{found['transposes']} TRANSPOSE op(s) left in an NHWC model (the layout pass should "
                        "have removed the edge permutes)")
    if problems:
        raise ExportError(f"tflite {precision}: the saved model fails its checks: " + "; ".join(problems))
    if precision != "int8":
        found.pop("float_ops")
    return found


def inspect_tflite(path: str | Path) -> dict[str, Any]:
    """What a ``.tflite`` holds, read with the LiteRT interpreter (nothing is run).

    Returns:
        ``ops`` (op name -> count, the model's own ops, no delegate),
        ``conv_weights`` (stored weight dtype -> count over CONV_2D and
        DEPTHWISE_CONV_2D; ``"float16 (DEQUANTIZE)"`` for a float16 constant
        expanded at load), ``conv_weights_per_channel`` (int8 weights with one
        scale per output channel), ``float_ops`` (ops other than QUANTIZE /
        DEQUANTIZE whose output is float32), ``transposes``, ``io`` (signature
        inputs and outputs: name, tensor, shape, dtype, quantization) and
        ``xnnpack``: ``partitions`` (DELEGATE nodes the default interpreter
        creates) and ``fully_delegated``.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default delegate, so the op list is the model's own.
    plain = Interpreter(model_path=str(path),
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    ops = plain._get_ops_details()  # the interpreter's only op-level view
    tensor = {}

    def detail(index: int) -> dict[str, Any]:
        if index not in tensor:
            tensor[index] = plain._get_tensor_details(index, 0)
        return tensor[index]

    producer = {int(out): op for op in ops for out in op["outputs"]}
    weights, per_channel = Counter(), 0
    for op in (o for o in ops if o["op_name"] in _CONV_OPS):
        w = op["inputs"][1]
        src = producer.get(int(w))
        if src is not None and src["op_name"] == "DEQUANTIZE":
            weights[f"{np.dtype(detail(src['inputs'][0])['dtype']).name} (DEQUANTIZE)"] += 1
            continue
        d = detail(w)
        weights[np.dtype(d["dtype"]).name] += 1
        q = d["quantization_parameters"]
        # One scale per output channel (a 1-channel conv has one either way).
        per_channel += int(0 < len(q["scales"]) == d["shape"][q["quantized_dimension"]])
    float_ops = Counter(o["op_name"] for o in ops if o["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                        and any(np.dtype(detail(t)["dtype"]) == np.float32 for t in o["outputs"]))
    hist = Counter(o["op_name"] for o in ops)
    io = _read_io(plain)
    return {"ops": dict(sorted(hist.items())), "conv_weights": dict(weights), "conv_weights_per_channel": per_channel,
            "float_ops": dict(sorted(float_ops.items())), "transposes": hist.get("TRANSPOSE", 0), "io": io,
            "xnnpack": _xnnpack_coverage(path, producer, plain)}


def _xnnpack_coverage(path: str | Path, producer: dict[int, Any], plain: Any) -> dict[str, Any]:
    """How the default interpreter (XNNPACK delegate) partitions the graph.

    The model is fully delegated when one DELEGATE node reads only the model
    input and constants (no tensor made by an op left outside it) and writes the
    model output.
    """
    from ai_edge_litert.interpreter import Interpreter

    default = Interpreter(model_path=str(path))
    default.allocate_tensors()
    delegates = [o for o in default._get_ops_details() if o["op_name"] == "DELEGATE"]
    outputs = {d["index"] for d in plain.get_output_details()}
    full = (len(delegates) == 1 and not any(int(t) in producer for t in delegates[0]["inputs"])
            and {int(t) for t in delegates[0]["outputs"]} == outputs)
    return {"partitions": len(delegates), "fully_delegated": bool(full)}


def _read_io(interpreter: Any) -> dict[str, Any]:
    """The ``serving_default`` signature's tensors: name, tensor, shape, dtype, quantization."""
    sigs = interpreter._get_full_signature_list()  # name -> tensor index
    sig = sigs.get(SIGNATURE, {"inputs": {}, "outputs": {}})
    details = {d["index"]: d for d in interpreter.get_input_details() + interpreter.get_output_details()}

    def one(name: str, index: int) -> dict[str, Any]:
        d = details[index]
        scale, zero = d["quantization"]
        return {"name": name, "tensor": d["name"], "shape": [int(v) for v in d["shape"]],
                "dtype": np.dtype(d["dtype"]).name,
                "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}

    return {"signatures": sorted(sigs), "inputs": [one(n, i) for n, i in sig["inputs"].items()],
            "outputs": [one(n, i) for n, i in sig["outputs"].items()]}


def _io_problems(found: dict[str, Any], io: IOSpec) -> list[str]:
    got = ([(t["name"], t["shape"], t["dtype"]) for t in found["inputs"]],
           [(t["name"], t["shape"], t["dtype"]) for t in found["outputs"]])
    want = ([(io.input_name, io.input_shape(), "float32")], [(io.output_name, io.output_shape(), "float32")])
    if found["signatures"] != [SIGNATURE] or got != want:
        return [(f"signature(s) {found['signatures']} with (name, shape, dtype) inputs/outputs {got}, expected "
                 f"signature {SIGNATURE!r} with {want}")]
    return []


def _runtime_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ai_edge_litert") is not None


# --------------------------------------------------------------------------- run


@dataclass
class TFLiteRunner:
    """A loaded ``.tflite`` (see :class:`targets.common.Runner`).

    ``prepare`` puts the ``1 x 3 x S x S`` float32 image in the artifact's layout
    (and quantizes it if the input tensor is int8); ``invoke`` is
    ``set_tensor`` + ``invoke`` + ``get_tensor`` alone; ``__call__`` also
    dequantizes an int8 output and returns alpha ``1 x 1 x S x S`` float32.
    """

    io: IOSpec
    interpreter: Any
    input_index: int
    output_index: int
    input_quant: tuple[float, int, np.dtype] | None = None
    output_quant: tuple[float, int] | None = None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        x = to_layout(image, self.io.layout)
        if self.input_quant is not None:
            scale, zero, dtype = self.input_quant
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
        return x

    def invoke(self, prepared: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_index, prepared)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        out = self.invoke(self.prepare(image))
        if self.output_quant is not None:
            scale, zero = self.output_quant
            out = (out.astype(np.float32) - zero) * scale
        return from_layout(out, self.io.layout)


def load_runner(path: str | Path, io: IOSpec, threads: int | None = None) -> TFLiteRunner:
    """The LiteRT interpreter on the saved ``.tflite`` (XNNPACK delegate applied by default).

    Args:
        path: the artifact.
        io: its I/O contract; the ``serving_default`` signature must have one
            input ``io.input_name`` and one output ``io.output_name`` of its shapes.
        threads: interpreter threads; None keeps the runtime's default.

    Returns:
        A :class:`TFLiteRunner`: ``1 x 3 x S x S`` float32 in [0, 1] -> alpha
        ``1 x 1 x S x S`` float32.

    Raises:
        RuntimeUnavailable: ``ai-edge-litert`` is not installed on this platform.
        ExportError: no such file, or the file does not match ``io``.
        ConfigError: ``threads`` < 1.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise RuntimeUnavailable(f"{path}: the LiteRT runtime is not available here ({exc}); "
                                 "pip install ai-edge-litert (Linux x86-64/aarch64, macOS arm64)") from None
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such TFLite artifact; build it with the tflite target first")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1 or None (runtime default), got {threads}")
    try:
        interpreter = Interpreter(model_path=os.fspath(path), num_threads=threads)
        interpreter.allocate_tensors()
    except Exception as exc:  # the interpreter raises ValueError/RuntimeError
        raise ExportError(f"{path}: the LiteRT interpreter cannot load it: {first_line(exc, limit=400)}") from exc
    found = _read_io(interpreter)
    got = ([(t["name"], t["shape"]) for t in found["inputs"]], [(t["name"], t["shape"]) for t in found["outputs"]])
    want = ([(io.input_name, io.input_shape())], [(io.output_name, io.output_shape())])
    if got != want:
        raise ExportError(f"{path}: signature {SIGNATURE!r} has (name, shape) inputs/outputs {got}, expected {want}")
    sig = interpreter._get_full_signature_list()[SIGNATURE]
    inp, out = found["inputs"][0], found["outputs"][0]
    in_q = out_q = None
    if inp["dtype"] != "float32":
        in_q = (inp["quantization"]["scale"], inp["quantization"]["zero_point"], np.dtype(inp["dtype"]))
    if out["dtype"] != "float32":
        out_q = (out["quantization"]["scale"], out["quantization"]["zero_point"])
    return TFLiteRunner(io, interpreter, sig["inputs"][io.input_name], sig["outputs"][io.output_name], in_q, out_q)
