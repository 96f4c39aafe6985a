"""``python -m quantize.qat``: uncertainty-aware quantization-aware training of the student.

Loss per batch (docs/design.md, "Uncertainty-aware QAT")::

    w = 1 + lambda * b_T / mean(b_T)          (uniform: w = 1)
    L = mean(w * |a_Q - a_KD|) + gamma * (L1 + LapL1 + GradL1)(a_Q, a)

``a_Q`` is the fake-quantized student, ``b_T`` the teacher's uncertainty and
``a_KD`` the distillation target: the teacher's alpha (``--kd-from teacher``,
the default) or the FP32 student being quantized (``--kd-from student``).

Why the teacher by default: ``b_T`` is high where the models err (Spearman
0.57 between the teacher's ``b`` and its own error), and the FP32 student errs
there most. Up-weighting ``|a_Q - a_FP32|`` on those pixels ties the int8 model
to the student's own mistakes: on three seeds it ended worse in the
high-uncertainty band than plain QAT every time. Distilling from the teacher
points the same weight at pixels where the target knows better, and there the
uncertainty-weighted arm won the band on average for every recipe (on 3 of 3
seeds for xnnpack and litert, 2 of 3 for coreml; docs/results.md, "Quantization").

Schedule: calibrate the observers on whole images at the model's size, train
the weights on crops with the ranges frozen (``--freeze-at`` lets them adapt
for a first part of the steps), then convert and save ``model.pt2`` +
``recipe.json``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from facemat.cli import ArgumentParser, add_debug_flag, add_settings_args, flag, run_main, settings_from_args
from facemat.errors import ConfigError, check_size
from facemat.io import MetricsLog, ensure_writable_dir, write_json_atomic
from quantize.recipes import RECIPES, check_recipe

WEIGHTINGS = ("uncertainty", "uniform")
KD_SOURCES = ("student", "teacher")


@dataclass(frozen=True)
class QATSettings:
    """Settings of ``python -m quantize.qat``; each field declared with :func:`flag` is its ``--flag``."""

    student: str = flag(help="FP32 student checkpoint (training.distill)")
    recipe: str = flag(help="target quantizer", choices=RECIPES)
    out: str = flag(help="output folder")
    teacher: str | None = flag(None, help="teacher checkpoint (needed for --weighting uncertainty)")
    data: str = flag("synth", help="'synth', 'real', 'mix' (made on the fly) or a dataset folder")
    weighting: str = flag("uncertainty", choices=WEIGHTINGS,
                          help="uncertainty: w = 1 + lambda*b/mean(b); uniform: plain QAT (ablation)")
    kd_from: str = flag("teacher", choices=KD_SOURCES,
                        help="distillation target: the teacher (default) or the FP32 student being quantized")
    steps: int = flag(300, help="QAT steps")
    lr: float = flag(5e-5, help="Adam learning rate (cosine decay)")
    batch: int = flag(8, help="training batch (default %(default)s)")
    size: int = flag(128, help="training resolution (multiple of 32)")
    calib: int = flag(8, help="calibration batches of whole images at the model's size, before training")
    freeze_at: float = flag(0.0, help="fraction of the QAT steps during which observers keep adapting (default 0: "
                                      "ranges fixed by the calibration)")
    kd_lambda: float = flag(1.0, help="lambda of the uncertainty weight")
    gamma: float = flag(0.5, help="weight of ground-truth terms")
    seed: int = flag(1, help="seed of init, data and crops")
    val_batches: int = 4
    workers: int = flag(1, help="data-loading worker processes")
    log_every: int = 10

    def __post_init__(self) -> None:
        check_recipe(self.recipe)
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"--weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if not Path(self.student).is_file():
            raise ConfigError(f"--student: {self.student} is not a file")
        if self.kd_from not in KD_SOURCES:
            raise ConfigError(f"--kd-from must be one of {', '.join(KD_SOURCES)}, got {self.kd_from!r}")
        if self.needs_teacher and (self.teacher is None or not Path(self.teacher).is_file()):
            why = "--weighting uncertainty" if self.weighting == "uncertainty" else "--kd-from teacher"
            raise ConfigError(f"--teacher: {self.teacher} is not a file (needed for {why})")
        for name, low in (("steps", 1), ("batch", 1), ("calib", 1), ("val_batches", 1), ("workers", 0),
                          ("log_every", 1), ("seed", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        check_size(self.size)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.freeze_at <= 1.0:
            raise ConfigError(f"--freeze-at must be in [0, 1], got {self.freeze_at}")
        from facemat.data.stream import GENERATED

        if self.data not in GENERATED and not Path(self.data).is_dir():
            raise ConfigError(f"--data: {self.data} is not a folder (give a dataset folder or one of "
                              f"{', '.join(GENERATED)})")

    @property
    def needs_teacher(self) -> bool:
        return self.weighting == "uncertainty" or self.kd_from == "teacher"


def _datasets(s: QATSettings):
    from facemat.data.stream import build_datasets

    return build_datasets(s.data, s.size, s.seed, val_count=s.val_batches * s.batch)


def _loss(s: QATSettings, qmodel, fp32, teacher, batch) -> tuple[torch.Tensor, dict[str, float]]:
    from facemat.losses import kd_objective

    x = batch["image"]
    a_q = qmodel(x)
    with torch.no_grad():
        a_t, b_t = teacher(x) if teacher is not None else (None, None)
        target = a_t if s.kd_from == "teacher" else fp32(x)
    b = b_t if s.weighting == "uncertainty" else None
    return kd_objective(a_q, target, batch["alpha"], b, lam=s.kd_lambda, gamma=s.gamma)


def run_qat(s: QATSettings) -> Path:
    """Quantization-aware training; returns the path of the saved ``model.pt2``."""
    from tqdm import tqdm

    from facemat.checkpoint import file_sha256, load_checkpoint
    from quantize.core import (
        batches,
        check_sizes,
        convert_and_export,
        full_view,
        prepare,
        save_quantized,
        set_mode,
        set_observers,
    )
    from quantize.recipes import quantizer_description

    t0 = time.perf_counter()
    torch.manual_seed(s.seed)
    out = Path(s.out)
    student, ckpt = load_checkpoint(s.student, expect="student")  # wrong files fail before anything is written
    check_sizes(student, s.size)  # before anything is written
    teacher = load_checkpoint(s.teacher, expect="teacher")[0] if s.needs_teacher else None
    ensure_writable_dir(out)
    size = student.config.size
    write_json_atomic(out / "config.json", {**s.__dict__, "command": "quantize.qat"})
    print(f"quantize.qat: recipe {s.recipe}, weighting {s.weighting}; preparing (export + {s.recipe} quantizer)",
          file=sys.stderr)
    qmodel = prepare(student, s.recipe, qat=True, size=s.size)
    train_set, val_set, _ = _datasets(s)
    val = list(torch.utils.data.DataLoader(val_set, batch_size=s.batch, shuffle=False))  # --val-batches batches
    (out / "metrics.jsonl").unlink(missing_ok=True)
    log = MetricsLog(out / "metrics.jsonl", enabled=True, keep_until=None)

    def val_loss() -> float:
        set_observers(qmodel, False)
        set_mode(qmodel, False)
        with torch.no_grad():
            value = sum(_loss(s, qmodel, student, teacher, b)[0].item() for b in val) / len(val)
        set_mode(qmodel, True)
        return value

    # 1. calibrate the ranges on whole images at the deployed size (observers
    #    on, no gradient): training crops have narrower activation ranges, and
    #    moving-average observers fed with them clipped the full-frame
    #    activations (val loss 0.149 -> 0.319 after 40 crop batches, weights fixed).
    set_mode(qmodel, True)
    with torch.no_grad():
        for b in batches(full_view(train_set), max(1, s.batch // 2), 0, s.calib, s.workers):
            qmodel(b["image"])
    before = val_loss()
    log({"kind": "val", "step": 0, "loss": before, "note": "after calibration, before QAT"})

    # 2. train the weights; observers stay on for the first --freeze-at of the
    #    steps (default 0: ranges fixed by the calibration).
    freeze_step = int(round(s.freeze_at * s.steps))
    set_observers(qmodel, freeze_step > 0)
    opt = torch.optim.Adam(qmodel.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, s.steps) / s.steps)))
    bar = tqdm(total=s.steps, desc=f"qat-{s.recipe}-{s.weighting}", file=sys.stderr, dynamic_ncols=True)
    for step, b in enumerate(batches(train_set, s.batch, s.calib, s.steps, s.workers), start=1):
        if step == freeze_step + 1:
            set_observers(qmodel, False)
        loss, parts = _loss(s, qmodel, student, teacher, b)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"QAT loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(qmodel.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.update(1)
        if step % s.log_every == 0 or step == s.steps:
            bar.set_postfix(loss=f"{loss.item():.4f}")
            log({"kind": "train", "step": step, "loss": loss.item(), **parts, "lr": sched.get_last_lr()[0],
                 "observers": step <= freeze_step, "elapsed_s": time.perf_counter() - t0})
    bar.close()
    after = val_loss()
    log({"kind": "val", "step": s.steps, "loss": after, "note": "after QAT, observers frozen"})

    # 3. convert and save.
    program = convert_and_export(qmodel, size)
    recipe = {
        "recipe": s.recipe,
        "method": "qat",
        "weighting": s.weighting,
        "kd_from": s.kd_from,
        "kd_lambda": s.kd_lambda,
        "gamma": s.gamma,
        "quantizer": quantizer_description(s.recipe),
        "batchnorm": "folded into convolutions before export",
        "source_checkpoint": str(s.student),
        "source_checkpoint_sha256": file_sha256(s.student),
        "source_arch": ckpt["model"]["arch"],
        "source_config": ckpt["model"]["config"],
        "teacher_sha256": file_sha256(s.teacher) if teacher is not None else None,
        "input_size": size,
        "steps": s.steps,
        "val_loss_before": before,
        "val_loss_after": after,
        "wall_s": time.perf_counter() - t0,
    }
    path = save_quantized(out, program, recipe)
    print(f"quantize.qat: val loss {before:.5f} (calibrated, before QAT) -> {after:.5f}; saved {path} "
          f"in {recipe['wall_s']:.0f} s", file=sys.stderr)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m quantize.qat",
        description="Quantization-aware training of a FaceMat student with the PT2E flow and a target's "
        "quantizer, distilling from the teacher (or the FP32 student) with the teacher's uncertainty as "
        "spatial weight. Writes model.pt2 (converted, batch 1), recipe.json, config.json and metrics.jsonl to --out.",
    )
    add_settings_args(parser, QATSettings)
    add_debug_flag(parser)
    run_qat(settings_from_args(QATSettings, parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
