"""``python -m training.distill``: train the student by uncertainty-guided distillation.

Loss per batch (docs/design.md, "Student")::

    w    = 1 + lambda * b_T / mean(b_T)        (teacher frozen; uniform: w = 1)
    L_kd = mean(w * |a_S - a_T|)
    L    = L_kd + gamma * (L1 + LapL1 + GradL1)(a_S, a)

``--kd uniform`` is the ablation (w = 1 everywhere); ``--kd none`` trains the
student on ground truth alone, the no-distillation baseline.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from facemat.cli import ArgumentParser, add_debug_flag, finite_float, run_main
from facemat.errors import ConfigError
from facemat.losses import kd_objective, matting_loss, temporal_consistency
from training.common import (
    TrainResult,
    TrainSettings,
    add_common_args,
    common_settings,
    initial_model,
    train,
    validate,
)

KD_MODES = ("uncertainty", "uniform", "none")


@dataclass
class DistillSettings(TrainSettings):
    teacher: str | None = None
    arch: str = "student"
    kd: str = "uncertainty"
    kd_lambda: float = 1.0
    gamma: float = 0.5
    temporal: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        from facemat.models import list_models, model_kind

        if self.kd not in KD_MODES:
            raise ConfigError(f"--kd must be one of {', '.join(KD_MODES)}, got {self.kd!r}")
        if self.kd != "none" and (self.teacher is None or not Path(self.teacher).is_file()):
            raise ConfigError(f"--teacher: {self.teacher} is not a file (a teacher checkpoint is needed for --kd {self.kd})")
        if self.arch not in list_models() or model_kind(self.arch) != "student":
            students = [m for m in list_models() if model_kind(m) == "student"]
            raise ConfigError(f"--arch must be a student model ({', '.join(students)}), got {self.arch!r}")
        if self.kd_lambda < 0:
            raise ConfigError(f"--kd-lambda must be >= 0, got {self.kd_lambda}")
        if self.gamma < 0:
            raise ConfigError(f"--gamma must be >= 0, got {self.gamma}")
        if self.temporal < 0:
            raise ConfigError(f"--temporal must be >= 0, got {self.temporal}")


def distill_loss(settings: DistillSettings, teacher: nn.Module | None):
    lam = settings.kd_lambda if settings.kd == "uncertainty" else 0.0

    def objective(model: nn.Module, batch: dict[str, torch.Tensor], alpha: torch.Tensor):
        if teacher is None:
            matte = matting_loss(alpha.float(), batch["alpha"])
            return matte, {"matte": matte.item()}
        with torch.no_grad():
            a_t, b_t = teacher(batch["image"])
        return kd_objective(alpha, a_t, batch["alpha"], b_t, lam=lam, gamma=settings.gamma)

    def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        alpha = model(batch["image"])
        loss, parts = objective(model, batch, alpha)
        if settings.temporal > 0:
            steady = temporal_consistency(model, batch["image"], alpha)
            loss = loss + settings.temporal * steady
            parts["temporal"] = steady.item()
        return loss, parts

    return loss_fn


def train_student(settings: DistillSettings, stop_after: int | None = None) -> TrainResult:
    """Distil a student from ``settings.teacher`` (or train it alone with ``kd='none'``)."""
    from facemat.checkpoint import file_sha256, load_checkpoint

    teacher = None
    extra = {"arch": settings.arch, "kd": settings.kd, "kd_lambda": settings.kd_lambda, "gamma": settings.gamma,
             "temporal": settings.temporal}
    if settings.kd != "none":
        teacher, _ = load_checkpoint(settings.teacher, expect="teacher")
        teacher.requires_grad_(False)
        extra["teacher_sha256"] = file_sha256(settings.teacher)
        use_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        if use_cuda:
            teacher = teacher.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    torch.manual_seed(settings.seed)
    model = initial_model(settings, "student", extra)
    return train(settings, model, distill_loss(settings, teacher), validate, "training.distill", extra, stop_after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m training.distill",
        description="Train the FaceMat student by uncertainty-weighted knowledge distillation from a teacher "
        "checkpoint, plus ground-truth matting losses. Writes last.pt, best.pt, metrics.jsonl and config.json "
        "to --out. Runs data-parallel under torchrun.",
    )
    add_common_args(parser)
    parser.add_argument("--teacher", help="teacher checkpoint (from python -m training.teacher)")
    parser.add_argument("--arch", default="student", help="student variant from the model registry")
    parser.add_argument("--kd", default="uncertainty", choices=KD_MODES,
                        help="uncertainty: w = 1 + lambda*b/mean(b); uniform: w = 1 (ablation); none: no teacher")
    parser.add_argument("--kd-lambda", type=finite_float, default=1.0, help="lambda of the uncertainty weight (default 1)")
    parser.add_argument("--gamma", type=finite_float, default=0.5, help="weight of the ground-truth matting terms")
    parser.add_argument("--temporal", type=finite_float, default=0.0,
                        help="weight of the temporal-consistency term: the alpha of a camera-shaken copy of each "
                        "image (sub-pixel shift and roll, sensor noise) must match the alpha moved the same way "
                        "(0 = off; costs a second student pass per step)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    settings = DistillSettings(**common_settings(args), teacher=args.teacher, arch=args.arch, kd=args.kd,
                               kd_lambda=args.kd_lambda, gamma=args.gamma, temporal=args.temporal)
    result = train_student(settings)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"student: {result.steps} steps in {result.wall_s:.0f} s; best val MSE {result.best_score:.5f}; "
              f"checkpoints in {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
