"""Atomic file writes (a reader never sees a half-written output), JSON I/O and the metrics log.

Each writer writes to a temporary file in the destination folder, flushes and
fsyncs it, then renames it over the destination (``os.replace`` is atomic on
POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once, on first write; reading it means setting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    The writer must close the file before the block ends. ``suffix`` ends the
    temporary name, for writers that check the extension (``torch.export.save``
    wants ``.pt2``).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result is an ordinary file
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if exc.filename is None or str(exc.filename) == str(tmp_path):
            # A failed write (disk full, file too large) names no file, or the temporary one: name the output.
            raise OSError(exc.errno, exc.strerror or str(exc), str(dest)) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_writable_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Create folder ``path`` if needed and prove a file can be written in it.

    Raises:
        ConfigError: ``path`` is a file, or the folder cannot be created or
            written (read-only, no permission, no space), naming ``flag``.
    """
    from facemat.errors import ConfigError

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag}: {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot write to {folder}: {exc.strerror or exc}") from None
    return folder


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike[str], fix: str) -> Any:
    """Parse the JSON file ``path``.

    Raises:
        DataError: the file cannot be read or is not valid JSON, naming it and ``fix`` (what to do).
    """
    from facemat.errors import DataError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:120]
        raise DataError(f"{path}: not readable JSON ({reason}); {fix}") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of an append-only JSON-lines log; a torn last line (a crash mid-append) is dropped.

    Raises:
        DataError: a line other than the last is not a JSON object (the file is damaged, not torn).
    """
    from facemat.errors import DataError

    lines = [ln for ln in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if i == len(lines) - 1:
                break  # torn by a crash while appending: the step is logged again after resume
            raise DataError(f"{path}: line {i + 1} is not a JSON record; the log is damaged: "
                            "remove that line (or the file) and resume again")
        records.append(record)
    return records


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that always writes valid JSON: non-finite floats become ``null`` (see :func:`json_safe`)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted, valid JSON to ``path`` atomically (NaN and inf as ``null``)."""
    write_text_atomic(path, json_text(obj, indent=2, sort_keys=True) + "\n")


class MetricsLog:
    """``metrics.jsonl`` appender (enabled on rank 0 only)."""

    def __init__(self, path: str | os.PathLike[str], enabled: bool, keep_until: int | None):
        self.path, self.enabled = Path(path), enabled
        if enabled and keep_until is not None and self.path.exists():
            # Drop records written after the checkpoint we resume from: they
            # will be produced again, identically.
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= keep_until]
            write_text_atomic(self.path, "".join(json_text(r, sort_keys=True) + "\n" for r in kept))

    def __call__(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json_text(record, sort_keys=True) + "\n")
