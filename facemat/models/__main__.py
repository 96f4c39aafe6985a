"""``python -m facemat.models``: parameters, MACs and eager CPU latency of every registered model."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Sequence

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError, check_size


@dataclass(frozen=True)
class CostSettings:
    size: int = 256
    runs: int = 20
    threads: int = 0  # 0 = torch's default (all cores)
    models: tuple[str, ...] = ()
    as_json: bool = False

    def __post_init__(self) -> None:
        check_size(self.size)
        if self.runs < 0:
            raise ConfigError(f"--runs must be >= 0, got {self.runs}")
        cores = os.cpu_count() or 1
        if not 0 <= self.threads <= cores:
            raise ConfigError(f"--threads must be between 0 (all) and {cores} (this machine's cores), got {self.threads}")


def summarize(settings: CostSettings) -> dict[str, dict]:
    """Cost of each selected model, keyed by registry name."""
    from facemat.models import build_model, list_models
    from facemat.models.cost import model_cost

    names = settings.models or tuple(list_models())
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise ConfigError(f"--model: unknown {unknown}; choose from {', '.join(list_models())}")
    out = {}
    for name in names:
        model = build_model(name, size=settings.size)
        cost = model_cost(model, settings.size, runs=settings.runs, threads=settings.threads or None)
        out[name] = cost.to_dict()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m facemat.models",
        description="Print each registered model's parameters, multiply-accumulates (MACs, counted with "
        "torch.utils.flop_counter) and median eager PyTorch CPU latency at a given input size.",
    )
    parser.add_argument("--size", type=int, default=256, help="input height = width, a multiple of 32 (default 256)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model after 3 warm-up runs; 0 skips timing")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads for timing (default 0 = all cores)")
    parser.add_argument("--model", action="append", default=[], help="only this model (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by model name")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    settings = CostSettings(args.size, args.runs, args.threads, tuple(args.model), args.json)
    result = summarize(settings)
    if settings.as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{'model':<10} {'params':>10} {'MACs (M)':>10} {'latency ms (median)':>20}   @ {settings.size}x{settings.size}")
    for name, c in result.items():
        lat = f"{c['latency_ms_median']:.2f}" if c["latency_ms_median"] is not None else "-"
        print(f"{name:<10} {c['params']:>10,} {c['macs'] / 1e6:>10.1f} {lat:>20}   threads={c['threads']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
