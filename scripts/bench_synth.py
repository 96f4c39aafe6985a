"""Throughput and content statistics of the procedural face generator.

Prints samples/s of ``render_sample`` at one size in this process (the median
of a few repetitions), then, over ``--count`` samples of seed ``--seed``, the
share of samples with a skin-coloured hand, with semi-transparent alpha
(``0.05 < alpha < 0.95`` over >= 1 % of the image; also counted without the
one-pixel anti-aliased outlines, which alone can reach 1 %), with no occluder,
and how often each occluder kind appears.

    python scripts/bench_synth.py [--size 256] [--count 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facemat.data.synth import render_sample  # noqa: E402
from facemat.data.synth_occluders import KINDS  # noqa: E402


def throughput(size: int, n: int, reps: int, seed: int) -> list[float]:
    """Samples per second of ``render_sample`` for each repetition over ``n`` samples."""
    for i in range(10):  # warm-up: imports, allocator, OpenCV thread pool
        render_sample(seed, i, size)
    rates = []
    for r in range(reps):
        t0 = time.perf_counter()
        for i in range(n):
            render_sample(seed, r * n + i, size)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--count", type=int, default=1000, help="samples for the statistics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-samples", type=int, default=200)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)

    rates = throughput(args.size, args.speed_samples, args.reps, args.seed)
    print(
        f"throughput at {args.size}x{args.size}: {statistics.median(rates):.1f} samples/s "
        f"(median of {args.reps} x {args.speed_samples}; min {min(rates):.1f}, max {max(rates):.1f})"
    )

    hand = semi = strict = none = 0
    kinds: Counter[str] = Counter()
    occluded = []
    for i in range(args.count):
        m = render_sample(args.seed, i, args.size).meta
        hand += m["hand"]
        semi += m["semi_transparent"]
        strict += m["semi_fraction_no_edges"] >= 0.01
        none += not m["occluders"]
        kinds.update(set(m["occluders"]))
        occluded.append(m["occluded_fraction"])
    n = args.count
    print(f"over {n} samples, seed {args.seed}:")
    print(f"  skin-coloured hand:   {100 * hand / n:.1f} %")
    print(f"  semi-transparent:     {100 * semi / n:.1f} %  (0.05 < alpha < 0.95 over >= 1 % of the image)")
    print(f"  semi-transparent, outlines not counted: {100 * strict / n:.1f} %")
    print(f"  no occluder:          {100 * none / n:.1f} %")
    print(f"  median occluded face: {100 * statistics.median(occluded):.1f} %")
    print("  per kind: " + ", ".join(f"{k} {100 * kinds[k] / n:.1f} %" for k in KINDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
