"""Parsers of the latency logs that phone tools print, for ``bench.ingest``.

Formats, each matched against the tool's source or its published output, as
named in the parser's docstring:

* ``executor_runner``: ExecuTorch's ``examples/portable/executor_runner`` text
  log (stderr, or ``adb logcat`` when built with the Android PAL), or the
  ``benchmark_results.json`` of ExecuTorch's Android benchmark app (minibench).
* ``benchmark_model``: the LiteRT / TensorFlow Lite ``benchmark_model`` log
  (command-line binary or the benchmark APK's logcat).
* ``xcode``: ``xcodebuild test`` output of an XCTest ``measure`` block (what
  ExecuTorch's iOS benchmark app prints), or a hand transcription of Xcode's
  Core ML Performance report in the JSON format :data:`XCODE_REPORT_FORMAT`
  (Xcode documents no export file for that report; see :func:`parse_xcode`).

A :class:`Measurement` holds only what the log gives: figures it lacks are
None and its notes say which. Per-run times are summarised with the same
definitions as ``bench.run`` (``bench.worker.latency_stats``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from facemat.errors import ConfigError, DataError

FORMATS = ("executor_runner", "benchmark_model", "xcode")
LATENCY_KEYS = ("median", "p90", "min", "mean", "runs", "warmup")
XCODE_REPORT_FORMAT = "facemat-xcode-coreml-report/1"

_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"


@dataclass
class Measurement:
    """What one tool log says about one model run, in the report's units (ms, MB = 10^6 bytes).

    Attributes:
        latency_ms: ``median``, ``p90``, ``min``, ``mean`` (ms), ``runs``, ``warmup``; None where the log
            does not give it.
        tool: the tool and output variant that was matched.
        runtime: short name of what ran the model, for the row's ``runtime``.
        statistic: what the latency figures are (and what they are not), for the row's note.
        threads: thread count the log states; None when it states none or the runtime default.
        peak_mem_mb: growth of the process's peak RSS, when the tool reports exactly that.
        model: the model path or name the log names (to check it against ``--artifact``).
        model_mb: model file size the tool printed (MB).
        extra: other figures the tool printed (init time, max, std, memory...), kept in the row.
        notes: remarks on gaps or oddities in the log.
    """

    latency_ms: dict[str, Any]
    tool: str
    runtime: str
    statistic: str
    threads: int | None = None
    peak_mem_mb: float | None = None
    model: str | None = None
    model_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _latency(**given: Any) -> dict[str, Any]:
    return {k: given.get(k) for k in LATENCY_KEYS}


def _per_run(times_ms: list[float], warmup: int | None) -> dict[str, Any]:
    """Median, p90, min, mean of per-run times, with bench.run's own definitions."""
    from bench.worker import latency_stats

    lat = latency_stats(times_ms, 0)
    lat["warmup"] = warmup
    return {k: lat[k] for k in LATENCY_KEYS}


def _num(text: str) -> float:
    return float(text)


def _bad(source: str, fmt: str, what: str) -> DataError:
    return DataError(f"{source}: not a usable {fmt} log: {what}")


def _pick(source: str, fmt: str, runs: list[Any], names: list[str | None], select: str | None,
          what: str) -> Any:
    """The one run ``select`` (a substring of its name) picks; the only run when there is one."""
    if select is not None:
        hits = [r for r, n in zip(runs, names) if n and select in n]
        if len(hits) != 1:
            raise _bad(source, fmt, f"--select {select!r} matches {len(hits)} of its {len(runs)} {what}s "
                                    f"({', '.join(str(n) for n in names)}); give a part of exactly one name")
        return hits[0]
    if len(runs) > 1:
        raise _bad(source, fmt, f"it holds {len(runs)} {what}s ({', '.join(str(n) for n in names)}); pass "
                                f"--select with a part of the one to take, or split the log")
    return runs[0]


# --------------------------------------------------------------------------- #
# ExecuTorch: executor_runner text log and the Android benchmark app's JSON
# --------------------------------------------------------------------------- #

