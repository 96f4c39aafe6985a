"""One artifact x thread setting, measured in a fresh process: ``python -m bench.worker SPEC.json``.

A fresh process per measurement keeps runtimes from sharing thread pools (the
ExecuTorch pool is process-wide and fixed when a method loads), lets one
runtime crash without taking the bench down, and makes the peak-memory figure
that artifact's own.

The spec holds the artifact's manifest entry and folder, the thread count, the image
file (``N x 3 x S x S`` float32 ``.npy``), and where to write the outputs
(``N x S x S`` float32 ``.npy``) and the result JSON; ``"time": false`` writes the
outputs without timing (the clip frames of ``bench.run --clips``).
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _rss_now_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return _rss_peak_mb()


def latency_stats(times_ms: list[float], warmup: int) -> dict[str, Any]:
    """Median, p90, min, mean of the timed runs (warm-up already excluded)."""
    s = sorted(times_ms)
    p90 = s[min(len(s) - 1, int(np.ceil(0.9 * len(s))) - 1)]
    return {"median": statistics.median(s), "p90": p90, "min": s[0], "mean": statistics.fmean(s),
            "runs": len(s), "warmup": warmup}


def time_invoke(invoke, prepared, runs: int, warmup: int) -> dict[str, Any]:
    """Time ``invoke(prepared)`` ``runs`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        invoke(prepared)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        invoke(prepared)
        times.append((time.perf_counter() - t0) * 1e3)
    return latency_stats(times, warmup)


def _load(spec: dict[str, Any]):
    if spec["kind"] == "peer":
        from bench.peers import load_peer_runner

        return load_peer_runner(spec["path"], spec["threads"])
    from targets import open_artifact

    return open_artifact(spec["entry"], spec["root"], threads=spec["threads"])


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Load, run every image (outputs saved), then time ``invoke`` on the first image."""
    from targets.common import RuntimeUnavailable

    base = _rss_now_mb()
    t0 = time.perf_counter()
    try:
        runner = _load(spec)
    except RuntimeUnavailable as exc:
        return {"status": "not run here", "reason": str(exc)}
    load_ms = (time.perf_counter() - t0) * 1e3
    images = np.load(spec["images"]) if spec.get("images") else None
    result: dict[str, Any] = {"status": "ok", "reason": None, "load_ms": load_ms}
    if images is not None and spec.get("outputs"):
        outs = np.stack([np.asarray(runner(x[None]), np.float32)[0, 0] for x in images])
        np.save(spec["outputs"], outs)
    if spec.get("time") is False:  # outputs only (clip frames): the timing is the image run's
        return result
    first = images[:1] if images is not None else runner.example()
    result["input"] = "x".join(str(v) for v in np.shape(first))
    prepared = runner.prepare(first)
    result["latency_ms"] = time_invoke(runner.invoke, prepared, spec["runs"], spec["warmup"])
    result["peak_mem_mb"] = max(0.0, _rss_peak_mb() - base)
    if spec.get("profile"):
        from bench.profile import profile_artifact

        try:
            result["profile"] = profile_artifact(spec, first)
        except Exception as exc:  # noqa: BLE001 - a profiler failure must not lose the measurement
            result["profile"] = {"tool": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    try:
        result = measure(spec)
    except Exception as exc:  # noqa: BLE001 - reported as a failed row by the parent
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc).strip()[:500]}"}
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
