"""Rebuild a LiteRT ``.tflite`` graph as a trainable PyTorch module.

MediaPipe's networks (selfie segmenter, Face Mesh, BlazeFace) were trained on real
photographs; rebuilt here, their weights can initialise our own models and be
fine-tuned. The conversion has three parts:

* :func:`read_graph` walks the flatbuffer and returns a JSON-serialisable *spec*
  (tensors, ops with their options, which constant tensors are parameters) with
  no weights in it, so a checkpoint can store it in its config;
* :func:`read_weights` decodes the constant tensors (FLOAT16 constants behind a
  DEQUANTIZE op are folded) into fp32 tensors already in PyTorch layout;
* :class:`TFLiteGraph` runs the spec with plain ``torch.nn.functional`` calls,
  keeping rank-4 activations in NCHW (the weights are converted, never the
  activations), so ``torch.export`` can trace it.

Example::

    graph = load_tflite(mediapipe_model("selfie_segmentation.tflite"))
    prob = graph(torch.rand(2, 3, 256, 256))[0]      # 2 x 1 x 256 x 256

TensorFlow semantics that differ from PyTorch's defaults are rebuilt:
asymmetric SAME padding (extra pixel bottom/right) and the three RESIZE_BILINEAR
coordinate modes (both checked against LiteRT by the tests), and SAME average
pools that do not count padded cells (no shipped MediaPipe model has one).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import struct
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facemat.errors import CheckpointError, ConfigError

__all__ = ["SPEC_FORMAT", "SUPPORTED_OPS", "read_graph", "read_weights", "TFLiteGraph", "load_tflite", "tensor_names"]

SPEC_FORMAT = "facemat-tflite-graph/1"

# Constant inputs that carry structure (shapes, paddings, axes), not weights:
# they are inlined into the op's options instead of becoming parameters.
_STRUCTURAL_INPUTS = {
    ("PAD", 1), ("PADV2", 1), ("PADV2", 2), ("RESHAPE", 1), ("RESIZE_BILINEAR", 1), ("MEAN", 1),
}

# How a float constant in TFLite layout becomes a PyTorch parameter, by (op, input slot).
#   oihw: conv kernel O,H,W,I -> O,I,H,W     dw: depthwise 1,H,W,C*m -> C*m,1,H,W
#   iohw: transposed-conv kernel O,H,W,I -> I,O,H,W (conv_transpose2d's layout)
#   nchw: broadcast operand of a rank-4 op: left-pad to rank 4, then NHWC -> NCHW
#   raw:  unchanged (biases, fully-connected weights, non rank-4 operands)
_WEIGHT_LAYOUTS = {
    ("CONV_2D", 1): "oihw",
    ("DEPTHWISE_CONV_2D", 1): "dw",
    ("Convolution2DTransposeBias", 1): "iohw",
}
_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "PRELU", "CONCATENATION"}

SUPPORTED_OPS = (
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D",
    "MAX_POOL_2D", "MEAN", "PAD", "PADV2", "RESHAPE", "CONCATENATION", "FULLY_CONNECTED", "RESIZE_BILINEAR",
    "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "PRELU", "TANH", "LOGISTIC", "HARD_SWISH", "SOFTMAX",
    "Convolution2DTransposeBias",
)

# TFLite ActivationFunctionType -> function (SIGN_BIT = 5 is not supported).
_ACTIVATIONS: dict[int, Callable[[Tensor], Tensor]] = {
    0: lambda x: x,
    1: F.relu,
    2: lambda x: x.clamp(-1.0, 1.0),
    3: lambda x: x.clamp(0.0, 6.0),
    4: torch.tanh,
}

_NUMPY_DTYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32, "INT8": np.int8,
                 "UINT8": np.uint8, "INT64": np.int64, "INT16": np.int16}


def _schema() -> Any:
    """The flatbuffer schema module of ai_edge_litert (imported lazily: heavy, optional)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as e:  # pragma: no cover - the project pins ai-edge-litert
        raise CheckpointError(f"reading .tflite files needs ai-edge-litert ({e})") from e
    return schema_py_generated


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _jsonable(value: Any) -> Any:
    """Options objects of the schema's object API -> plain JSON types."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: _jsonable(v) for k, v in vars(value).items()}
    return repr(value)


def _read_model(path: str | os.PathLike[str]) -> tuple[bytes, Any]:
    """File bytes and the unpacked ``ModelT``; a clear error for anything that is not a TFLite model."""
    try:
        buf = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read TFLite model {path}: {e.strerror or e}") from e
    # A TFLite flatbuffer carries the file identifier "TFL3" at bytes 4..8.
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise CheckpointError(f"{path} is not a TFLite flatbuffer (no 'TFL3' file identifier)")
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # a truncated or corrupt flatbuffer fails anywhere inside the parser
        raise CheckpointError(f"{path} is a corrupt TFLite flatbuffer ({type(e).__name__}: {e})") from e
    if not model.subgraphs:
        raise CheckpointError(f"{path} has no subgraph")
    return buf, model


def _op_name(model: Any, op: Any, builtin_names: dict[int, str]) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    # Newer files keep codes >= 127 in builtinCode only, older ones in deprecatedBuiltinCode.
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    name = builtin_names.get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        return code.customCode.decode() if isinstance(code.customCode, bytes) else str(code.customCode)
    return name


def _buffer_bytes(buf: bytes, model: Any, tensor: Any) -> bytes | None:
    """Raw bytes of a constant tensor, or None for an activation."""
    if tensor.buffer <= 0 or tensor.buffer >= len(model.buffers):
        return None
    b = model.buffers[tensor.buffer]
    if b.data is not None and len(b.data):
        return np.asarray(b.data, dtype=np.uint8).tobytes()
    if getattr(b, "offset", 0) > 1 and getattr(b, "size", 0) > 0:  # buffers stored after the flatbuffer (>2 GB files)
        return buf[b.offset:b.offset + b.size]
    return None


def _const_array(buf: bytes, model: Any, tensor: Any, type_names: dict[int, str]) -> np.ndarray:
    """A constant tensor as a numpy array in its TFLite shape and dtype."""
    if tensor.sparsity is not None:
        raise CheckpointError(f"tensor {tensor.name!r} holds sparse weights (DENSIFY); sparse models are not supported")
    tname = type_names.get(tensor.type, str(tensor.type))
    if tname not in _NUMPY_DTYPES:
        raise CheckpointError(f"tensor {tensor.name!r} has unsupported constant type {tname}")
    data = _buffer_bytes(buf, model, tensor)
    if data is None:
        raise CheckpointError(f"tensor {tensor.name!r} is not a constant")
    shape = [int(s) for s in (tensor.shape if tensor.shape is not None else [])]
    return np.frombuffer(data, dtype=np.dtype(_NUMPY_DTYPES[tname]).newbyteorder("<")).reshape(shape)


def _dequantize(arr: np.ndarray, tensor: Any) -> np.ndarray:
    """fp32 values of a DEQUANTIZE input: float16 cast, or (q - zero_point) * scale (per tensor or per axis)."""
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        raise CheckpointError(f"tensor {tensor.name!r} is quantized without scales")
    scale = np.asarray(q.scale, np.float32)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float32)
    if scale.size > 1:  # per-axis: broadcast along the quantized dimension
        shape = [1] * arr.ndim
        shape[int(q.quantizedDimension)] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape) if zero.size > 1 else zero
    return ((arr.astype(np.float32) - zero) * scale).astype(np.float32)


def _sanitize(name: str, taken: set[str]) -> str:
    """A unique parameter name that is a valid attribute and state_dict key (no dots, no leading underscore)."""
    base = re.sub(r"[^0-9A-Za-z_]+", "_", name.removesuffix("_dequantize")).strip("_") or "param"
    if base[0].isdigit() or hasattr(nn.Module, base) or hasattr(TFLiteGraph, base):
        base = "p_" + base
    out, k = base, 1
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def _torch_shape(shape: list[int], layout: str) -> list[int]:
    if layout in ("oihw",):
        return [shape[0], shape[3], shape[1], shape[2]]
    if layout in ("dw", "iohw"):
        return [shape[3], shape[0], shape[1], shape[2]]
    if layout == "nchw":
        s = [1] * (4 - len(shape)) + list(shape)
        return [s[0], s[3], s[1], s[2]]
    return list(shape)


def _to_layout(arr: np.ndarray, layout: str) -> np.ndarray:
    if layout == "oihw":
        return arr.transpose(0, 3, 1, 2)
    if layout in ("dw", "iohw"):
        return arr.transpose(3, 0, 1, 2)
    if layout == "nchw":
        return arr.reshape([1] * (4 - arr.ndim) + list(arr.shape)).transpose(0, 3, 1, 2)
    return arr


def _custom_options(name: str, raw: Any) -> dict[str, Any]:
    """Parse the custom options of the custom ops we run."""
    data = bytes(np.asarray(raw, np.uint8).tobytes()) if raw is not None else b""
    if name == "Convolution2DTransposeBias":
        if len(data) != 12:
            raise CheckpointError(f"{name} has {len(data)} bytes of custom options, expected 12")
        # TfLiteTransposeConvParams: TfLitePadding (1 = SAME, 2 = VALID), stride_w, stride_h.
        padding, stride_w, stride_h = struct.unpack("<3i", data)
        return {"padding": {1: "SAME", 2: "VALID"}.get(padding, f"UNKNOWN_{padding}"),
                "stride": [stride_h, stride_w]}
    return {"custom_options_hex": data.hex()}


def read_graph(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the structure of a ``.tflite`` file's main subgraph (no weights).

    Args:
        path: a ``.tflite`` flatbuffer.

    Returns:
        A JSON-serialisable spec: ``format``, ``source_name``, ``source_sha256``;
        ``tensors`` (index-aligned ``{"name", "shape" (TFLite order, NHWC for
        rank 4), "dtype", "const"}``); ``ops`` (``{"op", "inputs", "outputs",
        "options"}`` with tensor indices; constant DEQUANTIZE ops are folded
        away, structural constants such as paddings are inlined as
        ``options["const_inputs"]``); graph ``inputs`` / ``outputs`` (tensor
        indices); ``params`` (``str(tensor index) -> parameter name``), and
        ``param_layouts`` / ``param_shapes`` (PyTorch shape of each parameter).

    Raises:
        CheckpointError: the file cannot be read or is not a TFLite flatbuffer.
    """
    buf, model = _read_model(path)
    schema = _schema()
    builtin_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    g = model.subgraphs[0]
    tensors = g.tensors or []
    names = [_op_name(model, op, builtin_names) for op in (g.operators or [])]

    def is_const(i: int) -> bool:
        return i >= 0 and _buffer_bytes(buf, model, tensors[i]) is not None

    # Constant DEQUANTIZE (float16 / int8 weights) is folded: its output becomes the constant.
    folded: set[int] = set()
    const: set[int] = {i for i in range(len(tensors)) if is_const(i)}
    for k, op in enumerate(g.operators or []):
        if names[k] == "DEQUANTIZE" and is_const(int(op.inputs[0])):
            folded.add(k)
            const.add(int(op.outputs[0]))

    ops: list[dict[str, Any]] = []
    layouts: dict[int, str] = {}
    for k, op in enumerate(g.operators or []):
        if k in folded:
            continue
        name = names[k]
        inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        outputs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
        options = _jsonable(op.builtinOptions) if op.builtinOptions is not None else {}
        if op.customOptions is not None and len(op.customOptions):
            options.update(_custom_options(name, op.customOptions))
        const_inputs: dict[str, Any] = {}
        out_rank = len(tensors[outputs[0]].shape) if outputs and tensors[outputs[0]].shape is not None else 0
        for slot, i in enumerate(inputs):
            if i < 0 or i not in const:
                continue
            if (name, slot) in _STRUCTURAL_INPUTS:
                const_inputs[str(slot)] = _const_array(buf, model, tensors[i], type_names).tolist()
                continue
            if name in _ELEMENTWISE and out_rank == 4:
                layout = "nchw"
            else:
                layout = _WEIGHT_LAYOUTS.get((name, slot), "raw")
            if layouts.setdefault(i, layout) != layout:
                raise CheckpointError(f"constant {tensors[i].name!r} is used with two weight layouts "
                                      f"({layouts[i]}, {layout}); not supported")
        if const_inputs:
            options["const_inputs"] = const_inputs
        ops.append({"op": name, "inputs": inputs, "outputs": outputs, "options": options})

    taken: set[str] = set()
    params: dict[str, str] = {}
    param_layouts: dict[str, str] = {}
    param_shapes: dict[str, list[int]] = {}
    for i in sorted(layouts):
        t = tensors[i]
        pname = _sanitize(t.name.decode() if isinstance(t.name, bytes) else str(t.name), taken)
        params[str(i)] = pname
        param_layouts[pname] = layouts[i]
        param_shapes[pname] = _torch_shape([int(s) for s in t.shape], layouts[i])

    spec_tensors = []
    for i, t in enumerate(tensors):
        spec_tensors.append({
            "name": t.name.decode() if isinstance(t.name, bytes) else str(t.name),
            "shape": [int(s) for s in (t.shape if t.shape is not None else [])],
            "dtype": type_names.get(t.type, str(t.type)),
            "const": i in const,
        })
    return {
        "format": SPEC_FORMAT,
        "source_name": Path(path).name,
        "source_sha256": hashlib.sha256(buf).hexdigest(),
        "tensors": spec_tensors,
        "ops": ops,
        "inputs": [int(i) for i in g.inputs],
        "outputs": [int(i) for i in g.outputs],
        "params": params,
        "param_layouts": param_layouts,
        "param_shapes": param_shapes,
    }