_ET_ITER = re.compile(rf"Iteration (\d+) of (\d+): ({_NUM}) ms")
_ET_TOTAL = re.compile(rf"Model executed successfully(?: (\d+) time\(s\))?(?: in ({_NUM}) ms)?")
_ET_LOAD = re.compile(rf"Model loaded in ({_NUM}) ms")
_ET_THREADS = re.compile(r"Resetting threadpool with num threads = (-?\d+)")
_ET_MODEL = re.compile(r"Model file (\S+) is loaded")
_ET_FAIL = re.compile(r"Execution of method (\S+) failed with status (0x[0-9a-fA-F]+)")


def parse_executor_runner(text: str, source: str = "<log>", select: str | None = None) -> Measurement:
    """Latency from ExecuTorch's ``executor_runner`` log or its Android benchmark app's JSON.

    Text log, matched against ``examples/portable/executor_runner/executor_runner.cpp`` on
    pytorch/executorch main (2026 snapshot, commit 018a3a5): per execution ``Iteration i of N: T ms``
    and at the end ``Model executed successfully N time(s) in T ms.``, plus ``Model loaded in T ms.``,
    ``Resetting threadpool with num threads = K`` (threadpool builds) and ``Model file P is loaded.``.
    Any line prefix is accepted: the POSIX PAL's ``I 00:00:06.075611 executorch:executor_runner.cpp:705]``
    and ``adb logcat``'s ``... I ExecuTorch: `` (Android PAL). Releases that print only the total time
    give ``mean = total / N`` (median, p90, min unknown); older ones that print no time at all
    (``Model executed successfully N time(s).``) are refused. executor_runner times ``method->execute()``
    only and has no warm-up: the first (cold) execution is among the runs (``warmup`` = 0).

    JSON: ``benchmark_results.json`` written by ExecuTorch's Android benchmark app
    (``extension/benchmark/android/benchmark``, ``BenchmarkActivity`` / ``ModelRunner`` /
    ``BenchmarkMetric``, Java and Kotlin versions): a Gson list of ``{"benchmarkModel": {"name",
    "backend", "quantization"}, "metric", "actualValue", "targetValue", "deviceInfo"}`` with metrics
    ``avg_inference_latency(ms)`` (recorded as mean), ``trimmean_inference_latency(ms)``,
    ``model_load_time(ms)``, ``load_status``, ``ram_pss_usage(mb)``. The app prints no median and the
    JSON holds no run counts.

    Args:
        text: the whole log.
        source: the log's path, for messages.
        select: part of the model path (or, in the JSON, of ``name_backend_quantization``) picking one
            run when the log holds several.

    Raises:
        DataError: no timing found, a failed execution, or several runs and no ``select``.
    """
    fmt = "executor_runner"
    if text.lstrip().startswith("["):
        return _parse_et_benchmark_json(text, source, select)
    lines = text.splitlines()
    ends = [i for i, ln in enumerate(lines) if _ET_TOTAL.search(ln)]
    if not ends:
        fail = next((m for m in map(_ET_FAIL.search, lines) if m), None)
        if fail:
            raise _bad(source, fmt, f"execution of method {fail.group(1)} failed with status {fail.group(2)}; "
                                    f"nothing was timed")
        raise _bad(source, fmt, "no 'Model executed successfully N time(s) in T ms.' line (the run did not "
                                "finish, or this is not executor_runner output)")
    segments, names = [], []
    start = 0
    for end in ends:
        seg = lines[start:end + 1]
        segments.append(seg)
        names.append(next((m.group(1) for m in map(_ET_MODEL.search, seg) if m), None))
        start = end + 1
    seg = _pick(source, fmt, segments, names, select, "model run")
    total = _ET_TOTAL.search(seg[-1])
    n = int(total.group(1)) if total.group(1) else None
    total_ms = _num(total.group(2)) if total.group(2) else None
    times = [_num(m.group(3)) for m in map(_ET_ITER.search, seg) if m]
    threads = next((int(m.group(1)) for m in map(_ET_THREADS.search, seg) if m), None)
    load = next((_num(m.group(1)) for m in map(_ET_LOAD.search, seg) if m), None)
    model = next((m.group(1) for m in map(_ET_MODEL.search, seg) if m), None)
    extra: dict[str, Any] = {"executions": n, "total_ms": total_ms, "load_ms": load}
    notes: list[str] = []
    if times:
        if n is not None and len(times) != n:
            notes.append(f"the log shows {len(times)} 'Iteration' lines for {n} executions (truncated log?); "
                         f"figures are over the {len(times)} shown")
        lat = _per_run(times, warmup=0)
        tool = "ExecuTorch executor_runner (per-execution 'Iteration i of N: T ms' lines)"
        stat = (f"median/p90/min/mean over executor_runner's {len(times)} timed executions (method execute() "
                f"only; executor_runner has no warm-up, so the first, cold execution is included)")
    elif total_ms is not None and n:
        lat = _latency(mean=total_ms / n, runs=n, warmup=0)
        tool = "ExecuTorch executor_runner (total time only)"
        stat = (f"mean = executor_runner's total execute() time / {n} executions (first, cold one included); "
                f"this executor_runner prints no per-execution times, so median, p90 and min are unknown")
    else:
        raise _bad(source, fmt, "it says 'Model executed successfully' but prints no time (an executor_runner "
                                "older than the 'time(s) in T ms' line); rebuild executor_runner from a current "
                                "ExecuTorch or use the benchmark app")
    return Measurement(latency_ms=lat, tool=tool, runtime="ExecuTorch executor_runner", statistic=stat,
                       threads=threads if threads and threads > 0 else None, model=model, extra=extra, notes=notes)


