"""Per-op latency breakdown (``bench.run --profile``), with each runtime's own profiler.

* ONNX Runtime: session profiling (``enable_profiling``), node events summed by op type.
* ExecuTorch: ETDump from ``Runtime.load_program(..., enable_etdump=True)``, read with the
  devtools ``Inspector``. The XNNPACK delegate logs its own operators (e.g.
  "Resize Bilinear (NHWC)") inside the DELEGATE_CALL event, which is reported apart.
* LiteRT: the ``ai_edge_litert`` Python interpreter exposes no op profiler; the
  row says so. ``benchmark_model --enable_op_profiling=true`` on the device gives it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

RUNS = 20


def _top(totals: dict[str, float], counts: dict[str, int], runs: int, tool: str, note: str | None = None,
         n: int = 8) -> dict[str, Any]:
    totals = dict(totals)
    # A delegate call contains the ops listed inside it: report it apart, and
    # give each op's share of all op time, so nothing is counted twice.
    delegate = totals.pop("DELEGATE_CALL", None)
    total = sum(totals.values()) or 1.0
    ops = sorted(totals.items(), key=lambda kv: -kv[1])
    top = [{"op": k, "ms": v / runs, "share": v / total, "count": counts[k] // runs if runs else counts[k]}
           for k, v in ops[:n]]
    out = {"tool": tool, "runs": runs, "total_ms": total / runs, "top_ops": top}
    if delegate is not None:
        out["delegate_call_ms"] = delegate / runs
    if note:
        out["note"] = note
    return out


def profile_onnx(path: str, image: np.ndarray, threads: int | None) -> dict[str, Any]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as d:
        opts.profile_file_prefix = str(Path(d) / "ort")
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        x = image.astype(np.float32)
        shape = sess.get_inputs()[0].shape
        if len(shape) == 4 and shape[-1] == 3:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        for _ in range(RUNS):
            sess.run(None, {name: x})
        trace = sess.end_profiling()
        events = json.loads(Path(trace).read_text())
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for ev in events:
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
            op = ev.get("args", {}).get("op_name", "?")
            totals[op] += ev.get("dur", 0) / 1e3
            counts[op] += 1
    return _top(totals, counts, RUNS, f"onnxruntime {ort.__version__} session profiling",
                f"node kernel times, mean over the first {RUNS} runs after session creation (the first, "
                "cold run included), with profiling on")


def profile_executorch(path: str, image: np.ndarray, threads: int | None) -> dict[str, Any]:
    import torch
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    if threads:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

        _unsafe_reset_threadpool(threads)
    program = Runtime.get().load_program(Path(path), enable_etdump=True, debug_buffer_size=0)
    method = program.load_method("forward")
    x = torch.from_numpy(image.astype(np.float32))
    for _ in range(RUNS):
        method.execute([x])
    with tempfile.TemporaryDirectory() as d:
        etdump = str(Path(d) / "run.etdp")
        program.write_etdump_result_to_file(etdump, str(Path(d) / "debug.bin"))
        inspector = Inspector(etdump_path=etdump)
        totals: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        runs = 0
        for block in inspector.event_blocks:
            if block.name != "Execute":
                continue
            for ev in block.events:
                if ev.name in ("Method::execute", "Program::load_method") or not ev.perf_data:
                    continue
                vals = ev.perf_data.raw
                totals[ev.name] += float(sum(vals))
                counts[ev.name] += len(vals)
                runs = max(runs, len(vals))
    return _top(totals, counts, max(runs, 1), "executorch ETDump + devtools Inspector",
                "XNNPACK reports its operators inside the delegate call (delegate_call_ms is their total plus "
                "overhead); shares are of the summed op times; mean per run over 20 runs")


def profile_artifact(spec: dict[str, Any], image: np.ndarray) -> dict[str, Any]:
    """Per-op breakdown for the worker's artifact, or a row saying why there is none."""
    t = spec.get("target")
    t0 = time.perf_counter()
    if t == "onnx":
        out = profile_onnx(spec["path"], image, spec["threads"])
    elif t == "executorch":
        out = profile_executorch(spec["path"], image, spec["threads"])
    elif t == "tflite":
        return {"tool": None, "top_ops": [], "note": "the ai_edge_litert Python interpreter has no op profiler; "
                "run LiteRT's benchmark_model --enable_op_profiling=true on the device"}
    else:
        return {"tool": None, "top_ops": [], "note": f"no profiler for {t} here"}
    out["profile_wall_s"] = round(time.perf_counter() - t0, 2)
    return out