def read_weights(path: str | os.PathLike[str], spec: dict[str, Any]) -> dict[str, Tensor]:
    """Decode the parameters named in ``spec`` from the ``.tflite`` file.

    Args:
        path: the same file :func:`read_graph` read (its sha256 is checked).
        spec: the spec from :func:`read_graph`.

    Returns:
        ``param name -> fp32 tensor`` in PyTorch layout (conv ``O x I x kH x kW``,
        depthwise ``C x 1 x kH x kW``, transposed conv ``I x O x kH x kW``,
        rank-4 broadcast operands ``1 x C x H x W``).

    Raises:
        CheckpointError: another file than the spec's, or an undecodable constant.
    """
    buf, model = _read_model(path)
    digest = hashlib.sha256(buf).hexdigest()
    if digest != spec.get("source_sha256"):
        raise CheckpointError(f"{path} (sha256 {digest[:16]}...) is not the file this graph spec was read from "
                              f"({str(spec.get('source_sha256'))[:16]}...)")
    schema = _schema()
    builtin_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    g = model.subgraphs[0]
    dequant_source = {int(op.outputs[0]): int(op.inputs[0]) for op in (g.operators or [])
                      if _op_name(model, op, builtin_names) == "DEQUANTIZE"}
    out: dict[str, Tensor] = {}
    for key, pname in spec["params"].items():
        i = int(key)
        src = dequant_source.get(i, i)
        arr = _const_array(buf, model, g.tensors[src], type_names)
        arr = _dequantize(arr, g.tensors[src]) if src != i else arr.astype(np.float32)
        arr = _to_layout(arr, spec["param_layouts"][pname])
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if list(t.shape) != list(spec["param_shapes"][pname]):
            raise CheckpointError(f"parameter {pname} has shape {list(t.shape)}, the spec says "
                                  f"{spec['param_shapes'][pname]}")
        out[pname] = t
    return out


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after): the extra pixel goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _nchw_axis(axis: int, rank: int) -> int:
    """A TFLite (NHWC) axis of a rank-4 tensor -> the NCHW axis."""
    axis = axis % rank
    return (0, 2, 3, 1)[axis] if rank == 4 else axis


