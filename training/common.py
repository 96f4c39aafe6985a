"""The training loop shared by the teacher and the student.

What it guarantees:

* **Deterministic data by step** (:mod:`facemat.data.stream`): resuming only
  needs the step counter to restore the data position.
* **Exact resume.** ``last.pt`` carries the model, optimizer, scheduler, RNG
  states, step and best score; on CPU a resumed run ends with the same weights
  as an uninterrupted one.
* **Nothing lost on a crash.** Checkpoints, ``config.json`` and
  ``metrics.jsonl`` rewrites are atomic (temp file, then rename).
* **Data parallel under torchrun.** DDP with gloo on CPU and NCCL on CUDA;
  rank 0 alone logs and writes checkpoints, saved from the unwrapped model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from facemat.checkpoint import read_checkpoint, save_checkpoint, unwrap
from facemat.data.stream import GENERATED, StepBatchSampler, build_datasets
from facemat.errors import CheckpointError, ConfigError, DataError, check_size
from facemat.io import MetricsLog, ensure_writable_dir, read_json, write_json_atomic
from facemat.safety import finite_float

LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class TrainSettings:
    """Settings every training command shares; see each command's ``--help``."""

    data: str = "synth"
    out: str = "runs/train"
    steps: int = 1500
    batch: int = 8
    size: int = 128
    render_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 50
    seed: int = 0
    val_data: str | None = None
    val_count: int = 32
    val_every: int = 250
    ckpt_every: int = 100
    log_every: int = 10
    workers: int = 1
    device: str = "auto"
    amp: bool = False
    resume: bool = False
    init: str | None = None

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("batch", 1), ("val_count", 1), ("val_every", 1), ("ckpt_every", 1),
                          ("log_every", 1), ("warmup", 0), ("workers", 0), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        check_size(self.size)
        if self.render_size % 32 or self.render_size < self.size:
            raise ConfigError(f"--render-size must be a multiple of 32 and >= --size ({self.size}), got {self.render_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.data not in GENERATED and not Path(self.data).is_dir():
            raise ConfigError(f"--data: {self.data} is not a folder (give a dataset folder or one of "
                              f"{', '.join(GENERATED)})")
        if self.val_data is not None and not Path(self.val_data).is_dir():
            raise ConfigError(f"--val-data: {self.val_data} is not a folder")
        if self.init is not None and not Path(self.init).is_file():
            raise ConfigError(f"--init: {self.init} is not a file (give a checkpoint of the same --arch)")


# Settings that may change between an interrupted run and its resume.
RESUMABLE_CHANGES = {"out", "resume", "steps", "workers", "log_every", "val_every", "ckpt_every", "device"}


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


# ----------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_flag: str) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_flag == "cuda" or (device_flag == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available on this machine")
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local), device


