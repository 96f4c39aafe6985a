"""ONNX target: one self-contained ``.onnx`` file, run with onnxruntime.

* ``fp32``: ``torch.onnx.export(dynamo=True)`` (the onnxscript optimizer folds
  BatchNorm into the convolutions), then ``onnxsim.simplify``. The weights are
  embedded in the one file: an app ships a single file, not a model plus an
  external data file.
* ``int8``: the same FP32 graph, statically quantized by
  ``onnxruntime.quantization.quantize_static`` into QDQ form (QuantizeLinear /
  DequantizeLinear around float ops; onnxruntime fuses them into int8 kernels
  when it loads the model). Weights int8 per channel, activations uint8 per
  tensor, ranges calibrated on generated faces. Both precisions need the FP32
  checkpoint: the int8 model is made here, not from a PT2E result, because
  onnxruntime's quantizer places its QDQ pairs where its own kernels expect them.

Weights are 7-bit by default (``reduce_range=True``): on x86 CPUs without VNNI the
u8 x s8 multiply-add saturates in 16 bits and the full 8-bit range made the
toolchain probe inaccurate (see TOOLCHAIN-NOTES.md, "ONNX"). The file is the same
on every device, so the default is the range every CPU computes exactly;
``options["reduce_range"] = False`` trades that for accuracy.

Input ``image`` ``1 x 3 x S x S`` float32 RGB in [0, 1] (NCHW), output ``alpha``
``1 x 1 x S x S`` float32 in [0, 1], both fixed-shape; or ``1 x S x S x 3`` /
``1 x S x S x 1`` with ``io.layout == "NHWC"`` (:class:`targets.wrappers.NHWC`).
int8 models keep float I/O.
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from facemat.errors import ConfigError
from facemat.io import atomic_path
from targets.common import (
    BuiltArtifact,
    ExportError,
    ExportJob,
    IOSpec,
    Runner,
    SimpleRunner,
    Source,
    check_io,
    check_precision,
    first_line,
    to_layout,
    versions,
)

PRECISIONS: dict[str, str] = {"fp32": "checkpoint", "int8": "checkpoint"}

# Default calibration set when the caller passes no ``calib_images``: procedural
# faces from their own split (never the parity split the artifact is judged on).
CALIB_SPLIT = "calib"
CALIB_SEED = 2024
CALIB_COUNT = 32

# protobuf refuses to serialize a message over 2 GiB; past it ONNX needs an
# external data file, which this target does not ship.
_PROTOBUF_LIMIT = 2**31 - 1

_CONVERTER = ("torch", "onnx", "onnxscript", "onnxsim")
_RUNTIME = ("onnxruntime",)


# --------------------------------------------------------------------------- build


def build(job: ExportJob, source: Source) -> BuiltArtifact:
    """Export ``source.model`` to ``job.path`` at ``job.precision`` and verify the saved file.

    Args:
        job: ``precision`` ``fp32`` or ``int8``; ``io``: tensor input (NCHW or
            NHWC) at the model's size. ``options["calib_images"]`` (int8 only): a list of
            ``1 x 3 x S x S`` float32 arrays in [0, 1]; default: :data:`CALIB_COUNT`
            generated faces of split :data:`CALIB_SPLIT`. ``options["reduce_range"]``
            (int8 only, default True): 7-bit weights, safe on x86 CPUs without VNNI;
            False keeps 8 bits (up to half the int8 MSE on the trained students) for
            runtimes without that saturation (VNNI x86, Arm).
        source: an FP32 checkpoint source (``kind == "checkpoint"``).

    Returns:
        The artifact, with ``checks``: ``opset``, ``ops`` (op-type histogram),
        ``initializer_dtypes``, ``file_bytes``, ``io`` (read back from the file),
        ``simplified``, and for int8 ``quantization``: quantized / total Conv
        nodes, types, calibration, and ``ort_fused_ops`` (the graph onnxruntime
        actually runs after its QDQ fusion).

    Raises:
        ConfigError: unknown precision, a quantized source, or an I/O spec this
            target does not offer.
        ExportError: export, simplification, quantization or a check failed.
    """
    _check_job(job, source)
    import onnx

    if job.precision == "int8":  # bad int8 options fail before the (slow) export
        calib = _calibration_images(job.options.get("calib_images"), job.io.size)
        reduce_range = job.options.get("reduce_range", True)
        if not isinstance(reduce_range, bool):
            raise ConfigError(f"onnx int8: options['reduce_range'] must be True or False, got {reduce_range!r}")
    model = _export_fp32(source.model, job.io)
    checks: dict[str, Any] = {"simplified": True}
    converter = versions(*_CONVERTER)
    if job.precision == "int8":
        model, checks["quantization"] = _quantize_int8(model, job.io, calib, reduce_range)
        converter.update(versions("onnxruntime"))
    # Provenance travels inside the file, so a copied .onnx still says what it is.
    onnx.helper.set_model_props(model, {"facemat.precision": job.precision, "facemat.source_sha256": source.sha256,
                                        "facemat.source": source.path.name})

    size = model.ByteSize()
    if size >= _PROTOBUF_LIMIT:
        raise ExportError(f"{job.path}: the model is {size / 2**30:.2f} GiB, over protobuf's 2 GiB limit for a "
                          "single .onnx file; this target ships one file, so export a smaller model")
    job.path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(job.path, suffix=".tmp.onnx") as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
        # Verify the bytes that will ship, before they get the final name.
        checks.update(_verify_file(tmp, job.io, job.precision))
    checks["file_bytes"] = job.path.stat().st_size
    return BuiltArtifact(path=job.path, io=job.io, dtype="float32", runs_here=True, checks=checks,
                         converter=converter, runtime=versions(*_RUNTIME))


def _check_job(job: ExportJob, source: Source) -> None:
    check_precision("onnx", job.precision, tuple(PRECISIONS))
    if source.kind != "checkpoint":
        raise ConfigError(f"onnx {job.precision}: got a quantized source ({source.path}, recipe "
                          f"{source.recipe!r}); ONNX int8 is made from the checkpoint by onnxruntime's quantizer: "
                          "pass the FP32 student checkpoint instead")
    check_io(job, source, "onnx")


def _export_fp32(model: torch.nn.Module, io: IOSpec) -> Any:
    """``torch.onnx.export`` (dynamo) + ``onnxsim.simplify``; returns the in-memory ``onnx.ModelProto``."""
    import onnxsim

    from targets.wrappers import NHWC

    net = (NHWC(model) if io.layout == "NHWC" else model).eval()  # the wrapper too: export in eval mode
    example = torch.rand(*io.input_shape(), generator=torch.Generator().manual_seed(0))  # in io.layout
    try:
        # f=None keeps the program in memory: saving through torch writes weights
        # to an external data file by default, and we simplify before saving anyway.
        program = torch.onnx.export(net, (example,), None, dynamo=True, verbose=False,
                                    input_names=[io.input_name], output_names=[io.output_name])
    except Exception as exc:  # the exporter raises many types
        raise ExportError(f"onnx: torch.onnx.export failed: {first_line(exc)}") from exc
    try:
        simplified, ok = onnxsim.simplify(program.model_proto)
    except Exception as exc:
        raise ExportError(f"onnx: onnxsim.simplify failed: {first_line(exc)}") from exc
    if not ok:
        raise ExportError("onnx: onnxsim.simplify produced a model whose outputs differ from the exported one; "
                          "report it with the onnxsim version, or export without simplification")
    return simplified


# --------------------------------------------------------------------------- int8


def _calibration_images(given: Sequence[np.ndarray] | None, size: int) -> list[np.ndarray]:
    """The caller's ``1 x 3 x S x S`` arrays (validated), or generated faces of the calib split; NCHW float32."""
    if given is None:
        from facemat.data.synth import render_sample

        return [np.ascontiguousarray(np.asarray(render_sample(CALIB_SEED, i, size=size, split=CALIB_SPLIT).image,
                                                np.float32).transpose(2, 0, 1)[None] / 255.0)  # 1 x 3 x S x S
                for i in range(CALIB_COUNT)]
    images = [np.ascontiguousarray(np.asarray(a, dtype=np.float32)) for a in given]
    if not images:
        raise ConfigError("onnx int8: options['calib_images'] is empty; give at least one 1x3xSxS image")
    for i, a in enumerate(images):
        if a.shape != (1, 3, size, size):
            raise ConfigError(f"onnx int8: calib_images[{i}] has shape {list(a.shape)}, expected "
                              f"[1, 3, {size}, {size}] (NCHW RGB in [0, 1])")
    return images


