"""ExecuTorch target: a ``.pte`` program lowered to the XNNPACK (CPU) or Core ML delegate.

Precisions, per delegate (:data:`PRECISIONS_BY_DELEGATE`; ``job.delegate`` picks
it, None means XNNPACK):

* XNNPACK ``fp32``: the FP32 student, ``torch.export`` (strict) then lowered;
* XNNPACK ``int8``: the PT2E program quantized with the XNNPACK quantizer
  (``quantize.ptq/qat --recipe xnnpack``): int8 weights per channel, int8
  activations per tensor, float32 I/O (quantize/dequantize inside the delegate);
* Core ML ``fp16``: the FP32 student with Core ML fp16 compute precision;
* Core ML ``int8``: the PT2E program quantized with the Core ML quantizer
  (``--recipe coreml``), W8A8, fp16 compute between the quantize ops.

The flow is ``to_edge_transform_and_lower(program, partitioner=[...])`` then
``to_executorch()``. Ops the partitioner leaves out run on ExecuTorch's slow
portable kernels, so ``build`` lists every op outside a delegate call and fails
unless ``options["allow_portable"]`` is set. The saved file's I/O is read back
from the runtime: ``1 x 3 x S x S`` float32 in [0, 1] -> alpha ``1 x 1 x S x S``
(NCHW), or ``1 x S x S x 3`` -> ``1 x S x S x 1`` for ``io.layout`` NHWC, which
wraps the model in :class:`targets.wrappers.NHWC` (the int8 graph too, re-exported).

A Core ML ``.pte`` builds here but cannot run: ExecuTorch's Linux runtime has no
``CoreMLBackend``. ``build`` says so (``runs_here`` False) and instead checks the
Core ML model inside the delegate payload: its MIL op histogram and the storage
dtype of every conv weight. ``load_runner`` raises :class:`RuntimeUnavailable`.

With ``options["bundle_inputs"]`` (and ``options["bundle_expected"]``),
``build`` also writes ``<stem>.bpte``, an ExecuTorch BundledProgram carrying
those test cases, which the on-device runner can verify; :func:`verify_bundled`
checks one here.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facemat.errors import ConfigError
from facemat.io import atomic_path
from targets.common import (
    COREML_INT8_WEIGHT_OPS,
    BuiltArtifact,
    ExportError,
    ExportJob,
    IOSpec,
    RuntimeUnavailable,
    SimpleRunner,
    Source,
    check_io,
    check_precision,
    check_source,
    coreml_min_deployment,
    first_line,
    to_layout,
    versions,
)
from targets.wrappers import NHWC

PRECISIONS_BY_DELEGATE: dict[str, dict[str, str]] = {
    "xnnpack": {"fp32": "checkpoint", "int8": "xnnpack"},
    "coreml": {"fp16": "checkpoint", "int8": "coreml"},
}
DEFAULT_DELEGATE = "xnnpack"
PRECISIONS: dict[str, str] = PRECISIONS_BY_DELEGATE[DEFAULT_DELEGATE]

BUNDLE_SUFFIX = ".bpte"
METHOD = "forward"

# The ExecuTorch backend id each delegate lowers to.
BACKEND_IDS = {"xnnpack": "XnnpackBackend", "coreml": "CoreMLBackend"}
# The oldest Core ML deployment target each precision needs (int8: the activation quantize ops).
_MIN_TARGET = {"fp16": "iOS15", "int8": "iOS17"}
# ExecuTorch ScalarType codes -> names, for the I/O read back from the program.
_SCALAR_TYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool"}
# Graph plumbing around delegate calls, not compute.
_PLUMBING = ("getitem", "executorch_call_delegate")
# The runtime's own thread count (read before our first reset), and how many times we
# replaced the process-wide pool: a runner loaded before a replacement must not run.
_default_threads: int | None = None
_pool_generation = 0


# --------------------------------------------------------------------------- build


def build(job: ExportJob, source: Source) -> BuiltArtifact:
    """Lower, check delegation, save ``job.path`` (``.pte``) atomically, read its I/O back.

    Args:
        job: ``delegate`` ``"xnnpack"`` (or None) or ``"coreml"``; ``precision`` a key of
            that delegate's :data:`PRECISIONS_BY_DELEGATE` entry; ``io`` a tensor
            input (NCHW or NHWC) at the model's size. ``options``: ``allow_portable`` (accept ops left
            to the portable kernels), ``min_deployment`` (Core ML, e.g. ``"iOS17"``),
            ``bundle_inputs`` (list of ``1 x 3 x S x S`` float32 NCHW arrays) with
            ``bundle_expected`` (matching ``1 x 1 x S x S`` alphas) to also write
            ``<stem>.bpte`` (stored in the program's layout). ``io.layout`` NHWC
            wraps the model in :class:`targets.wrappers.NHWC`.
        source: the FP32 checkpoint (fp32, fp16) or the quantized result of the
            delegate's recipe (int8).

    Returns:
        The artifact; ``checks`` holds ``delegation`` (delegated op count, ops left
        to portable kernels, backends), ``io`` (read back from the saved program)
        and, for Core ML, ``coreml`` (compute precision, deployment target, MIL ops,
        conv weight dtypes).

    Raises:
        ConfigError: unknown delegate/precision, or a source that does not fit the precision.
        ExportError: export or lowering failed, ops left outside the delegate, wrong I/O.
    """
    delegate = _check_job(job, source)
    coreml_info = _coreml_settings(job) if delegate == "coreml" else None
    bundle_cases = _bundle_cases(job)  # checked now, not after minutes of lowering
    program = _program(job, source)
    edge = _lower(program, delegate, coreml_info, job)

    delegation = delegation_report(edge.exported_program())
    if delegation["portable_ops"] and not job.options.get("allow_portable"):
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(delegation["portable_ops"].items()))
        raise ExportError(
            f"{job.path.name}: {sum(delegation['portable_ops'].values())} op(s) are not taken by the {delegate} "
            f"delegate and would run on ExecuTorch's slow portable kernels: {ops}. Change the model so the "
            f"delegate takes them, or set the export option allow_portable to accept them")
    checks: dict[str, Any] = {"delegate": delegate, "delegation": delegation}
    if coreml_info is not None:
        checks["coreml"] = {**coreml_info, **_check_coreml_payload(edge, job)}

    try:
        et_program = edge.to_executorch()
    except Exception as exc:  # noqa: BLE001 - exir raises many types
        raise ExportError(f"{job.path.name}: to_executorch failed: {first_line(exc)}") from exc
    path = Path(job.path)
    with atomic_path(path, suffix=".tmp.pte") as tmp:
        tmp.write_bytes(et_program.buffer)
    checks["io"] = _check_io(path, job.io)
    checks["size_bytes"] = path.stat().st_size

    extra_files = []
    if bundle_cases is None:
        # A bundle left by an earlier build would carry another program.
        path.with_suffix(BUNDLE_SUFFIX).unlink(missing_ok=True)
    else:
        bundle = _write_bundle(et_program, path, bundle_cases)
        extra_files.append(bundle.name)
        checks["bundled"] = {"file": bundle.name, "test_cases": len(bundle_cases),
                             "with_expected_outputs": job.options.get("bundle_expected") is not None}

    from executorch.runtime import Runtime

    registered = set(Runtime.get().backend_registry.registered_backend_names)
    missing = [b for b in delegation["delegates"] if b not in registered]
    not_run_reason = None
    if missing:
        not_run_reason = (f"runtime check: ExecuTorch's runtime on this platform has no {', '.join(missing)} "
                          f"(registered: {', '.join(sorted(registered))}); run it on iOS/macOS with the Core ML "
                          "delegate")
    converter = versions("torch", "executorch", *(["coremltools"] if delegate == "coreml" else []))
    return BuiltArtifact(path=path, io=job.io, dtype="float32", runs_here=not missing, not_run_reason=not_run_reason,
                         checks=checks, converter=converter, runtime=versions("executorch"), extra_files=extra_files)


def _check_job(job: ExportJob, source: Source) -> str:
    """Refuse jobs this target cannot build before any work; returns the delegate."""
    delegate = job.delegate or DEFAULT_DELEGATE
    if delegate not in PRECISIONS_BY_DELEGATE:
        raise ConfigError(f"executorch: delegate must be one of {', '.join(PRECISIONS_BY_DELEGATE)}, "
                          f"got {delegate!r}")
    table = PRECISIONS_BY_DELEGATE[delegate]
    check_precision(f"executorch {delegate}", job.precision, tuple(table))
    if Path(job.path).suffix != ".pte":
        raise ConfigError(f"{job.path}: an ExecuTorch program is a file ending in .pte")
    check_io(job, source, "executorch")
    check_source(job, source, f"executorch {delegate}", table[job.precision])
    return delegate


def _program(job: ExportJob, source: Source) -> torch.export.ExportedProgram:
    """The batch-1 program to lower: a strict ``torch.export`` of the student, or the int8 PT2E program."""
    example = torch.zeros(job.io.input_shape())
    if job.precision == "int8":
        assert source.program is not None  # _check_job
        if job.io.layout == "NCHW":
            # Already exported at batch 1 and the model's size by quantize.core; lowering leaves it as it is.
            return source.program
        # The NHWC wrapper goes around the converted graph; non-strict, as quantize.core exports it.
        model, strict = NHWC(source.program.module()), False
    else:
        model, strict = (NHWC(source.model) if job.io.layout == "NHWC" else source.model).eval(), True
    try:
        return torch.export.export(model, (example,), strict=strict)
    except Exception as exc:  # noqa: BLE001 - dynamo raises many types
        raise ExportError(f"{source.path}: torch.export{' (strict)' if strict else ''} of the "
                          f"{job.io.layout} model failed: {first_line(exc)}") from exc


def _coreml_settings(job: ExportJob) -> dict[str, str]:
    """Compute precision and deployment target of a Core ML lowering (checked against the precision)."""
    name = coreml_min_deployment(job, "executorch coreml", _MIN_TARGET[job.precision])
    # int8 too computes in fp16 between its quantize ops, as ExecuTorch's own Core ML PT2E recipe does.
    return {"compute_precision": "fp16", "minimum_deployment_target": name}


def _partitioner(delegate: str, coreml_info: dict[str, str] | None):
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner()
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    assert coreml_info is not None
    specs = CoreMLBackend.generate_compile_specs(
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=getattr(ct.target, coreml_info["minimum_deployment_target"]))
    # The student has no mutable buffers; taking them over would demand iOS18.
    return CoreMLPartitioner(compile_specs=specs, take_over_mutable_buffer=False)


def _lower(program: torch.export.ExportedProgram, delegate: str, coreml_info: dict[str, str] | None,
           job: ExportJob):
    """``to_edge_transform_and_lower`` with the delegate's partitioner; an ``EdgeProgramManager``."""
    from executorch.exir import to_edge_transform_and_lower

    try:
        return to_edge_transform_and_lower(program, partitioner=[_partitioner(delegate, coreml_info)])
    except Exception as exc:  # noqa: BLE001 - exir and the backends raise many types
        raise ExportError(f"{job.path.name}: lowering to the {delegate} delegate failed: {first_line(exc)}") from exc


def _op_name(target: Any) -> str:
    """``aten.add.Tensor`` style name of an edge op, ATen op or Python callable."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", None) or str(target)


def delegation_report(program: torch.export.ExportedProgram) -> dict[str, Any]:
    """What the delegates took and what they left, from a lowered edge program.

    Returns:
        ``{"delegated_ops": N, "delegated_op_types": {op: count}, "portable_ops":
        {op: count}, "delegates": [backend ids], "delegate_calls": calls}``; an op
        is a ``call_function`` node, the ``getitem`` and delegate-call plumbing
        excluded.
    """
    gm = program.graph_module
    portable: Counter = Counter()
    delegated: Counter = Counter()
    backends: list[str] = []
    calls = 0
    for node in gm.graph.nodes:
        if node.op == "get_attr" and hasattr(getattr(gm, node.target, None), "backend_id"):
            lowered = getattr(gm, node.target)
            backends.append(lowered.backend_id)
            delegated.update(_op_name(n.target) for n in lowered.original_module.graph.nodes
                             if n.op == "call_function" and _op_name(n.target) not in _PLUMBING)
        elif node.op == "call_function":
            name = _op_name(node.target)
            if name == "executorch_call_delegate":
                calls += 1
            elif name not in _PLUMBING:
                portable[name] += 1
    return {"delegated_ops": sum(delegated.values()), "delegated_op_types": dict(sorted(delegated.items())),
            "portable_ops": dict(sorted(portable.items())), "delegates": sorted(set(backends)),
            "delegate_calls": calls}


def _check_coreml_payload(edge, job: ExportJob) -> dict[str, Any]:
    """Open the Core ML model inside each delegate call: MIL op histogram and conv weight dtypes.

    The Core ML runtime is macOS-only, so this is what can be verified here:
    fp16 stores every conv weight as fp16, int8 as int8 (a constexpr dequantize).
    """
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2, MIL_pb2
    from executorch.backends.apple.coreml import executorchcoreml

    gm = edge.exported_program().graph_module
    ops: Counter = Counter()
    weights: Counter = Counter()
    io_dtypes: dict[str, list[str]] = {"inputs": [], "outputs": []}
    for node in gm.graph.nodes:
        lowered = getattr(gm, node.target, None) if node.op == "get_attr" else None
        if getattr(lowered, "backend_id", None) != BACKEND_IDS["coreml"]:
            continue
        folder = Path(tempfile.mkdtemp(prefix="facemat-coreml-"))
        try:
            # The payload is the flattened folder CoreMLBackend.preprocess wrote (model.mlpackage + metadata).
            if not executorchcoreml.unflatten_directory_contents(bytes(lowered.processed_bytes), str(folder)):
                raise ExportError(f"{job.path.name}: the Core ML delegate payload could not be unpacked")
            package = next(folder.rglob("*.mlpackage"), None)
            if package is None:
                raise ExportError(f"{job.path.name}: the Core ML delegate payload holds no .mlpackage")
            spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        for key, feats in (("inputs", spec.description.input), ("outputs", spec.description.output)):
            io_dtypes[key] += [FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(
                f.type.multiArrayType.dataType) for f in feats]
        for function in spec.mlProgram.functions.values():
            block = function.block_specializations[function.opset]
            producers = {out.name: op for op in block.operations for out in op.outputs}
            for op in block.operations:
                ops[op.type] += 1
                if op.type in ("conv", "conv_transpose"):
                    weights[_weight_storage(producers, op, MIL_pb2)] += 1
    want = "float16" if job.precision == "fp16" else "int8"
    wrong = {k: v for k, v in weights.items() if k != want}
    if not weights or wrong:
        raise ExportError(f"{job.path.name}: Core ML {job.precision} should store every conv weight as {want}; "
                          f"found {dict(weights) or 'no conv ops'}")
    return {"mil_ops": dict(sorted(ops.items())), "conv_weight_dtypes": dict(weights), "coreml_io_dtypes": io_dtypes}


def _weight_storage(producers: dict[str, Any], op: Any, mil_pb2: Any) -> str:
    """Storage dtype of a MIL conv's ``weight``: ``float16``, ``float32``, ``int8``, ..."""
    args = op.inputs["weight"].arguments
    producer = producers.get(args[0].name) if args and args[0].name else None
    if producer is None:
        return "inline"
    if producer.type in COREML_INT8_WEIGHT_OPS:
        source = producer.inputs.get("data") or producer.inputs.get("input")
        inner = producers.get(source.arguments[0].name) if source is not None and source.arguments else None
        if inner is not None:
            producer = inner
        elif producer.type != "dequantize":
            # constexpr_* hold their int8 data as an attribute, not as an input.
            value = producer.attributes.get("quantized_data")
            return mil_pb2.DataType.Name(value.type.tensorType.dataType).lower() if value is not None else "unknown"
    dtype = producer.outputs[0].type.tensorType.dataType
    return mil_pb2.DataType.Name(dtype).lower()


def _check_io(path: Path, io: IOSpec) -> dict[str, Any]:
    """Read the saved program's ``forward`` signature back and compare with ``io`` (no delegate needed)."""
    from executorch.runtime import Runtime

    try:
        meta = Runtime.get().load_program(path).metadata(METHOD)
    except Exception as exc:  # noqa: BLE001 - the runtime raises RuntimeError with a code
        raise ExportError(f"{path}: the saved program does not load in the ExecuTorch runtime: {first_line(exc)}") \
            from exc

    def tensors(count: int, get) -> list[dict[str, Any]]:
        return [{"shape": list(get(i).sizes()), "dtype": _SCALAR_TYPES.get(get(i).dtype(), str(get(i).dtype()))}
                for i in range(count)]

    found = {"inputs": tensors(meta.num_inputs(), meta.input_tensor_meta),
             "outputs": tensors(meta.num_outputs(), meta.output_tensor_meta)}
    want = {"inputs": [{"shape": io.input_shape(), "dtype": "float32"}],
            "outputs": [{"shape": io.output_shape(), "dtype": "float32"}]}
    if found != want:
        raise ExportError(f"{path}: the saved program's I/O is {found}, expected {want}")
    return found


def _bundle_cases(job: ExportJob) -> list | None:
    """``options["bundle_inputs"]`` / ``["bundle_expected"]`` as BundledProgram test cases (None: no bundle)."""
    if job.options.get("bundle_inputs") is None:
        if job.options.get("bundle_expected") is not None:
            raise ConfigError("executorch: option bundle_expected needs bundle_inputs (the images it belongs to)")
        return None
    from executorch.devtools.bundled_program.config import MethodTestCase

    s = job.io.size
    inputs = _bundle_arrays(job.options["bundle_inputs"], "bundle_inputs", [1, 3, s, s], job.io.layout)
    expected: list[torch.Tensor | None] = [None] * len(inputs)
    if job.options.get("bundle_expected") is not None:
        expected = _bundle_arrays(job.options["bundle_expected"], "bundle_expected", [1, 1, s, s], job.io.layout)
        if len(expected) != len(inputs):
            raise ConfigError(f"executorch: bundle_expected has {len(expected)} arrays for {len(inputs)} "
                              "bundle_inputs; give one expected alpha per input")
    return [MethodTestCase(inputs=[x], expected_outputs=None if y is None else [y])
            for x, y in zip(inputs, expected, strict=True)]


def _bundle_arrays(value: Any, option: str, shape: list[int], layout: str) -> list[torch.Tensor]:
    """NCHW arrays (as runners take and return them) -> tensors in the program's own layout."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"executorch: option {option} must be a non-empty list of {'x'.join(map(str, shape))} "
                          f"float32 arrays, got {type(value).__name__}")
    out = []
    for i, a in enumerate(value):
        arr = np.asarray(a)
        if list(arr.shape) != shape or arr.dtype != np.float32:
            raise ConfigError(f"executorch: {option}[{i}] is {arr.dtype} {list(arr.shape)}; expected float32 "
                              f"{shape}")
        # A fresh copy: a view such as x[None] may carry stride 0, which the bundle serializer refuses.
        out.append(torch.from_numpy(np.array(to_layout(arr, layout), dtype=np.float32, order="C", copy=True)))
    return out


def _write_bundle(et_program, path: Path, cases: list) -> Path:
    """Write ``<stem>.bpte`` next to ``path``: the program plus its test cases, as an ExecuTorch BundledProgram."""
    from executorch.devtools import BundledProgram
    from executorch.devtools.bundled_program.config import MethodTestSuite
    from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

    bundled = BundledProgram(et_program, [MethodTestSuite(method_name=METHOD, test_cases=cases)])
    dest = path.with_suffix(BUNDLE_SUFFIX)
    with atomic_path(dest, suffix=".tmp" + BUNDLE_SUFFIX) as tmp:
        tmp.write_bytes(serialize_from_bundled_program_to_flatbuffer(bundled))
    return dest


def verify_bundled(path: str | Path, rtol: float = 1e-5, atol: float = 1e-4) -> int:
    """Run every test case of a ``.bpte`` in this runtime and compare with its expected outputs.

    Uses the pybindings' ``BundledModule.verify_result_with_bundled_expected_output``
    (in executorch 1.5.1 a method of the bundle itself; the ``.pyi`` stub still
    documents an older signature on ``ExecuTorchModule``).

    Returns:
        The number of test cases verified.

    Raises:
        ExportError: an output differs beyond ``atol + rtol * |expected|``, or the bundle does not load.
    """
    from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program
    from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

    data = Path(path).read_bytes()
    # The runtime cannot list the test cases: count them from the flatbuffer.
    suites = deserialize_from_flatbuffer_to_bundled_program(data).method_test_suites
    try:
        bundle = _load_bundled_program_from_buffer(data)
    except RuntimeError as exc:
        raise ExportError(f"{path}: the bundled program does not load: {first_line(exc)}") from exc
    for suite in suites:
        for i in range(len(suite.test_cases)):
            try:
                bundle.verify_result_with_bundled_expected_output(suite.method_name, i, rtol, atol)
            except RuntimeError as exc:
                raise ExportError(f"{path}: bundled test case {i} of {suite.method_name!r} differs from its "
                                  f"expected output (rtol {rtol:g}, atol {atol:g}): {first_line(exc)}") from exc
    return sum(len(s.test_cases) for s in suites)


# --------------------------------------------------------------------------- runtime


def load_runner(path: str | Path, io: IOSpec, threads: int | None = None) -> SimpleRunner:
    """Load a saved ``.pte`` in ExecuTorch's Python runtime.

    Args:
        path: the ``.pte``.
        io: its I/O contract; the runner takes and returns NCHW float32 (``1 x 3 x S x S``
            in, ``1 x 1 x S x S`` alpha out) and converts to ``io.layout`` itself.
        threads: XNNPACK thread-pool size; None means the runtime default. The pool
            is process-wide and XNNPACK takes it when the method loads, so it is
            resized (``_unsafe_reset_threadpool``) before ``load_method``.

    Resizing destroys the previous pool, which methods loaded earlier still point
    to: a runner loaded before a later ``load_runner`` with another thread count
    refuses to run (RuntimeError: load it again) instead of using a freed pool.

    Raises:
        RuntimeUnavailable: the program needs a backend this runtime lacks (a Core ML ``.pte`` off Apple).
        ConfigError: ``threads`` < 1.
    """
    from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count, _unsafe_reset_threadpool
    from executorch.runtime import Runtime

    global _default_threads, _pool_generation
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1 or None (runtime default), got {threads}")
    if _default_threads is None:
        _default_threads = _threadpool_get_thread_count()
    wanted = _default_threads if threads is None else threads
    if _threadpool_get_thread_count() != wanted:
        _unsafe_reset_threadpool(wanted)
        _pool_generation += 1
    generation = _pool_generation

    program = Runtime.get().load_program(Path(path))
    try:
        method = program.load_method(METHOD)
    except RuntimeError:
        missing = _missing_backends(Path(path))
        if missing:
            raise RuntimeUnavailable(f"{path}: lowered to {', '.join(missing)}, which ExecuTorch's runtime on this "
                                     "platform does not have; run it on iOS/macOS") from None
        raise

    def invoke(x: np.ndarray) -> np.ndarray:
        if generation != _pool_generation:
            raise RuntimeError(f"{path}: the ExecuTorch thread pool was resized after this runner was loaded (a "
                               "later load_runner asked for another thread count); load this runner again")
        return method.execute([torch.from_numpy(x)])[0].numpy()

    return SimpleRunner(io=io, invoke_fn=invoke)


def delegate_ids(path: str | Path) -> list[str]:
    """Backend ids of the delegate calls in a saved ``.pte`` (e.g. ``["XnnpackBackend"]``)."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(Path(path).read_bytes()).program
    return sorted({d.id for plan in program.execution_plan for d in plan.delegates})


def _missing_backends(path: Path) -> list[str]:
    """The file's delegates that this runtime has not registered (read only when loading failed)."""
    from executorch.runtime import Runtime

    registered = set(Runtime.get().backend_registry.registered_backend_names)
    try:
        return [b for b in delegate_ids(path) if b not in registered]
    except Exception:  # noqa: BLE001 - an unreadable file: let the original load error speak
        return []