_ET_APP_METRICS = {"avg_inference_latency(ms)": "avg_ms", "trimmean_inference_latency(ms)": "trimmean_ms",
                   "model_load_time(ms)": "load_ms", "load_status": "load_status",
                   "ram_pss_usage(mb)": "ram_pss_growth_mb"}


def _parse_et_benchmark_json(text: str, source: str, select: str | None) -> Measurement:
    fmt = "executor_runner (ExecuTorch benchmark app JSON)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(source, fmt, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, list) or not all(isinstance(d, dict) and "metric" in d and "benchmarkModel" in d
                                             for d in data) or not data:
        raise _bad(source, fmt, "expected benchmark_results.json: a list of {benchmarkModel, metric, "
                                "actualValue, ...} objects")
    by_model: dict[str, dict[str, Any]] = {}
    for d in data:
        bm = d.get("benchmarkModel") or {}
        name = "_".join(str(bm.get(k)) for k in ("name", "backend", "quantization") if bm.get(k))
        entry = by_model.setdefault(name, {"benchmarkModel": bm, "deviceInfo": d.get("deviceInfo")})
        entry[d["metric"]] = d.get("actualValue")
    names = list(by_model)
    entry = _pick(source, fmt, [by_model[n] for n in names], names, select, "model")
    name = next(n for n in names if by_model[n] is entry)
    status = entry.get("load_status")
    if status not in (None, 0, 0.0):
        raise _bad(source, fmt, f"model {name}: load_status {status:g}: the app could not load it, nothing was "
                                f"timed")
    avg = entry.get("avg_inference_latency(ms)")
    if avg is None:
        metrics = ", ".join(k for k in entry if k not in ("benchmarkModel", "deviceInfo"))
        raise _bad(source, fmt, f"model {name} has no avg_inference_latency(ms) metric (metrics: {metrics})")
    extra = {v: entry.get(k) for k, v in _ET_APP_METRICS.items() if k in entry}
    if entry.get("deviceInfo"):
        extra["device_info"] = entry["deviceInfo"]
    return Measurement(
        latency_ms=_latency(mean=float(avg)),
        tool="ExecuTorch Android benchmark app (benchmark_results.json)",
        runtime=f"ExecuTorch Android benchmark app ({entry['benchmarkModel'].get('backend') or '?'})",
        statistic=("mean = the app's avg_inference_latency(ms) over its timed forward() calls, after its warm-up "
                   "calls; the JSON gives neither count nor median, p90 or min (trimmed mean kept in 'ingest')"),
        model=name, extra=extra)


# --------------------------------------------------------------------------- #
# LiteRT / TensorFlow Lite benchmark_model
# --------------------------------------------------------------------------- #

