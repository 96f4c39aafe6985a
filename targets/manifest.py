"""``artifacts/manifest.json``: one entry per artifact, updated atomically.

Layout::

    {"format": "facemat-manifest/1", "updated": "<UTC ISO time>",
     "artifacts": {"<id>": {<entry>}, ...}}

An entry holds target, precision, delegate, the path relative to the manifest,
its sha256, the input and output specs, the crop contract its input follows
(:meth:`facemat.crop.CropSpec.to_manifest`), the source it was built from (with its
hash), converter and runtime versions, whether it ran here (and why not), the
parity figures measured at export, the checks done without running it, and the
export time. ``bench.run`` refuses an artifact whose file no longer matches its
sha256.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from facemat.errors import CheckpointError
from facemat.io import write_json_atomic
from facemat.safety import resolve_inside

FORMAT = "facemat-manifest/1"
NAME = "manifest.json"


def artifact_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder (``.mlpackage``): every file's relative path and bytes, in sorted order."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    if not files:
        raise CheckpointError(f"{p}: no such artifact (or an empty folder)")
    for f in files:
        if p.is_dir():
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def artifact_bytes(path: str | Path) -> int:
    """Size on disk of a file or a folder's files."""
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest; a missing file is an empty manifest."""
    p = Path(path)
    if not p.exists():
        return {"format": FORMAT, "updated": None, "artifacts": {}}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{p}: not valid JSON ({exc}); fix or remove it (artifacts are not touched)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{p}: not a FaceMat manifest (expected format {FORMAT!r}, found {found!r})")
    if not isinstance(data.get("artifacts"), dict):
        raise CheckpointError(f"{p}: a FaceMat manifest without its 'artifacts' table; re-run python -m targets.export")
    return data


def update_manifest(path: str | Path, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Add or replace ``entries`` (id -> entry), keep the others; atomic rewrite."""
    data = read_manifest(path)
    data["artifacts"].update(entries)
    data["artifacts"] = dict(sorted(data["artifacts"].items()))
    data["updated"] = now()
    write_json_atomic(path, data)
    return data


def verify_entry(root: str | Path, entry: dict[str, Any]) -> Path:
    """The artifact's path if it lies inside ``root`` and its bytes still match the manifest; else CheckpointError.

    The path is taken relative to the manifest's folder and must stay inside it
    (no absolute path, no ``..``, no symlink leaving it): the sha256 cannot vouch
    for it, since it comes from the same file.
    """
    p = resolve_inside(root, entry.get("path"), f"manifest entry {entry.get('id')!r}")
    if not p.exists():
        raise CheckpointError(f"{entry['id']}: {p} is missing (listed in the manifest)")
    got = artifact_sha256(p)
    if got != entry["sha256"]:
        raise CheckpointError(f"{entry['id']}: {p} has sha256 {got[:12]}, the manifest says {entry['sha256'][:12]}: "
                              "the file changed after export; re-export it")
    return p
