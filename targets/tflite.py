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

The converted PT2E program needs three export-only rewrites (on a copy of the
program, never on the model) before litert-torch takes it:

1. **unfold the int8 weights**: ``convert_pt2e`` stores each weight as an int8
   constant feeding a ``dequantize``; the converter only lowers the
   ``quantize -> dequantize`` pair on a float constant and fails with
   "'stablehlo.uniform_dequantize' op operand #0 must be ... quantized values"
   otherwise. The float constant is the dequantized weight, so re-quantizing it
   gives back exactly the same int8 values;
2. **route float uses through the dequantize**: where a quantized tensor is
   also read in float (the refiner concatenates the normalised image with
   features; an unannotated concat reads the raw float), the converter cannot
   give the shared tensors one scale and fails with "'tfl.pad' op quantization
   parameters violate the same scale constraint". Every float reader is moved
   onto the tensor's existing ``dequantize`` node, i.e. it sees the int8 value,
   as the integer model does anyway;
3. **float output**: the converter drops a trailing ``dequantize`` and would
   give the app an int8 alpha; a ``relu`` (an identity on a sigmoid) after it
   keeps one ``DEQUANTIZE`` + ``RELU`` on the ``S x S`` alpha, so int8 artifacts
   keep float32 I/O like every other artifact here. (A ``clamp(0, 1)`` becomes
   ``RELU_0_TO_1``, which XNNPACK does not take: it split the delegation in two.)

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
        module, checks["rewrites"] = _int8_module(source.program)
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

    if job.precision not in PRECISIONS:
        raise ConfigError(f"tflite: precision {job.precision!r} is not offered; choose one of {sorted(PRECISIONS)}")
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
    if job.io.layout not in ("NCHW", "NHWC") or job.io.input_kind != "tensor":
        raise ConfigError(f"tflite: I/O layout {job.io.layout!r} with input kind {job.io.input_kind!r} is not "
                          "offered; the .tflite takes a float tensor (input kind 'tensor', layout 'NCHW' or 'NHWC')")
    if job.io.size != source.size:
        raise ConfigError(f"tflite: I/O size {job.io.size} differs from the model's fixed size {source.size} "
                          f"({source.path}); export at size {source.size}")
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
                          f"{_first_line(exc)}{hint}") from exc


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """litert-torch prints a progress line per step on stdout; keep it out of the CLI's output."""
    with contextlib.redirect_stdout(_io.StringIO()):
        yield


# --------------------------------------------------------------------------- int8 rewrites


