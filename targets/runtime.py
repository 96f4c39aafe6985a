"""Open an exported artifact in its own runtime, by its manifest entry.

The one public way for the bench, its worker and the demo to run an artifact:
they hand over the entry ``targets.export`` wrote, and get a
:class:`~targets.common.Runner` that takes ``1 x 3 x S x S`` float32 RGB in
[0, 1] and returns alpha ``1 x 1 x S x S`` whatever the artifact's layout.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from facemat.errors import CheckpointError
from targets.common import TARGETS, IOSpec, Runner


def open_artifact(entry: dict[str, Any], root: str | os.PathLike[str], threads: int | None = None) -> Runner:
    """Load the artifact of a manifest entry in its target's runtime.

    Args:
        entry: one value of ``manifest["artifacts"]`` (target, path, input, outputs).
        root: the folder holding the manifest; ``entry["path"]`` is relative to it.
        threads: CPU threads for the runtime, or None for its default.

    Raises:
        CheckpointError: the entry names a target this version does not export.
        targets.common.RuntimeUnavailable: this platform has no runtime for it
            (Core ML off macOS).
    """
    target = entry.get("target")
    if target not in TARGETS:
        raise CheckpointError(f"manifest entry {entry.get('id', entry.get('path'))!r}: unknown target {target!r} "
                              f"(known: {', '.join(TARGETS)})")
    module = importlib.import_module(f"targets.{target}")
    return module.load_runner(Path(root) / entry["path"], IOSpec.from_manifest(entry), threads=threads)
