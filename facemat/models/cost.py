"""Cost of a model: parameters, multiply-accumulates and eager CPU latency."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModelCost:
    """Cost figures of one model at one input size."""

    params: int
    macs: int
    latency_ms: float | None  # median eager CPU latency, None when not measured
    size: int
    threads: int

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "macs": self.macs,
            "latency_ms_median": self.latency_ms,
            "size": self.size,
            "threads": self.threads,
        }


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``x``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (which reports
    2 FLOPs per MAC for convolutions and matmuls; elementwise ops, resizes and
    activations are not counted).
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def measure_latency_ms(model: nn.Module, x: torch.Tensor, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time in ms of ``model(x)`` in eager mode, after ``warmup`` runs."""
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def model_cost(model: nn.Module, size: int, runs: int = 20, threads: int | None = None) -> ModelCost:
    """Params, MACs and (when ``runs > 0``) median eager latency at ``1 x 3 x size x size``."""
    model = model.eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, x)
    prev = torch.get_num_threads()
    n = threads or prev
    torch.set_num_threads(n)
    try:
        latency = measure_latency_ms(model, x, runs=runs) if runs > 0 else None
    finally:
        torch.set_num_threads(prev)
    return ModelCost(params=params, macs=macs, latency_ms=latency, size=size, threads=n)