_TFL_TIMINGS = re.compile(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                          rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})")
_TFL_STATS = re.compile(r"(?:^|[\s:])count=(\d+)(.*)$")
_TFL_KV = re.compile(rf"(\w+)=({_NUM})")
_TFL_THREADS = (re.compile(r"#threads used for CPU inference: \[(-?\d+)\]"), re.compile(r"Num threads: \[(-?\d+)\]"))
_TFL_GRAPH = re.compile(r"Graph: \[(.*?)\]")
_TFL_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUM})")
_TFL_MEM = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                      rf"init=({_NUM}) overall=({_NUM})")
_TFL_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_TFL_DELEGATED = re.compile(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, yielding (\d+) "
                            r"partitions")
_TFL_PROFILE_STATS = ("Timings (microseconds)", "Memory (bytes)")


def _tfl_stats(line: str) -> dict[str, float] | None:
    """A ``Stat`` line (``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..[ p5=.. median=.. p95=..]``)."""
    if "count=" not in line or any(s in line for s in _TFL_PROFILE_STATS):
        return None
    m = _TFL_STATS.search(line)
    if not m:
        return None
    st = {k: _num(v) for k, v in _TFL_KV.findall(m.group(2))}
    st["count"] = int(m.group(1))
    if "min" not in st and "curr" in st:  # "count=N curr=X(all same)": every run took X
        st.update(min=st["curr"], max=st["curr"], avg=st["curr"], std=0.0)
    return st


def _close(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-5, abs_tol=0.5)