def state_digest(model: nn.Module) -> str:
    """sha256 over a model's state dict (names and exact bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _param_digest(model: nn.Module) -> str:
    """sha256 over the trainable parameters only (what DDP's all-reduce keeps equal)."""
    h = hashlib.sha256()
    for name, p in sorted(unwrap(model).named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# -------------------------------------------------------------------- the loop


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up then cosine decay to 5 % of the base rate."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _prepare_out(s: TrainSettings, resolved: dict[str, Any]) -> Path | None:
    """Check ``--out`` against ``--resume``; return ``last.pt`` to resume from, if any."""
    out = Path(s.out)
    last = out / "last.pt"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a folder")
    if not last.exists():
        return None
    if not s.resume:
        raise ConfigError(f"--out: {out} already holds a run (last.pt); pass --resume to continue it or pick another --out")
    saved = read_json(out / "config.json", "restore it or start a new run with another --out") \
        if (out / "config.json").exists() else {}
    if not isinstance(saved, dict):
        raise DataError(f"{out / 'config.json'}: not a settings table; start a new run with another --out")
    differ = sorted(k for k in resolved if k not in RESUMABLE_CHANGES and k in saved and saved[k] != resolved[k])
    if differ:
        diffs = ", ".join(f"{k}: {saved[k]!r} -> {resolved[k]!r}" for k in differ)
        raise ConfigError(f"--resume: settings differ from the run in {out} ({diffs}); use another --out")
    return last


@dataclass
class TrainResult:
    out: Path
    steps: int
    best_score: float
    wall_s: float
    final_digest: str


def train(
    s: TrainSettings,
    model: nn.Module,
    loss_fn: LossFn,
    evaluate: Callable[[nn.Module, torch.utils.data.Dataset, torch.device], dict[str, float]],
    command: str,
    extra_config: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``model`` with ``loss_fn`` and write ``last.pt``, ``best.pt``, ``metrics.jsonl``, ``config.json``.

    Args:
        s: shared settings.
        model: a freshly built registry model (on CPU).
        loss_fn: ``(model, batch) -> (loss, floats to log)``; ``batch`` holds
            ``image`` ``B x 3 x S x S`` and ``alpha`` ``B x 1 x S x S`` on the device.
        evaluate: ``(unwrapped model, val set, device) -> metrics``; must hold
            ``"score"`` (lower is better) used to pick ``best.pt``.
        command: the command name, stored in config and checkpoints.
        extra_config: command-specific resolved settings for ``config.json``.
        stop_after: stop cleanly after this global step (tests, time boxes);
            ``last.pt`` then allows ``--resume``.
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    world_info, device = setup_distributed(s.device)
    if s.amp and device.type != "cuda" and not cpu_has_bf16():
        raise ConfigError("--amp needs a CUDA device or a CPU with AVX-512 BF16 or AMX (bf16 autocast); "
                          "this CPU has neither (see /proc/cpuinfo): drop --amp")
    resolved = {**dataclasses.asdict(s), **(extra_config or {}), "command": command, "world_size": world_info.world}
    resume_from = _prepare_out(s, resolved)
    out = Path(s.out)
    if world_info.main:
        ensure_writable_dir(out)

    torch.manual_seed(s.seed)
    train_set, val_set, data_desc = build_datasets(s.data, s.size, s.seed, render_size=s.render_size,
                                                   val_data=s.val_data, val_count=s.val_count)
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(s.warmup, s.steps))
    start_step, best = 0, float("inf")
    if resume_from is not None:
        ckpt = read_checkpoint(resume_from)
        ts = ckpt.get("train_state")
        if not isinstance(ts, dict) or not {"optimizer", "scheduler", "rng", "step", "best"} <= set(ts):
            raise CheckpointError(f"{resume_from}: holds no complete training state, so the run cannot resume "
                                  "from it; start a new run with another --out")
        unwrap(model).load_state_dict(ckpt["state_dict"], strict=True)
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["scheduler"])
        _set_rng_state(ts["rng"])
        start_step, best = int(ts["step"]), float(ts["best"])
    log = MetricsLog(out / "metrics.jsonl", world_info.main, start_step if resume_from else None)
    if world_info.main:
        write_json_atomic(out / "config.json", resolved)
        if resume_from is None:
            (out / "metrics.jsonl").unlink(missing_ok=True)
        where = f"resuming at step {start_step}" if resume_from else "starting"
        print(f"{command}: {where}; data {data_desc}; device {device}; world {world_info.world}", file=sys.stderr)

    end_step = s.steps if stop_after is None else min(s.steps, stop_after)
    if start_step >= end_step:
        if world_info.main:
            print(f"{command}: {out} already finished step {start_step}; nothing to do", file=sys.stderr)
        return TrainResult(out=out, steps=start_step, best_score=best, wall_s=time.perf_counter() - t_start,
                           final_digest=state_digest(model))

    ddp_model = model
    if world_info.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_sampler=StepBatchSampler(s.batch, world_info.world, world_info.rank, start_step, end_step),
        num_workers=s.workers,
        persistent_workers=False,
    )

    def save(step: int, name: str) -> None:
        meta = {"command": command, "step": step, "settings": resolved, "best_val_score": best}
        state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": _rng_state(),
                 "step": step, "best": best}
        save_checkpoint(out / name, model, meta=meta, train_state=state)

    bar = tqdm(total=s.steps, initial=start_step, desc=command, disable=not world_info.main, dynamic_ncols=True,
               file=sys.stderr)
    step = start_step
    t_log, n_log = time.perf_counter(), 0
    ddp_model.train()
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        alphas = batch["alpha"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.amp):
            loss, parts = loss_fn(ddp_model, {"image": images, "alpha": alphas})
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        n_log += images.shape[0] * world_info.world
        bar.update(1)
        if step % s.log_every == 0 or step == end_step:
            now = time.perf_counter()
            rate = n_log / max(now - t_log, 1e-9)
            t_log, n_log = now, 0
            bar.set_postfix(loss=f"{loss.item():.4f}", samples_s=f"{rate:.1f}")
            log({"kind": "train", "step": step, "loss": loss.item(), **parts, "lr": sched.get_last_lr()[0],
                 "samples_per_s": rate, "elapsed_s": now - t_start})
        if step % s.val_every == 0 or step == s.steps:
            if world_info.main:
                metrics = evaluate(model, val_set, device)
                improved = metrics["score"] < best
                best = min(best, metrics["score"])
                log({"kind": "val", "step": step, **metrics, "best": improved})
                if improved:
                    save(step, "best.pt")
                model.train()
            if world_info.world > 1:
                dist.barrier()
        if world_info.main and (step % s.ckpt_every == 0 or step == end_step):
            save(step, "last.pt")
    bar.close()

    param_digest = _param_digest(model)
    if world_info.world > 1:
        # DDP broadcasts BatchNorm buffers from rank 0 before each forward, so
        # after the last one every rank holds its own running statistics:
        # give all ranks rank 0's (the ones its checkpoints hold).
        for buf in model.buffers():
            dist.broadcast(buf, src=0)
    digest = state_digest(model)
    if world_info.world > 1:
        digests: list[str] = [""] * world_info.world
        dist.all_gather_object(digests, digest)
        param_digests: list[str] = [""] * world_info.world
        dist.all_gather_object(param_digests, param_digest)
        log({"kind": "ddp", "step": step, "rank_weight_sha256": digests, "rank_param_sha256": param_digests})
        dist.barrier()
    wall = time.perf_counter() - t_start
    log({"kind": "done" if step == s.steps else "stopped", "step": step, "wall_s": wall, "weight_sha256": digest})
    return TrainResult(out=out, steps=step, best_score=best, wall_s=wall, final_digest=digest)