def _resize_legacy(x: Tensor, out_h: int, out_w: int) -> Tensor:
    """TF's legacy bilinear resize (align_corners=False, half_pixel_centers=False).

    Source coordinate ``src = dst * in / out`` (no half-pixel shift), lower index
    ``floor(src)``, upper ``min(floor + 1, in - 1)``. Not torch's
    ``align_corners=False``, which shifts by half a pixel.
    """
    def axis(size_in: int, size_out: int) -> tuple[Tensor, Tensor, Tensor]:
        src = torch.arange(size_out, dtype=torch.float32, device=x.device) * (size_in / size_out)
        lo = src.floor().clamp(max=size_in - 1)
        w = (src - lo).to(x.dtype)
        lo_i = lo.long()
        return lo_i, (lo_i + 1).clamp(max=size_in - 1), w

    ylo, yhi, wy = axis(x.shape[2], out_h)
    xlo, xhi, wx = axis(x.shape[3], out_w)
    top, bottom = x.index_select(2, ylo), x.index_select(2, yhi)
    x = top + (bottom - top) * wy.view(1, 1, -1, 1)
    left, right = x.index_select(3, xlo), x.index_select(3, xhi)
    return left + (right - left) * wx.view(1, 1, 1, -1)


class TFLiteGraph(nn.Module):
    """A TFLite graph run with PyTorch ops; every float constant is a trainable parameter.

    Rank-4 activations are kept in NCHW; weights were converted to match by
    :func:`read_weights`. Parameters are registered directly on the module under
    the spec's parameter names, so ``state_dict()`` keys equal the keys of
    :func:`read_weights`.

    Spatial sizes other than the graph's own work for fully-convolutional graphs:
    SAME padding is computed from the actual tensor sizes, RESIZE_BILINEAR scales
    its target by the same factor as in the graph (2x stays 2x), and an average
    pool whose window covered its whole input (a squeeze-excite global pool)
    stays global.

    Args:
        spec: from :func:`read_graph` (or its JSON round trip).
        outputs: tensor names (or indices) to return; default the graph outputs.
            Ops (and their parameters) not needed for them are pruned, so a pruned
            module loads only its own subset of :func:`read_weights`'s tensors.

    Raises:
        ConfigError: an unknown output name, a spec of another format, or a graph
            that does not have exactly one input.
        CheckpointError: an op needed for the outputs is not supported (named).
    """

    def __init__(self, spec: dict[str, Any], outputs: Sequence[str | int] | None = None):
        super().__init__()
        if spec.get("format") != SPEC_FORMAT:
            raise ConfigError(f"not a TFLite graph spec (format {spec.get('format')!r}, expected {SPEC_FORMAT!r})")
        if len(spec["inputs"]) != 1:
            raise ConfigError(f"only single-input graphs are supported; this one has {len(spec['inputs'])} inputs")
        self._tensors: list[dict[str, Any]] = spec["tensors"]
        self._input = int(spec["inputs"][0])
        self._outputs = [self._resolve(o) for o in (outputs if outputs is not None else spec["outputs"])]
        param_of = {int(k): v for k, v in spec["params"].items()}

        # Keep only the ops that the requested outputs depend on (graph order is topological).
        producer = {o: k for k, op in enumerate(spec["ops"]) for o in op["outputs"]}
        needed, stack, keep = set(self._outputs), list(self._outputs), set()
        while stack:
            t = stack.pop()
            if t == self._input or t in param_of or self._tensors[t]["const"]:
                continue  # inlined structural constants (paddings, shapes) need no op
            if t not in producer:
                raise ConfigError(f"tensor {self._tensors[t]['name']!r} is neither produced by an op nor an input")
            k = producer[t]
            if k not in keep:
                keep.add(k)
                for i in spec["ops"][k]["inputs"]:
                    if i >= 0 and i not in needed:
                        needed.add(i)
                        stack.append(i)
        self._ops: list[dict[str, Any]] = [spec["ops"][k] for k in sorted(keep)]
        for op in self._ops:
            if op["op"] not in SUPPORTED_OPS:
                raise CheckpointError(f"unsupported TFLite op {op['op']} (producing "
                                      f"{self._tensors[op['outputs'][0]]['name']!r}); supported: "
                                      f"{', '.join(SUPPORTED_OPS)}")
            act = op["options"].get("fusedActivationFunction", 0)
            if act not in _ACTIVATIONS:
                raise CheckpointError(f"unsupported fused activation {act} on op {op['op']}")
        self._param_of = {i: n for i, n in param_of.items() if i in needed}
        for i, pname in sorted(self._param_of.items()):
            shape = spec["param_shapes"][pname]
            self.register_parameter(pname, nn.Parameter(torch.zeros(shape, dtype=torch.float32)))

    def _resolve(self, ref: str | int) -> int:
        if isinstance(ref, int):
            if not 0 <= ref < len(self._tensors):
                raise ConfigError(f"tensor index {ref} out of range (0..{len(self._tensors) - 1})")
            return ref
        hits = [i for i, t in enumerate(self._tensors) if t["name"] == ref]
        if len(hits) != 1:
            raise ConfigError(f"{'no' if not hits else 'more than one'} tensor named {ref!r}; "
                              "see tensor_names(spec)")
        return hits[0]

    def _rank(self, i: int) -> int:
        return len(self._tensors[i]["shape"])

    def _shape(self, i: int) -> list[int]:
        return self._tensors[i]["shape"]

    def forward(self, x: Tensor) -> list[Tensor]:
        """Run the graph.

        Args:
            x: ``N x C x H x W`` float in the model's input range (MediaPipe's
                selfie segmenter and Face Mesh: RGB in [0, 1]; BlazeFace: [-1, 1]).
                A graph whose input is not rank 4 takes the tensor as TFLite has it.

        Returns:
            The requested tensors: rank-4 ones as ``N x C x H x W``, others in
            TFLite's order with batch ``N`` (e.g. BlazeFace's ``N x 896 x 16``).
        """
        env: dict[int, Tensor] = {self._input: x}
        for i, pname in self._param_of.items():
            env[i] = getattr(self, pname)
        for op in self._ops:
            # Absent optional inputs (-1) and inlined structural constants come through as None.
            ins = [env.get(i) for i in op["inputs"]]
            y = getattr(self, "_op_" + op["op"])(op, ins)
            act = op["options"].get("fusedActivationFunction", 0)
            env[op["outputs"][0]] = _ACTIVATIONS[act](y) if act else y
        return [env[i] for i in self._outputs]

    # --- elementwise -------------------------------------------------------------------

    def _bcast(self, op: dict[str, Any], ins: list[Tensor | None]) -> list[Tensor]:
        """Operands of a rank-4 elementwise op: a lower-rank activation is lifted to NCHW broadcasting."""
        out: list[Tensor] = []
        for i, t in zip(op["inputs"], ins):
            assert t is not None
            if self._rank(op["outputs"][0]) == 4 and i not in self._param_of and self._rank(i) < 4:
                t = t.reshape([1] * (4 - t.dim()) + list(t.shape)).permute(0, 3, 1, 2)
            out.append(t)
        return out

    def _op_ADD(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        a, b = self._bcast(op, ins)
        return a + b

    def _op_SUB(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        a, b = self._bcast(op, ins)
        return a - b

    def _op_MUL(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        a, b = self._bcast(op, ins)
        return a * b

    def _op_DIV(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        a, b = self._bcast(op, ins)
        return a / b

    def _op_MAXIMUM(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        a, b = self._bcast(op, ins)
        return torch.maximum(a, b)

    def _op_MINIMUM(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        a, b = self._bcast(op, ins)
        return torch.minimum(a, b)

    def _op_PRELU(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x, alpha = self._bcast(op, ins)
        return torch.where(x >= 0, x, alpha * x)

    def _op_RELU(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return F.relu(ins[0])

    def _op_RELU6(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return ins[0].clamp(0.0, 6.0)

    def _op_RELU_N1_TO_1(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return ins[0].clamp(-1.0, 1.0)

    def _op_LEAKY_RELU(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return F.leaky_relu(ins[0], float(op["options"].get("alpha", 0.2)))

    def _op_TANH(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return torch.tanh(ins[0])

    def _op_LOGISTIC(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return torch.sigmoid(ins[0])

    def _op_HARD_SWISH(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return F.hardswish(ins[0])  # x * relu6(x + 3) / 6, the same formula as TFLite's

    def _op_SOFTMAX(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x = ins[0]
        dim = 1 if x.dim() == 4 else -1  # TFLite's softmax is over the last (channel) axis
        return torch.softmax(x * float(op["options"].get("beta", 1.0)), dim=dim)

    # --- convolutions ------------------------------------------------------------------

    def _conv(self, op: dict[str, Any], ins: list[Tensor | None], depthwise: bool) -> Tensor:
        x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
        o = op["options"]
        stride = (o.get("strideH", 1), o.get("strideW", 1))
        dilation = (o.get("dilationHFactor", 1), o.get("dilationWFactor", 1))
        if o.get("padding", 0) == 0:  # SAME: asymmetric, so pad explicitly
            top, bottom = _same_pad(x.shape[2], w.shape[2], stride[0], dilation[0])
            left, right = _same_pad(x.shape[3], w.shape[3], stride[1], dilation[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        groups = x.shape[1] if depthwise else x.shape[1] // w.shape[1]
        return F.conv2d(x, w, b, stride, 0, dilation, groups)

    def _op_CONV_2D(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return self._conv(op, ins, depthwise=False)

    def _op_DEPTHWISE_CONV_2D(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        return self._conv(op, ins, depthwise=True)

    def _op_Convolution2DTransposeBias(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        # MediaPipe's transposed conv: full conv_transpose2d, then a centre crop to
        # in * stride (SAME) -- nothing to crop when kernel == stride, as in the selfie models.
        x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
        sh, sw = op["options"]["stride"]
        y = F.conv_transpose2d(x, w, b, (sh, sw))
        if op["options"]["padding"] == "SAME":
            out_h, out_w = x.shape[2] * sh, x.shape[3] * sw
            top, left = (y.shape[2] - out_h) // 2, (y.shape[3] - out_w) // 2
            if (top, left, y.shape[2], y.shape[3]) != (0, 0, out_h, out_w):
                y = y[:, :, top:top + out_h, left:left + out_w]
        return y

    def _op_FULLY_CONNECTED(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
        if x.dim() == 4:  # TFLite flattens in NHWC order
            x = x.permute(0, 2, 3, 1)
        y = F.linear(x.reshape(-1, w.shape[1]), w, b)
        if op["options"].get("keepNumDims", False):
            y = y.reshape(list(x.shape[:-1]) + [w.shape[0]])
            return y.permute(0, 3, 1, 2) if y.dim() == 4 else y
        return y

    # --- pooling and resizing ------------------------------------------------------------

    def _pool_geometry(self, op: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], bool]:
        o = op["options"]
        k = (o["filterHeight"], o["filterWidth"])
        s = (o["strideH"], o["strideW"])
        in_shape, out_shape = self._shape(op["inputs"][0]), self._shape(op["outputs"][0])
        # A window that covered the whole input in the graph is a global pool at any input size.
        is_global = (k[0] >= in_shape[1] and k[1] >= in_shape[2] and out_shape[1] == out_shape[2] == 1)
        return k, s, is_global

    def _op_AVERAGE_POOL_2D(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x = ins[0]
        k, s, is_global = self._pool_geometry(op)
        if is_global:
            return x.mean(dim=(2, 3), keepdim=True)
        if op["options"]["padding"] != 0:  # VALID
            return F.avg_pool2d(x, k, s)
        top, bottom = _same_pad(x.shape[2], k[0], s[0])
        left, right = _same_pad(x.shape[3], k[1], s[1])
        if not (top or bottom or left or right):
            return F.avg_pool2d(x, k, s)
        # TF divides by the number of real (unpadded) cells in each window.
        pad = (left, right, top, bottom)
        total = F.avg_pool2d(F.pad(x, pad), k, s, divisor_override=1)
        ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype, device=x.device)
        count = F.avg_pool2d(F.pad(ones, pad), k, s, divisor_override=1)
        return total / count

    def _op_MAX_POOL_2D(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x = ins[0]
        k, s, is_global = self._pool_geometry(op)
        if is_global:
            return x.amax(dim=(2, 3), keepdim=True)
        if op["options"]["padding"] == 0:  # SAME: padded cells never win
            top, bottom = _same_pad(x.shape[2], k[0], s[0])
            left, right = _same_pad(x.shape[3], k[1], s[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, k, s)

    def _op_MEAN(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x = ins[0]
        axes = op["options"]["const_inputs"]["1"]
        axes = [axes] if isinstance(axes, int) else [int(a) for a in axes]
        keep = bool(op["options"].get("keepDims", False))
        if x.dim() == 4 and keep:  # stays rank 4: reduce the NCHW axes
            return x.mean(dim=[_nchw_axis(a, 4) for a in axes], keepdim=True)
        if x.dim() == 4:  # the result leaves NCHW: reduce in TFLite's NHWC order
            x = x.permute(0, 2, 3, 1)
        return x.mean(dim=axes, keepdim=keep)

    def _op_RESIZE_BILINEAR(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x = ins[0]
        o = op["options"]
        size = o["const_inputs"]["1"]
        in_shape = self._shape(op["inputs"][0])
        align, half = bool(o.get("alignCorners", False)), bool(o.get("halfPixelCenters", False))
        if half and not align and size[0] % in_shape[1] == 0 and size[1] % in_shape[2] == 0:
            # An integer upsampling (the selfie decoder's 2x): a fixed scale factor, not a size
            # computed from x.shape. Under torch.export with dynamic H, W a computed size is
            # symbolic-int arithmetic (sym_size * 32 / 16) in the graph, and PT2E quantizers
            # that annotate operator.mul put observers on those ints ('int' has no numel).
            # Same numerics: out = in * s and the kernel's source step is 1 / s = in / out.
            # Same coordinates as torch's align_corners=False (source clamped at 0).
            scale = (float(size[0] // in_shape[1]), float(size[1] // in_shape[2]))
            return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        # Scale the graph's target by the same factor so other input sizes work (2x stays 2x).
        out_h = int(round(x.shape[2] * size[0] / in_shape[1]))
        out_w = int(round(x.shape[3] * size[1] / in_shape[2]))
        if align:
            return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=True)
        if half:
            # Same coordinates as torch's align_corners=False (source clamped at 0).
            return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
        return _resize_legacy(x, out_h, out_w)

    # --- shape ops -----------------------------------------------------------------------

    def _op_PAD(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x = ins[0]
        pads = op["options"]["const_inputs"]["1"]
        value = 0.0
        if "2" in op["options"]["const_inputs"]:
            v = op["options"]["const_inputs"]["2"]
            value = float(v[0] if isinstance(v, list) else v)
        if x.dim() == 4:
            pads = [pads[0], pads[3], pads[1], pads[2]]  # NHWC -> NCHW
        flat: list[int] = []
        for before, after in reversed(pads):  # F.pad lists the last dimension first
            flat += [int(before), int(after)]
        return F.pad(x, flat, value=value)

    _op_PADV2 = _op_PAD

    def _op_RESHAPE(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        x = ins[0]
        o = op["options"]
        shape = o.get("const_inputs", {}).get("1") or o.get("newShape") or self._shape(op["outputs"][0])
        shape = [int(s) for s in shape]
        if shape and shape[0] == 1 and self._shape(op["inputs"][0])[:1] == [1]:
            shape[0] = x.shape[0]  # the graph's batch of 1 is our batch N
        if x.dim() == 4:  # TFLite reshapes in NHWC order
            x = x.permute(0, 2, 3, 1)
        y = x.reshape(shape)
        return y.permute(0, 3, 1, 2) if y.dim() == 4 else y

    def _op_CONCATENATION(self, op: dict[str, Any], ins: list[Tensor | None]) -> Tensor:
        rank = self._rank(op["outputs"][0])
        return torch.cat(self._bcast(op, ins), dim=_nchw_axis(int(op["options"].get("axis", 0)), rank))


def load_tflite(path: str | os.PathLike[str], outputs: Sequence[str | int] | None = None) -> TFLiteGraph:
    """Read a ``.tflite`` file into a :class:`TFLiteGraph` with its weights loaded (fp32, trainable).

    Args:
        path: the ``.tflite`` file.
        outputs: tensor names to return (default: the graph outputs); see :class:`TFLiteGraph`.

    Raises:
        CheckpointError: not a TFLite flatbuffer, or an unsupported op.
    """
    spec = read_graph(path)
    graph = TFLiteGraph(spec, outputs)
    own = dict(graph.named_parameters())
    weights = read_weights(path, spec)
    graph.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=True)
    return graph.eval()


def tensor_names(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The activation tensors of a spec, in graph order, to pick intermediate outputs.

    Returns:
        One dict per graph input or op output: ``index``, ``name``, ``shape``
        (TFLite order), ``torch_shape`` (NCHW for rank 4) and ``op`` (the
        producing op, ``"INPUT"`` for the graph input).
    """
    rows: list[dict[str, Any]] = []

    def row(i: int, op: str) -> dict[str, Any]:
        t = spec["tensors"][i]
        shape = list(t["shape"])
        torch_shape = [shape[0], shape[3], shape[1], shape[2]] if len(shape) == 4 else shape
        return {"index": i, "name": t["name"], "shape": shape, "torch_shape": torch_shape, "op": op}

    for i in spec["inputs"]:
        rows.append(row(int(i), "INPUT"))
    for op in spec["ops"]:
        for i in op["outputs"]:
            rows.append(row(int(i), op["op"]))
    return rows


def _summary(path: str) -> str:  # pragma: no cover - a debugging aid: python -m facemat.pretrained.tflite FILE
    spec = read_graph(path)
    lines = [f"{spec['source_name']}: {len(spec['ops'])} ops, {len(spec['params'])} parameter tensors, "
             f"{sum(math.prod(s) for s in spec['param_shapes'].values())} weights"]
    lines += [f"  {r['op']:28s} {r['name']:40s} {r['torch_shape']}" for r in tensor_names(spec)]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(_summary(sys.argv[1]) if len(sys.argv) > 1 else "usage: python -m facemat.pretrained.tflite FILE.tflite")