def parse_benchmark_model(text: str, source: str = "<log>", select: str | None = None) -> Measurement:
    """Latency from a LiteRT / TensorFlow Lite ``benchmark_model`` log (times in us, converted to ms).

    Matched against ``tflite/tools/benchmark/benchmark_model.cc`` in google-ai-edge/LiteRT (2025-26,
    commit 7d88950) and ``tensorflow/lite/tools/benchmark/benchmark_model.cc`` in tensorflow/tensorflow
    (commit 08df8c4), and public logs of both: after each of the warm-up and the timed phase a ``Stat``
    line ``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..``; LiteRT's ``StatWithPercentiles``
    appends `` p5=.. median=.. p95=..`` (older TensorFlow builds print no percentiles). Then
    ``Inference timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..``,
    ``Memory footprint delta from the start of the tool (MB): init=.. overall=..`` (2020-era builds,
    e.g. the log in tensorflow/tensorflow#42507: ``Peak memory footprint (MB): init=.. overall=..``) and, with
    ``--report_peak_memory_footprint``, ``Overall peak memory footprint (MB) via periodic monitoring: ..``.
    Threads from ``#threads used for CPU inference: [N]`` or ``Num threads: [N]`` (-1: runtime default).
    Any line prefix is accepted (``INFO: ``, logcat's ``I tflite  : ``).

    ``mean`` is the tool's ``Inference (avg)``. ``median`` is set only from a ``median=`` field (the
    element at index n/2 of the sorted runs: the upper middle for even n); benchmark_model prints no p90,
    so ``p90`` stays null (its p5/p95 go to ``extra``). ``peak_mem_mb`` is the ``overall`` footprint
    delta: on Linux/Android the tool's footprint is ``ru_maxrss``, so this is the growth of the peak RSS
    from the tool's start through all runs (on iOS/macOS it is the physical footprint instead).

    Args:
        text: the whole log.
        source: the log's path, for messages.
        select: part of the ``Graph: [...]`` path picking one run when the log holds several.

    Raises:
        DataError: no ``Inference timings`` line, or several runs and no ``select``.
    """
    fmt = "benchmark_model"
    lines = text.splitlines()
    ends = [i for i, ln in enumerate(lines) if _TFL_TIMINGS.search(ln)]
    if not ends:
        why = ("'Benchmarking failed.'" if any("Benchmarking failed" in ln for ln in lines) else
               "the run did not finish, or this is not benchmark_model output")
        raise _bad(source, fmt, f"no 'Inference timings in us: ...' line ({why})")
    runs = []
    for k, end in enumerate(ends):
        pre = lines[(ends[k - 1] + 1 if k else 0):end + 1]
        post = lines[end + 1:(ends[k + 1] if k + 1 < len(ends) else len(lines))]
        graph = next((m.group(1) for m in map(_TFL_GRAPH.search, pre) if m), None)
        runs.append((pre, post, graph))
    pre, post, graph = _pick(source, fmt, runs, [r[2] for r in runs], select, "benchmark run")

    init_us, first_us, warm_avg_us, inf_avg_us = (_num(g) for g in _TFL_TIMINGS.search(pre[-1]).groups())
    if not math.isfinite(inf_avg_us):
        raise _bad(source, fmt, f"'Inference (avg): {inf_avg_us}': no timed runs (a --dry_run, or --num_runs=0)")
    stats = [s for s in map(_tfl_stats, pre) if s is not None]
    notes: list[str] = []
    # The timed phase's Stat line is the last one whose avg is the "Inference (avg)" figure; the one
    # before it, with the "Warmup (avg)" figure, is the warm-up phase.
    idx = next((i for i in range(len(stats) - 1, -1, -1) if _close(stats[i].get("avg"), inf_avg_us)), None)
    inf = stats[idx] if idx is not None else None
    warm = None
    if idx:
        prev = stats[idx - 1]
        if prev["count"] == 0 or _close(prev.get("avg"), warm_avg_us):
            warm = prev
    if inf is None:
        notes.append("no per-run Stat line matches 'Inference (avg)' (filtered log?): run count and min unknown")
    median = inf.get("median") if inf else None
    lat = _latency(median=median / 1e3 if median is not None else None,
                   min=inf["min"] / 1e3 if inf else None, mean=inf_avg_us / 1e3,
                   runs=inf["count"] if inf else None, warmup=warm["count"] if warm else None)
    threads = None
    for rx in _TFL_THREADS:
        hit = next((int(m.group(1)) for m in map(rx.search, pre) if m), None)
        if hit is not None:
            threads = hit if hit > 0 else None
            break
    extra: dict[str, Any] = {k: v / 1e3 if math.isfinite(v) else None for k, v in (
        ("init_ms", init_us), ("first_inference_ms", first_us), ("warmup_mean_ms", warm_avg_us))}
    extra["graph"] = graph
    if inf:
        extra.update({f"{k}_ms": inf[k] / 1e3 for k in ("max", "std", "p5", "p95") if k in inf})
    delegated = next((m for m in map(_TFL_DELEGATED.search, pre) if m), None)
    if delegated:
        extra["delegated"] = (f"{delegated.group(1)} of {delegated.group(2)} nodes to {delegated.group(3)} in "
                              f"{delegated.group(4)} partition(s)")
    mem = next((m for m in map(_TFL_MEM.search, post) if m), None)
    peak = None
    if mem:
        extra["mem_init_mb"], extra["mem_overall_mb"] = _num(mem.group(1)), _num(mem.group(2))
        peak = extra["mem_overall_mb"]
    monitored = next((_num(m.group(1)) for m in map(_TFL_PEAK.search, post) if m), None)
    if monitored is not None:
        extra["mem_peak_monitored_mb"] = monitored
    size = next((_num(m.group(1)) for m in map(_TFL_SIZE.search, pre) if m), None)
    if median is not None:
        tool = "LiteRT/TFLite benchmark_model (Stat line with p5/median/p95)"
        stat = ("median from benchmark_model's 'median=' (upper middle run for an even count), min from its Stat "
                "line, mean = its 'Inference (avg)'; benchmark_model prints no p90 (p5/p95 kept in 'ingest')")
    else:
        tool = "LiteRT/TFLite benchmark_model (Stat line without percentiles)"
        stat = ("benchmark_model (this version) prints no median or percentiles: mean = its 'Inference (avg)', "
                "min from its Stat line; median and p90 unknown")
    return Measurement(latency_ms=lat, tool=tool, runtime=tool.split(" (")[0], statistic=stat, threads=threads,
                       peak_mem_mb=peak, model=graph, model_mb=size, extra=extra, notes=notes)