def add_common_args(parser) -> None:
    """The flags of :class:`TrainSettings`."""
    d = TrainSettings()
    parser.add_argument("--data", default=d.data, help="data made on the fly: 'synth' (procedural faces), 'real' (real photos of the training faces with generated occluders), 'mix' (half of each), 'mix-empty' (mix with a tenth of face-free crops, alpha 0, so that a finder's false box gets no matte), 'empty' (face-free crops alone); or a dataset folder")
    parser.add_argument("--out", required=True, help="output folder: last.pt, best.pt, metrics.jsonl, config.json")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps (default {d.steps})")
    parser.add_argument("--batch", type=int, default=d.batch, help=f"batch per process (default {d.batch})")
    parser.add_argument("--size", type=int, default=d.size,
                        help=f"training crop size, a multiple of 32 (default {d.size}; the model's export size stays "
                             "its config size)")
    parser.add_argument("--render-size", type=int, default=d.render_size,
                        help=f"synth only: render faces at this size, then train on random --size crops, so the net "
                             f"learns the pixel scale it runs at (default {d.render_size}, the export size)")
    parser.add_argument("--lr", type=finite_float, default=d.lr, help=f"peak AdamW learning rate (default {d.lr})")
    parser.add_argument("--weight-decay", type=finite_float, default=d.weight_decay, help="AdamW weight decay")
    parser.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps, then cosine decay")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed for init, data order and augmentation")
    parser.add_argument("--val-data", default=None, help="validation folder (default: synth 'val' split, or the "
                        "last 10%% of a --data folder)")
    parser.add_argument("--val-count", type=int, default=d.val_count, help="validation samples (synth)")
    parser.add_argument("--val-every", type=int, default=d.val_every, help="validate every N steps")
    parser.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="write last.pt every N steps")
    parser.add_argument("--log-every", type=int, default=d.log_every, help="log to metrics.jsonl every N steps")
    parser.add_argument("--workers", type=int, default=d.workers, help="data-loading worker processes")
    parser.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"], help="default: CUDA if present")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast: on CUDA, or on a CPU whose /proc/cpuinfo lists avx512_bf16 or amx_bf16")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    parser.add_argument("--init", help="start from this checkpoint's weights instead of the architecture's own "
                        "start, e.g. the shipped facemat/weights/teacher.pt or student.pt; a smaller variant of "
                        "the same family (student for --arch student-wide) is grown into --arch, same matte at step 0")