def _quantize_int8(fp32: Any, io: IOSpec, calib: list[np.ndarray], reduce_range: bool) -> tuple[Any, dict[str, Any]]:
    """Static QDQ quantization of the FP32 graph; returns ``(model, quantization checks)``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """Feeds the calibration images one by one (the model has batch 1)."""

        def __init__(self) -> None:
            self._it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._it, None)  # 1 x 3 x S x S
            return None if image is None else {io.input_name: to_layout(image, io.layout)}

        def rewind(self) -> None:
            self._it = iter(calib)

    settings = {"format": "QDQ", "activation_type": "uint8", "weight_type": "int8", "per_channel": True,
                "reduce_range": reduce_range, "calibration_method": "MinMax", "calibration_images": len(calib)}
    with tempfile.TemporaryDirectory(prefix="facemat-onnx-") as tmp:
        fp32_path, pre_path, q_path = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save_model(fp32, str(fp32_path))
        try:
            # Shape inference first, as onnxruntime recommends: the quantizer needs
            # every tensor's shape. Its optional graph optimization is skipped: onnxsim
            # already folded constants, and that pass stamps every opset domain
            # onnxruntime knows (com.microsoft.nchwc, ...) into the model.
            quant_pre_process(str(fp32_path), str(pre_path), skip_optimization=True)
            quantize_static(str(pre_path), str(q_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            # MinMax adds ReduceMin/ReduceMax outputs: calibration keeps two scalars
                            # per tensor and image. Percentile (histograms) was somewhat more accurate
                            # but holds every activation of every image (1.7 GB for 32 images at 256).
                            # Do not set CalibMaxIntermediateOutputs: onnxruntime 1.32 drops each
                            # full chunk without merging its ranges.
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as exc:  # the quantizer raises many types
            raise ExportError(f"onnx int8: onnxruntime quantization failed: {first_line(exc)}") from exc
        model = _drop_unused_opsets(onnx.load_model(str(q_path)))
        fused = _ort_fused_ops(q_path)
    stats = conv_quantization(model)
    stats["ort_fused_ops"] = fused
    if stats["conv_weights_quantized"] < stats["convs"]:
        raise ExportError(f"onnx int8: only {stats['conv_weights_quantized']} of {stats['convs']} Conv nodes have "
                          f"int8 weights (unquantized: {stats['unquantized_convs'][:5]}); the artifact would run "
                          "those in float. Check the calibration images and onnxruntime version")
    return model, {**settings, **stats}


def _drop_unused_opsets(model: Any) -> Any:
    """Keep only the opset imports that some node uses (and the default domain): a runtime
    that does not know a listed domain may refuse the model even if no node needs it."""
    used = {n.domain for n in model.graph.node} | {""}
    keep = [imp for imp in model.opset_import if imp.domain in used or imp.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def conv_quantization(model: Any) -> dict[str, Any]:
    """Count Conv nodes whose weight (input 1) and input (input 0) come from a DequantizeLinear.

    Args:
        model: an ``onnx.ModelProto`` in QDQ form.

    Returns:
        ``convs``, ``conv_weights_quantized``, ``conv_inputs_quantized``,
        ``unquantized_convs`` (node names) and the stored ``weight_dtypes`` of the
        quantized Conv weights.
    """
    import onnx

    producer = {out: n for n in model.graph.node for out in n.output}
    inits = {t.name: t for t in model.graph.initializer}

    def dequantized(name: str) -> Any:
        node = producer.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    weights, inputs, missing, dtypes = 0, 0, [], collections.Counter()
    for conv in convs:
        dq = dequantized(conv.input[1])
        if dq is not None and dq.input[0] in inits:
            weights += 1
            dtypes[onnx.TensorProto.DataType.Name(inits[dq.input[0]].data_type)] += 1
        else:
            missing.append(conv.name)
        inputs += dequantized(conv.input[0]) is not None
    return {"convs": len(convs), "conv_weights_quantized": weights, "conv_inputs_quantized": inputs,
            "unquantized_convs": missing, "weight_dtypes": dict(dtypes)}


def _ort_fused_ops(path: Path) -> dict[str, int]:
    """Op histogram of the graph onnxruntime's CPU provider runs after its fusions.

    QDQ is a storage form; this says whether the int8 kernels (``QLinearConv``)
    were actually picked, or the QDQ pairs were kept and run in float.
    """
    import onnx
    import onnxruntime as ort

    opt = path.with_name(path.stem + ".ort.onnx")
    so = ort.SessionOptions()
    # Extended, not "all": the layout-specific (NCHWc) rewrites would depend on this machine's CPU.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(opt)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return _histogram(onnx.load_model(str(opt)))


# --------------------------------------------------------------------------- checks


def _verify_file(path: Path, io: IOSpec, precision: str) -> dict[str, Any]:
    """``onnx.checker`` on the saved file, then read back I/O, opset and op set."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise ExportError(f"onnx {precision}: the saved model fails onnx.checker: {first_line(exc)}") from exc
    model = onnx.load_model(str(path))
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ExportError(f"onnx {precision}: weights were written to an external data file; this target ships "
                          "one self-contained .onnx file")
    read = {"inputs": [_value_info(v) for v in model.graph.input],
            "outputs": [_value_info(v) for v in model.graph.output]}
    want = {"inputs": [{"name": io.input_name, "dtype": "float32", "shape": io.input_shape()}],
            "outputs": [{"name": io.output_name, "dtype": "float32", "shape": io.output_shape()}]}
    if read != want:
        raise ExportError(f"onnx {precision}: the saved model's I/O {read} differs from the requested {want}")
    opset = {imp.domain or "ai.onnx": imp.version for imp in model.opset_import}
    return {"io": read, "opset": opset.get("ai.onnx"), "opsets": opset, "ir_version": model.ir_version,
            "ops": _histogram(model), "initializer_dtypes": dict(collections.Counter(
                onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer)),
            "external_data": False}


