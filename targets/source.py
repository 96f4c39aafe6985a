"""Load what an artifact is built from: an FP32 student checkpoint or a quantize result."""

from __future__ import annotations

from pathlib import Path

from facemat.checkpoint import file_sha256, load_checkpoint
from facemat.errors import CheckpointError
from targets.common import Source


def from_checkpoint(path: str | Path) -> Source:
    """An FP32 student checkpoint (``python -m training.distill`` output)."""
    model, _ = load_checkpoint(path, expect="student")
    return Source(kind="checkpoint", path=Path(path), sha256=file_sha256(path), model=model.eval(),
                  size=model.config.size)


def from_quantized(folder: str | Path, checkpoint: str | Path | None = None) -> Source:
    """A ``quantize.qat`` / ``quantize.ptq`` output folder.

    The FP32 reference is the float checkpoint the folder's ``recipe.json`` names,
    or ``checkpoint`` when given (it must have the recorded sha256).
    """
    from quantize.core import load_quantized

    q = load_quantized(folder)
    ckpt = Path(checkpoint) if checkpoint is not None else Path(q.recipe.get("source_checkpoint", ""))
    if not ckpt.is_file():
        raise CheckpointError(f"{q.path.parent}: its FP32 source checkpoint {str(ckpt)!r} is not a file; "
                              "pass it with --checkpoint")
    want = q.recipe.get("source_checkpoint_sha256")
    got = file_sha256(ckpt)
    if want and got != want:
        raise CheckpointError(f"{ckpt}: sha256 {got[:12]} differs from the {want[:12]} that "
                              f"{q.path.parent / 'recipe.json'} recorded; it is not the model this was quantized from")
    model, _ = load_checkpoint(ckpt, expect="student")
    size = int(q.recipe.get("input_size", model.config.size))
    return Source(kind="quantized", path=q.path, sha256=file_sha256(q.path), model=model.eval(), size=size,
                  program=q.program, recipe=q.recipe["recipe"], recipe_info=q.recipe)