def initial_model(settings: TrainSettings, kind: str, extra: dict[str, Any]) -> nn.Module:
    """The model a run starts from: ``settings.arch`` built fresh, or the weights of ``--init``.

    An ``--init`` of a smaller variant of the same family (``student`` for
    ``student-wide``) is grown into ``--arch`` so that it computes the same
    matte at step 0 (:mod:`facemat.models.grow`). Records the init checkpoint's
    sha256 in ``extra`` (the run's config), and the variant it grew from.

    Raises:
        ConfigError: ``--init`` holds another architecture that cannot grow into ``--arch``.
    """
    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.models import MatteNetConfig, build_model, model_class
    from facemat.models.grow import grow

    arch = settings.arch  # every command's settings subclass has one
    if settings.init is None:
        return build_model(arch)
    model, ckpt = load_checkpoint(settings.init, expect=kind)
    extra["init_sha256"] = file_sha256(settings.init)
    if ckpt["model"]["arch"] == arch:
        return model
    # Another variant: grow it into --arch when --arch is a wider or deeper net of the same family.
    cls = model_class(arch)
    if not (isinstance(model.config, MatteNetConfig) and cls is type(model)):
        raise ConfigError(f"--init: {settings.init} holds a {ckpt['model']['arch']!r}, not --arch {arch}, "
                          f"and a {type(model).__name__} does not grow into a {cls.__name__}")
    big = build_model(arch)
    try:
        grow(model, big)
    except ConfigError as exc:
        raise ConfigError(f"--init: {settings.init} ({ckpt['model']['arch']!r}) cannot start --arch {arch}: "
                          f"{exc}") from None
    extra["init_grown_from"] = ckpt["model"]["arch"]
    return big


def common_settings(args) -> dict[str, Any]:
    """Keyword arguments for :class:`TrainSettings` from parsed args."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)}


@torch.no_grad()
def validate(model: nn.Module, val_set: torch.utils.data.Dataset, device: torch.device, batch: int = 8) -> dict[str, float]:
    """Alpha quality on the validation set; ``score`` is the MSE (lower is better).

    Works for the student (alpha) and the teacher (alpha, b); for the teacher it
    also reports the Laplace NLL and the mean predicted ``b`` against the mean
    absolute error (a calibrated teacher has them close).
    """
    from facemat.losses import laplace_nll

    model.eval()
    sums: dict[str, float] = {}
    n_img = 0
    loader = torch.utils.data.DataLoader(val_set, batch_size=batch, shuffle=False, num_workers=0)
    for item in loader:
        x, y = item["image"].to(device), item["alpha"].to(device)
        out = model(x)
        alpha, b = (out if isinstance(out, tuple) else (out, None))
        err = (alpha - y).abs()
        per = {
            "l1": err.mean(dim=(1, 2, 3)),
            "mse": (err**2).mean(dim=(1, 2, 3)),
            "sad": err.sum(dim=(1, 2, 3)) / 1000.0,
            "iou": _iou(alpha >= 0.5, y >= 0.5),
        }
        if b is not None:
            per["nll"] = torch.stack([laplace_nll(alpha[i], b[i], y[i], beta=0.0) for i in range(len(x))])
            per["mean_b"] = b.mean(dim=(1, 2, 3))
        for k, v in per.items():
            sums[k] = sums.get(k, 0.0) + float(v.sum())
        n_img += len(x)
    metrics = {k: v / n_img for k, v in sums.items()}
    metrics["score"] = metrics["mse"]
    return metrics


def _iou(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    inter = (p & g).sum(dim=(1, 2, 3)).float()
    union = (p | g).sum(dim=(1, 2, 3)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
