"""``python -m training.teacher``: train the teacher with the Laplace NLL plus the matting terms.

Loss per batch (docs/design.md, "Teacher")::

    L = laplace_nll(a_T, b_T, a; beta) + L1(a_T, a) + LapL1(a_T, a) + GradL1(a_T, a)

The matting terms act on alpha only, and the beta-NLL weight keeps the pull on
alpha alive where ``b`` is large: together they stop the collapse where the
teacher declares everything uncertain.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from facemat.cli import ArgumentParser, add_debug_flag, finite_float, run_main
from facemat.errors import ConfigError
from facemat.losses import laplace_nll, matting_loss
from training.common import (
    TrainResult,
    TrainSettings,
    add_common_args,
    common_settings,
    initial_model,
    train,
    validate,
)


@dataclass
class TeacherSettings(TrainSettings):
    arch: str = "teacher"
    nll_beta: float = 0.5
    nll_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        from facemat.models import list_models, model_kind

        if self.arch not in list_models() or model_kind(self.arch) != "teacher":
            teachers = [m for m in list_models() if model_kind(m) == "teacher"]
            raise ConfigError(f"--arch must be a teacher model ({', '.join(teachers)}), got {self.arch!r}")
        if not 0.0 <= self.nll_beta <= 1.0:
            raise ConfigError(f"--nll-beta must be in [0, 1], got {self.nll_beta}")
        if self.nll_weight < 0:
            raise ConfigError(f"--nll-weight must be >= 0, got {self.nll_weight}")


def teacher_loss(settings: TeacherSettings):
    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        alpha, b = model(batch["image"])
        alpha, b = alpha.float(), b.float()
        nll = laplace_nll(alpha, b, batch["alpha"], beta=settings.nll_beta)
        matte = matting_loss(alpha, batch["alpha"])
        return settings.nll_weight * nll + matte, {"nll": nll.item(), "matte": matte.item(), "mean_b": b.mean().item()}

    return loss_fn


def train_teacher(settings: TeacherSettings, stop_after: int | None = None) -> TrainResult:
    """Train a teacher; returns where its checkpoints are."""
    torch.manual_seed(settings.seed)
    extra = {"arch": settings.arch, "nll_beta": settings.nll_beta, "nll_weight": settings.nll_weight}
    model = initial_model(settings, "teacher", extra)
    return train(settings, model, teacher_loss(settings), validate, "training.teacher", extra, stop_after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m training.teacher",
        description="Train the FaceMat teacher (alpha + per-pixel Laplace uncertainty b) with the Laplace NLL "
        "plus L1, Laplacian-pyramid and gradient losses. Writes last.pt, best.pt (lowest validation MSE), "
        "metrics.jsonl and config.json to --out. Runs data-parallel under torchrun.",
    )
    add_common_args(parser)
    parser.add_argument("--arch", default="teacher", help="teacher variant from the model registry")
    parser.add_argument("--nll-beta", type=finite_float, default=0.5,
                        help="beta-NLL guard in [0, 1] against uncertainty collapse (0 = plain NLL)")
    parser.add_argument("--nll-weight", type=finite_float, default=1.0, help="weight of the NLL term")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    settings = TeacherSettings(**common_settings(args), arch=args.arch, nll_beta=args.nll_beta,
                               nll_weight=args.nll_weight)
    result = train_teacher(settings)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"teacher: {result.steps} steps in {result.wall_s:.0f} s; best val MSE {result.best_score:.5f}; "
              f"checkpoints in {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