def _int8_module(program: torch.export.ExportedProgram) -> tuple[torch.fx.GraphModule, dict[str, int]]:
    """A copy of the converted PT2E program, rewritten for litert-torch's full-integer conversion.

    Args:
        program: ``Source.program``: batch 1, ``1 x 3 x S x S`` -> alpha ``1 x 1 x S x S``.

    Returns:
        ``(module, counts)``: the rewritten graph module (same outputs as the
        program) and how many weights / float uses / outputs each rewrite changed.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval

    gm = program.module()  # a fresh graph module each call: the source program is not touched
    move_exported_model_to_eval(gm)
    counts = {"weights_unfolded": unfold_int8_weights(gm), "float_uses_rerouted": route_float_uses(gm),
              "float_outputs": float_output(gm), "float_inputs": float_input(gm)}
    gm.graph.lint()
    gm.recompile()
    # The flag only (exported graphs refuse .eval() and ignore the mode): litert-torch
    # warns "converted in training mode" when it is set.
    for m in gm.modules():
        m.training = False
    return gm, counts


def _qd():
    import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401 - registers the quantized_decomposed ops

    return torch.ops.quantized_decomposed


def _is_call(node: torch.fx.Node, ops: tuple) -> bool:
    return node.op == "call_function" and node.target in ops


def unfold_int8_weights(gm: torch.fx.GraphModule) -> int:
    """Replace each ``int8 constant -> dequantize`` by ``float constant -> quantize -> dequantize``.

    The float constant is the dequantized weight, so the quantize gives back the
    same int8 values (the form ``convert_pt2e(fold_quantize=False)`` produces,
    which litert-torch lowers). Returns the number of weights rewritten.
    """
    qd = _qd()
    pairs = {qd.dequantize_per_channel.default: qd.quantize_per_channel.default,
             qd.dequantize_per_tensor.default: qd.quantize_per_tensor.default}
    count = 0
    for node in list(gm.graph.nodes):
        if not _is_call(node, tuple(pairs)) or node.args[0].op != "get_attr":
            continue
        const = node.args[0]
        stored = _attr(gm, const.target)
        if stored.dtype not in (torch.int8, torch.uint8):
            continue
        with torch.no_grad():
            args = [_attr(gm, a.target) if isinstance(a, torch.fx.Node) else a for a in node.args]
            weight = node.target(*args, **node.kwargs)  # float32, same shape
        name = f"_{const.target.replace('.', '_')}_float"
        gm.register_buffer(name, weight)
        with gm.graph.inserting_before(node):
            attr = gm.graph.get_attr(name)
            quant = gm.graph.call_function(pairs[node.target], (attr, *node.args[1:]))
        node.replace_input_with(const, quant)
        count += 1
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    return count


def route_float_uses(gm: torch.fx.GraphModule) -> int:
    """Make every reader of a quantized tensor read its dequantized value.

    For each ``quantize_per_tensor(x)`` node, any other user of ``x`` that is not
    itself a quantize op (a float reader, e.g. a concat the quantizer left
    unannotated) is moved onto the quantize node's existing ``dequantize`` user
    (one is created if it has none). Returns the number of uses moved.
    """
    qd = _qd()
    quants = (qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor)
    dequants = (qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor)
    moved = 0
    for quant in [n for n in gm.graph.nodes if _is_call(n, quants)]:
        src = quant.args[0]
        readers = [u for u in src.users if not _is_call(u, quants)]
        if not readers:
            continue
        dequant = next((u for u in quant.users if _is_call(u, dequants)), None)
        if dequant is None:
            dequant = gm.graph.call_function(qd.dequantize_per_tensor.default, (quant, *quant.args[1:]),
                                             dict(quant.kwargs))
            quant.append(dequant)
        order = {n: i for i, n in enumerate(gm.graph.nodes)}
        if min(order[r] for r in readers) < order[dequant]:
            # A reader comes first: move the pair up to the source (topological order).
            src.append(quant)
            quant.append(dequant)
        for reader in readers:
            reader.replace_input_with(src, dequant)
            moved += 1
    return moved


def float_output(gm: torch.fx.GraphModule) -> int:
    """Put a ``relu`` after each output that is a ``dequantize``; returns how many.

    litert-torch's static conversion drops a trailing dequantize (int8 output);
    a float op after it keeps the DEQUANTIZE in the file. On alpha (a sigmoid,
    dequantized to [0, 1)) the relu is an identity, and XNNPACK runs it.
    """
    qd = _qd()
    dequants = (qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor)
    out = next(n for n in gm.graph.nodes if n.op == "output")
    count = 0
    for value in out.all_input_nodes:
        if _is_call(value, dequants):
            with gm.graph.inserting_after(value):
                relu = gm.graph.call_function(torch.ops.aten.relu.default, (value,))
            out.replace_input_with(value, relu)
            count += 1
    return count


def float_input(gm: torch.fx.GraphModule) -> int:
    """Put a ``relu`` between each input and its ``quantize`` nodes; returns how many inputs.

    When every use of the image is quantized (a model whose first op on the
    image is int8), litert-torch folds the leading quantize into the input and
    the file takes int8. A float op first keeps float32 input (the artifact
    contract), with the QUANTIZE inside the model. The image is in [0, 1], so
    the relu is an identity; XNNPACK runs it.
    """
    qd = _qd()
    quants = (qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor)
    count = 0
    for ph in [n for n in gm.graph.nodes if n.op == "placeholder"]:
        users = list(ph.users)
        if not users or not all(_is_call(u, quants) for u in users):
            continue
        with gm.graph.inserting_after(ph):
            relu = gm.graph.call_function(torch.ops.aten.relu.default, (ph,))
        for u in users:
            u.replace_input_with(ph, relu)
        count += 1
    return count


def _attr(gm: torch.fx.GraphModule, target: str) -> torch.Tensor:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


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


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    # MLIR errors put the useful "error: ..." line last.
    err = next((ln for ln in reversed(lines) if "error:" in ln), None)
    return (err or (lines[0] if lines else type(exc).__name__))[:400]


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
        raise ExportError(f"{path}: the LiteRT interpreter cannot load it: {_first_line(exc)}") from exc
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