# --------------------------------------------------------------------------- #
# Xcode: XCTest measure output, or a transcribed Core ML Performance report
# --------------------------------------------------------------------------- #

_XCT_LINE = re.compile(r"Test Case '-\[(?P<test>[^\]]+)\]' measured \[(?P<metric>[^\]]+), (?P<unit>[^,\]]+)\] "
                       r"average: (?P<avg>[-0-9.]+), relative standard deviation: (?P<rsd>[-0-9.]+)%"
                       r"(?:, values: \[(?P<values>[^\]]*)\])?(?:, performanceMetricID:(?P<id>[\w.]+))?")
_XCT_FAILED = re.compile(r"Test Case '-\[(?P<test>[^\]]+)\]' failed")
_XCT_CLOCK = {("Clock Monotonic Time", "s"): 1, ("Time", "seconds"): None}  # -> warm-up iterations


def parse_xcode(text: str, source: str = "<log>", select: str | None = None) -> Measurement:
    """Latency from ``xcodebuild test`` output of an XCTest ``measure`` block, or a transcribed Core ML report.

    XCTest: the line XCTest prints per metric, as seen in public ``xcodebuild test`` / ``swift test`` logs
    (Xcode 11 to 16): ``Test Case '-[Module.Class testName]' measured [Clock Monotonic Time, s] average:
    0.004, relative standard deviation: 17.201%, values: [0.005643, ...], performanceMetricID:
    com.apple.dt.XCTMetric_Clock.time.monotonic, ...``; the legacy ``measure {}`` block prints
    ``[Time, seconds]``. ExecuTorch's iOS benchmark app (``extension/benchmark/apple/Benchmark``,
    ``GenericTests.mm``) measures ``forward`` this way with ``XCTClockMetric`` and ``XCTMemoryMetric``
    (20 iterations), in tests named ``test_forward_<model file>_<device>`` and ``test_load_...``.
    Per Apple's ``XCTMeasureOptions.iterationCount`` documentation the block runs ``iterationCount + 1``
    times and the first is dropped, so ``warmup`` = 1 for XCTMetric lines (unknown for the legacy
    metric). ``[Memory Peak Physical, kB]`` (absolute peak, not growth) goes to ``extra``, not to
    ``peak_mem_mb``.

    Transcribed report: Xcode's Core ML Performance report (model file > Performance tab, Xcode 14+)
    shows median prediction, load and compilation times, but Apple documents no file export of it. A
    JSON file in this FaceMat format records what the report shows (the keys are ours, not Apple's)::

        {"format": "facemat-xcode-coreml-report/1", "model": "facemat_fp16.mlpackage", "xcode": "16.2",
         "device": "iPhone 15 Pro, iOS 18.2", "compute_units": "All", "prediction_ms": {"median": 1.84},
         "load_ms": {"median": 21.3}, "compilation_ms": {"median": 95.0}}

    Only ``format`` and ``prediction_ms.median`` (or ``.mean``) are required. ``prediction_ms`` may also
    hold ``mean``, ``min`` and ``count`` read from the Instruments trace's Core ML "Model Activity
    Aggregation" view (Apple's forum answer on getting a mean instead of the report's median).

    Args:
        text: the whole log (or the JSON).
        source: the file's path, for messages.
        select: part of the test name picking one test when the log measured several
            (e.g. ``forward`` versus ``load`` in ExecuTorch's app).

    Raises:
        DataError: no clock measurement, a failed measured test, or several and no ``select``.
    """
    if text.lstrip().startswith("{"):
        return _parse_xcode_report_json(text, source)
    fmt = "xcode (XCTest measure)"
    by_test: dict[str, dict[str, Any]] = {}
    for m in map(_XCT_LINE.search, text.splitlines()):
        if m:
            by_test.setdefault(m.group("test"), {})[(m.group("metric"), m.group("unit"))] = m
    timed = {t: ms for t, ms in by_test.items() if any(k in ms for k in _XCT_CLOCK)}
    if not timed:
        raise _bad(source, fmt, "no \"Test Case '-[...]' measured [Clock Monotonic Time, s] average: ...\" line "
                                "(nor the legacy [Time, seconds]); pass the xcodebuild test output of a measure "
                                "block, or a facemat-xcode-coreml-report/1 JSON")
    names = list(timed)
    test = _pick(source, fmt, names, names, select, "measured test")
    failed = {m.group("test") for m in map(_XCT_FAILED.search, text.splitlines()) if m}
    if test in failed:
        raise _bad(source, fmt, f"test {test} failed: its measurements may time a failing call; fix the test first")
    metrics = timed[test]
    key = next(k for k in _XCT_CLOCK if k in metrics)
    m = metrics[key]
    values = [float(v) * 1e3 for v in (m.group("values") or "").split(",") if v.strip()]
    extra: dict[str, Any] = {"test": test, "metric": f"{key[0]}, {key[1]}", "rsd_percent": float(m.group("rsd")),
                             "metric_id": m.group("id")}
    notes: list[str] = []
    if values:
        lat = _per_run(values, warmup=_XCT_CLOCK[key])
        stat = (f"median/p90/min/mean over the {len(values)} XCTest measure iterations of {test} (the whole "
                f"measured block; XCTest prints 6 decimals of seconds, so times are to 1 us)")
    else:
        lat = _latency(mean=float(m.group("avg")) * 1e3, warmup=_XCT_CLOCK[key])
        stat = "mean = XCTest's average (this log lists no per-iteration values): median, p90, min unknown"
    if _XCT_CLOCK[key] is None:
        notes.append("legacy measure {} block: XCTest does not say whether a warm-up iteration was dropped")
    peak = metrics.get(("Memory Peak Physical", "kB"))
    if peak is not None and peak.group("values"):
        extra["memory_peak_physical_mb"] = max(float(v) for v in peak.group("values").split(",")) / 1e3
    grow = metrics.get(("Memory Physical", "kB"))
    if grow is not None:
        extra["memory_physical_delta_mean_mb"] = float(grow.group("avg")) / 1e3
    return Measurement(latency_ms=lat, tool=f"XCTest measure [{key[0]}, {key[1]}] (xcodebuild test output)",
                       runtime="XCTest measure", statistic=stat, model=test, extra=extra, notes=notes)


