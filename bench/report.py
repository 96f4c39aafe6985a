"""Bench reports: report.json (the data), report.md and one self-contained report.html.

The report dict is described in :mod:`bench.rows` (format ``facemat-bench/1``):
one row per artifact x threads (plus the FP32 reference and the peers), each with
latency, memory, file size and accuracy against ground truth and against the FP32
reference, overall and per evaluation band.

The pieces: :mod:`bench.format` (numbers), :mod:`bench.tables` (the table model
both renderings share), :mod:`bench.markdown`, :mod:`bench.report_html` and
:mod:`bench.scatter`; this module writes and reads the three files.

Non-finite floats in report.json: PSNR is ``inf`` for identical alphas and a
mean over an empty band is ``nan``. Python's ``json`` would write the tokens
``Infinity`` / ``NaN``, which are not JSON (browsers, jq and most other parsers
reject them). :func:`write_reports` therefore writes them as the strings
``"inf"``, ``"-inf"`` and ``"nan"``; :func:`load_report` turns those exact
strings back into floats wherever they are a value in an object (free text in
this schema never equals them), and also still accepts ``Infinity`` / ``NaN``
from older files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.format import special
from bench.markdown import render_markdown
from bench.report_html import render_html
from bench.rows import FORMAT
from facemat.errors import ConfigError
from facemat.io import write_json_atomic, write_text_atomic

__all__ = ["REPORT_NAMES", "load_report", "render_html", "render_markdown", "write_reports"]

REPORT_NAMES = ("report.json", "report.md", "report.html")
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #

def _json_safe(obj: Any) -> Any:
    """A copy with non-finite floats as "inf" / "-inf" / "nan", numpy scalars as Python ones, tuples as lists."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return special(obj)
    return obj


def _json_restore(obj: Any) -> Any:
    """Inverse of :func:`_json_safe` for the floats: object values "inf" / "-inf" / "nan" become floats."""
    if isinstance(obj, dict):
        return {k: (_NONFINITE[v] if isinstance(v, str) and v in _NONFINITE else _json_restore(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_restore(v) for v in obj]
    return obj


def write_reports(out_dir: str | Path, report: dict, pictures: Sequence[dict] | None = None) -> list[Path]:
    """Write report.json, report.md and report.html into ``out_dir``, each atomically.

    Args:
        out_dir: folder to write into (created if missing).
        report: a ``facemat-bench/1`` report dict; not modified.
        pictures: optional pictures for the HTML (see :func:`render_html`); not stored in the JSON.

    Returns:
        ``[report.json, report.md, report.html]`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    safe = _json_safe(report)
    json.dumps(safe, allow_nan=False)  # strict JSON or a bug: raises if a non-finite float slipped through
    # Render everything before writing anything, so a rendering bug leaves no mismatched set of files.
    md, page = render_markdown(report), render_html(report, pictures)
    paths = [out / name for name in REPORT_NAMES]
    write_json_atomic(paths[0], safe)
    write_text_atomic(paths[1], md)
    write_text_atomic(paths[2], page)
    return paths


def load_report(path_or_dir: str | Path) -> dict:
    """Read a bench report.json (or the report.json inside a folder).

    Args:
        path_or_dir: the report.json file, or the folder :func:`write_reports` wrote.

    Returns:
        The report dict, with "inf" / "-inf" / "nan" strings turned back into floats.

    Raises:
        ConfigError: the file is missing, not JSON, or not a ``facemat-bench/1`` report; the message names it.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ConfigError(f"{path}: no bench report there; pass a report.json or the folder the bench wrote "
                          f"(python -m bench.run writes report.json, report.md and report.html)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e.reason}); pass the bench's report.json") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); the file is "
                          f"truncated or not a bench report: rerun the bench to rewrite it") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path}: not a bench report (format {found!r}, expected {FORMAT!r})")
    if not isinstance(data.get("rows"), list):
        raise ConfigError(f"{path}: bench report without a 'rows' list; the file is incomplete: rerun the bench")
    return _json_restore(data)