def _value_info(v: Any) -> dict[str, Any]:
    import onnx

    t = v.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
    return {"name": v.name, "dtype": dtype, "shape": shape}


def _histogram(model: Any) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


# --------------------------------------------------------------------------- run


def load_runner(path: str | Path, io: IOSpec, threads: int | None = None) -> Runner:
    """An onnxruntime CPU session on the saved ``.onnx``.

    Args:
        path: the artifact.
        io: its I/O contract; the session's input and output names must match it.
        threads: intra-op threads; None keeps onnxruntime's default (one per core).

    Returns:
        A runner: ``1 x 3 x S x S`` float32 in [0, 1] -> alpha ``1 x 1 x S x S``
        float32; ``invoke`` is ``session.run`` alone.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such ONNX artifact; build it with the onnx target first")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1 or None (runtime default), got {threads}")
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own Fail, InvalidGraph, ...
        raise ExportError(f"{path}: onnxruntime cannot load it: {first_line(exc)}") from exc
    names = ([i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
    if names != ([io.input_name], [io.output_name]):
        raise ExportError(f"{path}: inputs/outputs {names} differ from the expected "
                          f"([{io.input_name!r}], [{io.output_name!r}])")
    feeds, outs = io.input_name, [io.output_name]
    return SimpleRunner(io, lambda x: sess.run(outs, {feeds: x})[0])