def _parse_xcode_report_json(text: str, source: str) -> Measurement:
    fmt = f"xcode ({XCODE_REPORT_FORMAT} JSON)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(source, fmt, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != XCODE_REPORT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise _bad(source, fmt, f"format {found!r}, expected {XCODE_REPORT_FORMAT!r} (see bench.ingest_parsers.parse_xcode)")
    pred = data.get("prediction_ms")
    if isinstance(pred, (int, float)):
        pred = {"median": pred}
    if not isinstance(pred, dict) or not any(isinstance(pred.get(k), (int, float)) for k in ("median", "mean")):
        raise _bad(source, fmt, "'prediction_ms' needs a 'median' (the report's median prediction time) or 'mean'")
    lat = _latency(median=pred.get("median"), mean=pred.get("mean"), min=pred.get("min"), runs=pred.get("count"))
    extra = {k: data.get(k) for k in ("xcode", "device", "compute_units", "load_ms", "compilation_ms") if k in data}
    return Measurement(
        latency_ms=lat, tool="Xcode Core ML Performance report (transcribed into FaceMat JSON)",
        runtime=f"Core ML (Xcode performance report, {data.get('compute_units') or 'compute units not given'})",
        statistic=("median = the Core ML Performance report's median prediction time, transcribed by hand (Xcode "
                   "documents no export; the report gives no p90 and no run count)"),
        model=data.get("model"), extra=extra)


PARSERS = {"executor_runner": parse_executor_runner, "benchmark_model": parse_benchmark_model,
           "xcode": parse_xcode}


def parse_log(fmt: str, text: str, source: str = "<log>", select: str | None = None) -> Measurement:
    """Dispatch to the parser of ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in PARSERS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    m = PARSERS[fmt](text, source, select)
    if not any(isinstance(m.latency_ms.get(k), (int, float)) for k in ("median", "mean")):
        raise _bad(source, fmt, "no latency figure in it")
    return m
