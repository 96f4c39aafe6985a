"""Checkpoints: one self-describing file per model, saved atomically, loaded safely.

Layout (docs/design.md, "Stages and what they hand on")::

    {"format": "facemat-checkpoint/1",
     "model": {"arch": <registry name>, "config": <MatteNetConfig as dict>},
     "state_dict": {...},            # from the unwrapped model
     "meta": {"created": ..., "code_version": ..., "torch": ..., ...},
     "train_state": {...}}           # optional: optimizer, scheduler, RNG, step

Loading uses ``torch.load(weights_only=True)``: a file carrying a pickled
payload is refused, never executed. Weights load with ``strict=True``, after
checks that they are finite and that the stored model config builds exactly as
many weights as the file holds (measured on the meta device, so a hostile
config allocates nothing).
"""

from __future__ import annotations

import datetime
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facemat.errors import CheckpointError, ConfigError
from facemat.io import atomic_path, file_sha256  # noqa: F401 - file_sha256 re-exported for its callers
from facemat.safety import check_finite_weights

FORMAT = "facemat-checkpoint/1"


def unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def code_version() -> str:
    """Package version plus the git commit of this checkout, when there is one."""
    from facemat import __version__

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    meta: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Save ``model`` (unwrapped) atomically to ``path``.

    Args:
        path: destination ``.pt`` file; its folder is created.
        model: a model built by ``facemat.models.build_model`` (it carries
            ``.arch`` and ``.config``), possibly wrapped in DDP.
        meta: extra metadata (training settings, metrics); must be made of
            plain Python types and tensors.
        train_state: optional resume state (optimizer, scheduler, RNG, step).
    """
    model = unwrap(model)
    if not hasattr(model, "arch") or not hasattr(model, "config"):
        raise TypeError("model has no .arch/.config: build it with facemat.models.build_model")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "model": {"arch": model.arch, "config": model.config.to_dict()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "torch": str(torch.__version__),
            **(meta or {}),
        },
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and validate a checkpoint file's dict, without building the model.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a checkpoint,
            carries a pickled payload, or lacks the expected keys.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: file is empty (0 bytes), not a checkpoint")
    with open(p, "rb") as f:
        head = f.read(8)
    # torch.save writes a zip archive (PK..); very old files are a raw pickle (0x80 + protocol).
    if not head.startswith(b"PK\x03\x04") and not head.startswith(b"\x80"):
        raise CheckpointError(f"{p}: not a checkpoint: not a PyTorch file (it starts with {head!r})")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global it does not allow-list: the payload
        # is never executed. Keep the first line of torch's explanation.
        lines = [ln.strip() for ln in str(exc).splitlines() if "WeightsUnpickler error" in ln]
        reason = lines[0].replace("WeightsUnpickler error: ", "") if lines else "unpickling refused"
        raise CheckpointError(
            f"{p}: refused to load: it is not a plain weights file ({reason[:160]})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        # RuntimeError (bad zip), EOFError, KeyError (legacy format on text), ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.split(". ")[0]  # torch's first sentence says what failed; the rest is advice
        raise CheckpointError(f"{p}: not a readable checkpoint (truncated or corrupt?): {first[:200]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{p}: not a FaceMat checkpoint (expected format {FORMAT!r}, found {found!r})")
    for key in ("model", "state_dict", "meta"):
        if key not in ckpt:
            raise CheckpointError(f"{p}: checkpoint is missing its {key!r} entry")
    if not isinstance(ckpt["model"], dict) or not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{p}: checkpoint's 'model' or 'state_dict' entry is not a table")
    check_finite_weights(ckpt["state_dict"], p)
    return ckpt


def load_checkpoint(
    path: str | os.PathLike[str], expect: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model a checkpoint describes and load its weights (``strict=True``).

    Args:
        path: a ``.pt`` file written by :func:`save_checkpoint`.
        expect: ``"student"`` or ``"teacher"`` to refuse the other kind, or None.

    Returns:
        ``(model, checkpoint dict)``; the model is in eval mode, on CPU.

    Raises:
        CheckpointError: unreadable file, unknown architecture, wrong kind, or
            weights that do not match the architecture.
    """
    from facemat.models import build_model, list_models, model_kind

    ckpt = read_checkpoint(path)
    arch = ckpt["model"].get("arch")
    if arch not in list_models():
        raise CheckpointError(f"{path}: unknown architecture {arch!r}; this version knows {', '.join(list_models())}")
    kind = model_kind(arch)
    if expect is not None and kind != expect:
        raise CheckpointError(f"{path}: holds a {kind} ({arch!r}), but a {expect} checkpoint is needed here")
    try:
        with torch.device("meta"):  # sizes only: a hostile config allocates nothing here
            shape = build_model(arch, ckpt["model"].get("config") or {})
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from None
    want = sum(t.numel() for t in shape.state_dict().values())
    have = sum(t.numel() for t in ckpt["state_dict"].values() if isinstance(t, torch.Tensor))
    if want != have:
        raise CheckpointError(f"{path}: weights do not match architecture {arch!r}: its model config builds "
                              f"{want:,} weights but the file holds {have:,} (damaged or altered checkpoint)")
    model = build_model(arch, ckpt["model"].get("config") or {})
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"{path}: weights do not match architecture {arch!r}: {detail}") from None
    return model.eval(), ckpt
