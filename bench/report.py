"""Bench reports: report.json (the data), report.md and one self-contained report.html.

The report dict is described in :mod:`bench.rows` (format ``facemat-bench/1``):
one row per artifact x threads (plus the FP32 reference and the peers), each with
latency, memory, file size and accuracy against ground truth and against the FP32
reference, overall and per evaluation band.

Both renderings are built from the same table model (:class:`_Table`), so the
Markdown and the HTML show the same numbers formatted the same way. A row whose
figures are missing never shows blanks: the cells say why (the row's ``reason``,
"latency only (ingested:...)", "n/a: peer has no alpha").

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

import base64
import html
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.rows import FORMAT
from facemat.errors import ConfigError
from facemat.io import write_json_atomic, write_text_atomic

REPORT_NAMES = ("report.json", "report.md", "report.html")

MATTING_KEYS = ("sad", "mse", "grad", "conn", "iou")
REFERENCE_KEYS = ("max_abs", "mse", "psnr")
GT_HEADERS = ("SAD", "MSE", "Grad", "Conn", "IoU")
REF_HEADERS = ("max abs vs FP32", "MSE vs FP32", "PSNR vs FP32 (dB)")

# |artifact - FP32| heat-maps use one fixed scale for every artifact and image, so colours compare across them.
ERROR_SCALE_MAX = 0.1
ERROR_COLORMAP = cv2.COLORMAP_INFERNO
UNCERTAINTY_COLORMAP = cv2.COLORMAP_VIRIDIS
THUMB_PX = 144  # displayed thumbnail width; the PNG keeps the picture's own resolution

# Okabe-Ito palette (colour-blind safe), assigned to runtimes in order of first appearance.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000")

DASH = "—"
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# --------------------------------------------------------------------------- #
# Number formatting
# --------------------------------------------------------------------------- #

def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _special(v: float) -> str | None:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def fmt_fixed(v: Any, digits: int) -> str:
    """``v`` with ``digits`` decimals; ``—`` for None, ``inf`` / ``nan`` spelled out."""
    if not _is_num(v):
        return DASH
    return _special(float(v)) or f"{float(v):.{digits}f}"


def fmt_sci(v: Any) -> str:
    """MSE-like values: 4 significant digits in scientific notation, exact ``0`` for zero."""
    if not _is_num(v):
        return DASH
    v = float(v)
    return _special(v) or ("0" if v == 0.0 else f"{v:.3e}")


def fmt_ms(v: Any) -> str:
    """Latency in ms: 3 decimals below 1 ms, 2 below 100 ms, else 1."""
    if not _is_num(v):
        return DASH
    v = float(v)
    return _special(v) or f"{v:.{3 if abs(v) < 1 else 2 if abs(v) < 100 else 1}f}"


def fmt_ratio(v: Any) -> str:
    return fmt_fixed(v, 2)


_GT_FMT: dict[str, Callable[[Any], str]] = {
    "sad": lambda v: fmt_fixed(v, 3), "mse": fmt_sci, "grad": lambda v: fmt_fixed(v, 3),
    "conn": lambda v: fmt_fixed(v, 3), "iou": lambda v: fmt_fixed(v, 4),
}
def fmt_max_abs(v: Any) -> str:
    """Largest |difference|: 4 decimals, scientific below 1e-3 so FP32-vs-FP32 rounding noise stays visible."""
    if not _is_num(v):
        return DASH
    v = float(v)
    return _special(v) or ("0" if v == 0.0 else f"{v:.2e}" if abs(v) < 1e-3 else f"{v:.4f}")


_REF_FMT: dict[str, Callable[[Any], str]] = {"max_abs": fmt_max_abs, "mse": fmt_sci, "psnr": lambda v: fmt_fixed(v, 1)}


def _threads(t: Any) -> str:
    return "default" if t is None else str(t)


# --------------------------------------------------------------------------- #
# Table model shared by the Markdown and HTML renderings
# --------------------------------------------------------------------------- #

@dataclass
class _Span:
    """A cell standing in for ``cols`` figure cells: the reason the figures are absent."""

    text: str
    cols: int


@dataclass
class _Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]          # each cell a str or a _Span
    num_from: int                  # columns from this index on are numbers (right-aligned)
    caption: str = ""
    muted: list[bool] = field(default_factory=list)  # per row: not run / failed


def _row_label(row: dict) -> str:
    return str(row.get("artifact", "?"))


def _runtime(row: dict) -> str:
    rt = str(row.get("runtime") or row.get("target") or DASH)
    return f"{rt} ({row['delegate']})" if row.get("delegate") else rt


def _status(row: dict) -> str:
    return str(row.get("status") or DASH)


def _missing_reason(row: dict) -> str:
    """Why a row has no figures (used for not-run and failed rows)."""
    reason = row.get("reason") or "no reason recorded"
    return f"{_status(row)}: {reason}"


def _block_cells(values: dict | None, keys: Sequence[str], fmts: dict[str, Callable[[Any], str]],
                 why_missing: str) -> list[Any]:
    if not values:
        return [_Span(why_missing, len(keys))]
    return [fmts[k](values.get(k)) for k in keys]


def _accuracy_missing_reason(row: dict) -> str:
    if row.get("kind") == "peer":
        return "n/a: peer model has no alpha"
    source = row.get("source") or "measured"
    if source != "measured":
        return f"latency only ({source})"
    return "accuracy not measured"


def _main_table(report: dict) -> _Table:
    rows = report.get("rows", [])
    dev_name = (report.get("device") or {}).get("name")
    show_device = any(r.get("device") not in (None, dev_name) for r in rows)
    show_source = any((r.get("source") or "measured") != "measured" for r in rows)
    lead = ["artifact", "runtime", "threads", "status"]
    if show_source:
        lead.append("source")
    if show_device:
        lead.append("device")
    figs = ["size (MB)", "median (ms)", "p90 (ms)", "min (ms)", "peak mem (MB)", *GT_HEADERS, *REF_HEADERS]
    table = _Table("Latency, memory and accuracy (overall)", lead + figs, [], num_from=len(lead))
    for r in rows:
        cells: list[Any] = [_row_label(r), _runtime(r), _threads(r.get("threads")), _status(r)]
        if show_source:
            cells.append(str(r.get("source") or "measured"))
        if show_device:
            cells.append(str(r.get("device") or DASH))
        size = fmt_fixed(r["file_bytes"] / 1e6, 2) if _is_num(r.get("file_bytes")) else DASH
        ok = r.get("status") == "ok"
        if not ok:
            # File size is known without running; everything else is replaced by the reason.
            cells += [size, _Span(_missing_reason(r), len(figs) - 1)]
        else:
            lat = r.get("latency_ms")
            if lat:
                cells += [size, fmt_ms(lat.get("median")), fmt_ms(lat.get("p90")), fmt_ms(lat.get("min"))]
            else:
                cells += [size, _Span("not timed", 3)]
            cells.append(fmt_fixed(r.get("peak_mem_mb"), 1) if _is_num(r.get("peak_mem_mb")) else DASH)
            acc = r.get("accuracy")
            if acc:
                cells += _block_cells((acc.get("gt") or {}).get("overall"), MATTING_KEYS, _GT_FMT,
                                      "no ground-truth scores")
                cells += _block_cells(_fp32_block(r, "overall"), REFERENCE_KEYS, _REF_FMT, "no FP32 comparison")
            else:
                cells.append(_Span(_accuracy_missing_reason(r), len(GT_HEADERS) + len(REF_HEADERS)))
        table.rows.append(cells)
        table.muted.append(not ok)
    table.caption = ("SAD, Grad and Conn are /1000 per image, MSE raw, IoU of alpha >= 0.5; means over images. "
                     "vs FP32: agreement with the FP32 reference's alpha (max abs is the worst image, PSNR the mean "
                     "over images that differ, inf when all are identical). MB = 10^6 bytes; peak mem is the growth of "
                     "the process's peak RSS while loading and running the artifact.")
    return table


def _fp32_block(row: dict, band: str) -> dict | None:
    acc = row.get("accuracy") or {}
    block = (acc.get("fp32") or {}).get(band)
    if block is None and row.get("kind") == "reference" and (acc.get("gt") or {}).get(band):
        # The reference agrees with itself exactly; say so instead of leaving a gap.
        return {"max_abs": 0.0, "mse": 0.0, "psnr": math.inf}
    return block


def _band_table(report: dict, band: str, title: str) -> _Table:
    """One row per artifact; thread counts that gave identical scores share a row."""
    figs = [*GT_HEADERS, *REF_HEADERS]
    table = _Table(title, ["artifact", "threads", *figs], [], num_from=2)
    groups: dict[tuple, tuple[str, list[str], list[Any], bool]] = {}
    for r in report.get("rows", []):
        if r.get("kind") == "peer":
            continue
        ok = r.get("status") == "ok"
        acc = r.get("accuracy")
        if not ok:
            cells: list[Any] = [_Span(_missing_reason(r), len(figs))]
        elif not acc:
            cells = [_Span(_accuracy_missing_reason(r), len(figs))]
        else:
            gt = (acc.get("gt") or {}).get(band)
            cells = (_block_cells(gt, MATTING_KEYS, _GT_FMT, "no ground-truth scores in this band")
                     + _block_cells(_fp32_block(r, band), REFERENCE_KEYS, _REF_FMT, "no FP32 comparison"))
        key = (_row_label(r), tuple(repr(c) for c in cells))
        if key in groups:
            groups[key][1].append(_threads(r.get("threads")))
        else:
            groups[key] = (_row_label(r), [_threads(r.get("threads"))], cells, not ok)
    for label, threads, cells, muted in groups.values():
        table.rows.append([label, ", ".join(threads), *cells])
        table.muted.append(muted)
    return table


def _ratio_table(report: dict) -> _Table | None:
    ratios = report.get("ratios") or []
    if not ratios:
        return None
    table = _Table("int8 vs fp32", ["runtime", "threads", "int8", "fp32", "latency int8/fp32", "SAD int8/fp32"],
                   [], num_from=4, caption="Ratios below 1 mean the int8 artifact is faster / closer to the ground truth.")
    for q in ratios:
        table.rows.append([str(q.get("runtime", DASH)), _threads(q.get("threads")), str(q.get("int8", DASH)),
                           str(q.get("fp32", DASH)), fmt_ratio(q.get("latency_int8_over_fp32")),
                           fmt_ratio(q.get("sad_int8_over_fp32"))])
        table.muted.append(False)
    return table


def _find_row(report: dict, artifact: str | None, threads: Any) -> dict | None:
    for r in report.get("rows", []):
        if r.get("artifact") == artifact and r.get("threads") == threads:
            return r
    return None


def _peer_table(report: dict) -> _Table | None:
    peers = report.get("peers") or []
    if not peers:
        return None
    table = _Table("Peers", ["peer", "input", "threads", "student", "peer median (ms)", "student median (ms)",
                             "student/peer latency"], [], num_from=4,
                   caption="Below 1: the matting student runs faster than the peer model on this device.")
    for p in peers:
        student = _find_row(report, p.get("student"), p.get("threads"))
        s_lat = (student or {}).get("latency_ms") or {}
        table.rows.append([str(p.get("name", DASH)), str(p.get("input", DASH)), _threads(p.get("threads")),
                           str(p.get("student", DASH)), fmt_ms((p.get("latency_ms") or {}).get("median")),
                           fmt_ms(s_lat.get("median")), fmt_ratio(p.get("student_over_peer"))])
        table.muted.append(False)
    return table


def _profile_tables(report: dict, top: int = 10) -> list[_Table]:
    tables = []
    for r in report.get("rows", []):
        prof = r.get("profile") or {}
        ops = prof.get("top_ops") or []
        if not ops and not prof.get("note"):
            continue
        title = f"Profile: {_row_label(r)}, threads {_threads(r.get('threads'))} ({prof.get('tool') or 'no profiler'})"
        if _is_num(prof.get("delegate_call_ms")):
            title += f"; delegate call {fmt_ms(prof['delegate_call_ms'])} ms"
        t = _Table(title, ["op", "ms", "share of op time", "count"], [], num_from=1)
        if not ops:
            t.rows.append([str(prof["note"]), DASH, DASH, DASH])
            t.muted.append(True)
        for op in ops[:top]:
            share = op.get("share")
            t.rows.append([str(op.get("op", DASH)), fmt_ms(op.get("ms")),
                           f"{100 * share:.1f}%" if _is_num(share) else DASH,
                           str(op["count"]) if _is_num(op.get("count")) else DASH])
            t.muted.append(False)
        tables.append(t)
    return tables


def _has_teacher(report: dict) -> bool:
    return bool(report.get("teacher")) or any(
        ((r.get("accuracy") or {}).get("gt") or {}).get("uncertainty") for r in report.get("rows", []))


def _tables(report: dict) -> tuple[list[_Table], list[str]]:
    """All tables in report order, and remarks about skipped ones."""
    tables = [_main_table(report), _band_table(report, "boundary", "Boundary band")]
    remarks = []
    if _has_teacher(report):
        tables.append(_band_table(report, "uncertainty", "Uncertainty band (top of the teacher's b)"))
    else:
        remarks.append("Uncertainty band: not scored (no teacher checkpoint given).")
    for t in (_ratio_table(report), _peer_table(report)):
        if t is not None:
            tables.append(t)
    tables += _profile_tables(report)
    return tables, remarks


# --------------------------------------------------------------------------- #
# Header facts
# --------------------------------------------------------------------------- #

def _short_sha(sha: Any) -> str:
    return f"sha256 {str(sha)[:12]}…" if sha else "no sha256"


def _facts(report: dict) -> list[tuple[str, str]]:
    """(label, text) lines shown above the tables."""
    dev = report.get("device") or {}
    facts = [("Device", f"{dev.get('name', '?')}: {dev.get('description', 'no description')}")]
    facts.append(("Date", str(report.get("date", "unknown"))))
    ref = report.get("reference") or {}
    if ref:
        text = (f"{ref.get('name', 'fp32-reference')}: {ref.get('runtime', '?')} on {ref.get('device', '?')}; "
                f"checkpoint {ref.get('checkpoint', '?')} ({_short_sha(ref.get('sha256'))})")
        facts.append(("Reference", text))
    teacher = report.get("teacher")
    facts.append(("Teacher", f"{teacher.get('checkpoint', '?')} ({_short_sha(teacher.get('sha256'))})" if teacher
                  else "none (uncertainty band not scored)"))
    data = report.get("data") or {}
    if data:
        what = "synthetic faces" if data.get("kind") == "synth" else f"folder {data.get('path')}"
        seed = f", seed {data['seed']}" if data.get("seed") is not None else ""
        size = data.get("size")
        facts.append(("Data", f"{what}, {data.get('images', '?')} images at {size}x{size}{seed}"))
    timing = report.get("timing") or {}
    if timing:
        facts.append(("Timing", f"median / p90 / min over {timing.get('runs', '?')} runs after "
                                f"{timing.get('warmup', '?')} warm-up runs; {timing.get('what', '')}".rstrip("; ")))
    if report.get("manifest"):
        facts.append(("Manifest", str(report["manifest"])))
    tools = report.get("tools") or {}
    if tools:
        facts.append(("Tools", ", ".join(f"{k} {v}" for k, v in sorted(tools.items()))))
    return facts


def _title(report: dict) -> str:
    return f"FaceMat bench: {(report.get('device') or {}).get('name', 'unknown device')}"


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #

def _md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(t: _Table) -> list[str]:
    out = [f"## {t.title}", ""]
    if t.caption:
        out += [t.caption, ""]
    out.append("| " + " | ".join(_md_escape(h) for h in t.headers) + " |")
    out.append("|" + "|".join("---" if i < t.num_from else "---:" for i in range(len(t.headers))) + "|")
    for row in t.rows:
        cells: list[str] = []
        for c in row:
            if isinstance(c, _Span):
                # Markdown has no colspan: the reason goes in the first figure cell, dashes after it.
                cells += [_md_escape(c.text)] + [DASH] * (c.cols - 1)
            else:
                cells.append(_md_escape(c))
        out.append("| " + " | ".join(cells) + " |")
    return out + [""]


def render_markdown(report: dict) -> str:
    """The report as GitHub-flavoured Markdown.

    Args:
        report: a ``facemat-bench/1`` report dict (see :mod:`bench.rows`).

    Returns:
        Markdown text: title, header facts, the overall table (one row per
        artifact x threads), the boundary and uncertainty band tables (the
        latter only with a teacher), int8/fp32 ratios, peers, profiles, notes.
    """
    lines = [f"# {_md_escape(_title(report))}", ""]
    lines += [f"- **{label}:** {_md_escape(text)}" for label, text in _facts(report)]
    lines.append("")
    tables, remarks = _tables(report)
    for t in tables:
        lines += _md_table(t)
    notes = list(report.get("notes") or []) + remarks
    if notes:
        lines += ["## Notes", ""] + [f"- {_md_escape(n)}" for n in notes] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- #
# HTML pieces
# --------------------------------------------------------------------------- #

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1800px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 6px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0}
th,td{border:1px solid #ccc;padding:3px 6px;white-space:nowrap}
th{background:#f0f0f0;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.reason{font-style:italic;color:#7a4b00;background:#fff8e6;white-space:normal}
tr.muted td{color:#777}
tr:nth-child(even) td{background-color:#fafafa}
p.caption{color:#555;font-size:12.5px;margin:2px 0 6px;max-width:1100px}
.pics{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;margin-bottom:14px}
figure{margin:0;width:THUMBpx}figure img{width:THUMBpx;height:auto;image-rendering:pixelated;
border:1px solid #ccc;display:block}
figcaption{font-size:11.5px;color:#333;word-break:break-word}
.bar{height:10px;width:THUMBpx;border:1px solid #ccc}
.legend{display:flex;gap:18px;flex-wrap:wrap;font-size:12px;margin:4px 0 10px}
.legend span{display:inline-flex;align-items:center;gap:6px}
""".replace("THUMB", str(THUMB_PX))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(t: _Table) -> str:
    out = [f"<h2>{_e(t.title)}</h2>"]
    if t.caption:
        out.append(f'<p class="caption">{_e(t.caption)}</p>')
    out.append('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in t.headers)
               + "</tr></thead><tbody>")
    for row, muted in zip(t.rows, t.muted or [False] * len(t.rows)):
        tds, col = [], 0
        for c in row:
            if isinstance(c, _Span):
                tds.append(f'<td class="reason" colspan="{c.cols}">{_e(c.text)}</td>')
                col += c.cols
            else:
                cls = ' class="num"' if col >= t.num_from else ""
                tds.append(f"<td{cls}>{_e(c)}</td>")
                col += 1
        tr = '<tr class="muted">' if muted else "<tr>"
        out.append(tr + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _png_data_uri(image: np.ndarray) -> str:
    """PNG data URI of a ``H x W`` gray or ``H x W x 3`` BGR uint8 image."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cv2.imencode failed for an image of shape {image.shape}")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _to_u8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly onto 0..255 (clipped; NaN as 0)."""
    x = np.nan_to_num(np.asarray(values, np.float64), nan=lo, posinf=hi, neginf=lo)
    scale = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.round(np.clip(scale, 0.0, 1.0) * 255).astype(np.uint8)


def _colormap_css(colormap: int, stops: int = 11) -> str:
    """CSS linear-gradient matching an OpenCV colour map (legend bar without another image)."""
    ramp = cv2.applyColorMap(np.linspace(0, 255, stops).round().astype(np.uint8).reshape(-1, 1), colormap)
    cols = [f"rgb({int(px[2])},{int(px[1])},{int(px[0])})" for px in ramp[:, 0, :]]  # BGR -> rgb()
    return "linear-gradient(to right," + ",".join(cols) + ")"


def _figure(uri: str, caption: str, bar_css: str | None = None) -> str:
    bar = f'<div class="bar" style="background:{bar_css}"></div>' if bar_css else ""
    return (f'<figure><img src="{uri}" alt="{_e(caption)}">{bar}'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _picture_block(pic: dict) -> str:
    """One row of thumbnails for one test image."""
    figs = []
    rgb = np.asarray(pic["input"])
    if rgb.dtype != np.uint8:
        rgb = _to_u8(rgb, 0.0, 1.0 if float(np.nanmax(rgb)) <= 1.0 else 255.0)
    figs.append(_figure(_png_data_uri(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), "input"))
    figs.append(_figure(_png_data_uri(_to_u8(pic["gt"], 0.0, 1.0)), "ground truth alpha"))
    fp32 = np.asarray(pic["fp32"], np.float64)
    figs.append(_figure(_png_data_uri(_to_u8(fp32, 0.0, 1.0)), "FP32 reference alpha"))
    b = pic.get("uncertainty")
    if b is not None:
        b = np.asarray(b, np.float64)
        lo, hi = float(np.nanmin(b)), float(np.nanmax(b))
        uri = _png_data_uri(cv2.applyColorMap(_to_u8(b, lo, hi), UNCERTAINTY_COLORMAP))
        figs.append(_figure(uri, f"teacher uncertainty b, viridis {lo:.3g} .. {hi:.3g} (this image)",
                            _colormap_css(UNCERTAINTY_COLORMAP)))
    for name, alpha in (pic.get("artifacts") or {}).items():
        alpha = np.asarray(alpha, np.float64)
        figs.append(_figure(_png_data_uri(_to_u8(alpha, 0.0, 1.0)), f"{name} alpha"))
        err = np.abs(alpha - fp32)
        heat = cv2.applyColorMap(_to_u8(err, 0.0, ERROR_SCALE_MAX), ERROR_COLORMAP)
        figs.append(_figure(_png_data_uri(heat), f"|{name} - FP32|, scale 0 .. {ERROR_SCALE_MAX:g}, max {float(np.nanmax(err)):.3g}",
                            _colormap_css(ERROR_COLORMAP)))
    return f"<h3>{_e(pic.get('id', 'image'))}</h3>\n<div class=\"pics\">" + "".join(figs) + "</div>"


def _pictures_section(pictures: Sequence[dict]) -> str:
    if not pictures:
        return ""
    intro = (f"Alphas are gray (black 0, white 1). Error heat-maps show |artifact - FP32 alpha| on a fixed inferno "
             f"scale 0 .. {ERROR_SCALE_MAX:g} (clipped above), the same for every artifact and image; each caption gives "
             f"the image's largest error. The teacher's uncertainty b uses viridis from the image's own minimum "
             f"to maximum.")
    return "<h2>Pictures</h2>\n" + f'<p class="caption">{_e(intro)}</p>\n' + "\n".join(
        _picture_block(p) for p in pictures)


# --------------------------------------------------------------------------- #
# Scatter: latency vs MSE against FP32, as inline SVG
# --------------------------------------------------------------------------- #

@dataclass
class _Axis:
    lo: float
    hi: float
    log: bool
    ticks: list[float]

    def frac(self, v: float) -> float:
        if self.log:
            return (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return (v - self.lo) / (self.hi - self.lo)


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _axis(values: Iterable[float], log: bool) -> _Axis:
    vals = [v for v in values if v > 0] if log else list(values)
    if log:
        # A quarter-decade of headroom so points never sit on the frame.
        lo = 10 ** math.floor(math.log10(min(vals)) - 0.25)
        hi = 10 ** math.ceil(math.log10(max(vals)) + 0.25)
        if hi <= lo:
            hi = lo * 10
        decades = round(math.log10(hi / lo))
        step = max(1, math.ceil(decades / 8))
        ticks = [lo * 10 ** k for k in range(0, decades + 1, step)]
        return _Axis(lo, hi, True, ticks)
    top = max(vals) if vals and max(vals) > 0 else 1.0
    step = _nice_step(top * 1.05)
    hi = step * math.ceil(top * 1.05 / step)
    return _Axis(0.0, hi, False, [step * k for k in range(round(hi / step) + 1)])


def _tick_label(v: float, log: bool) -> str:
    if log:
        return f"1e{round(math.log10(v))}" if v < 0.01 or v >= 1e4 else f"{v:g}"
    return f"{v:g}"


def _scatter_points(report: dict) -> tuple[list[dict], list[dict]]:
    """(points with latency and MSE vs FP32, latency-only rows drawn as vertical lines)."""
    points, lines = [], []
    for r in report.get("rows", []):
        lat = (r.get("latency_ms") or {}).get("median")
        if r.get("status") != "ok" or not _is_num(lat):
            continue
        block = _fp32_block(r, "overall")
        if block is None and r.get("kind") == "reference":
            block = {"mse": 0.0}  # the reference is the FP32 alpha: its error against itself is 0
        mse = (block or {}).get("mse")
        if _is_num(mse) and math.isfinite(float(mse)):
            points.append({"row": r, "x": float(lat), "y": float(mse)})
        else:
            lines.append({"row": r, "x": float(lat)})
    return points, lines


def _place_label(x: float, y: float, chars: int, placed: list[tuple[float, float, float, float]],
                 frame: tuple[float, float, float, float]) -> tuple[float, float, str]:
    """Greedy label placement next to a point at (x, y): the first candidate spot inside ``frame`` that
    overlaps no label placed so far (right, below right, above right, left, ...). Appends the chosen box."""
    w, h = 6.2 * chars, 12.0  # rough extent of 11 px sans-serif text
    candidates = [(8, 4, "start"), (8, 17, "start"), (8, -9, "start"), (-8, 4, "end"), (-8, 17, "end"),
                  (-8, -9, "end"), (8, 30, "start"), (8, -22, "start")]

    def box(dx: float, dy: float, anchor: str) -> tuple[float, float, float, float]:
        x0 = x + dx if anchor == "start" else x + dx - w
        return (x0, y + dy - h + 2, x0 + w, y + dy + 2)

    def free(b: tuple[float, float, float, float]) -> bool:
        inside = b[0] >= frame[0] and b[1] >= frame[1] and b[2] <= frame[2] and b[3] <= frame[3]
        return inside and not any(b[0] < q[2] and q[0] < b[2] and b[1] < q[3] and q[1] < b[3] for q in placed)

    for dx, dy, anchor in candidates:
        if free(box(dx, dy, anchor)):
            break
    else:
        dx, dy, anchor = candidates[0]  # crowded: overlap rather than drop the label
    placed.append(box(dx, dy, anchor))
    return x + dx, y + dy, anchor


def _runtime_key(row: dict) -> str:
    if row.get("kind") == "reference":
        return "reference"
    return str(row.get("target") or str(row.get("runtime") or "?").split(" ")[0])


def _scatter_svg(report: dict) -> tuple[str, str]:
    """(SVG markup, caption text); empty markup when nothing has both a latency and an error."""
    points, vlines = _scatter_points(report)
    if not points:
        return "", "No row has both a latency and an MSE against FP32: no scatter."
    xs = [p["x"] for p in points] + [v["x"] for v in vlines]
    ys = [p["y"] for p in points]
    pos_y = [y for y in ys if y > 0]
    log_y = bool(pos_y) and max(pos_y) / min(pos_y) > 100
    eps = None
    if log_y:
        # Log axes cannot show 0: exact agreement is drawn at eps, a decade below the smallest error.
        eps = 10 ** (math.floor(math.log10(min(pos_y))) - 1)
        for p in points:
            p["y_plot"] = max(p["y"], eps)
    else:
        for p in points:
            p["y_plot"] = p["y"]
    pos_x = [x for x in xs if x > 0]
    log_x = bool(pos_x) and len(pos_x) == len(xs) and max(pos_x) / min(pos_x) > 50
    ax_x = _axis(xs, log_x)
    ax_y = _axis([p["y_plot"] for p in points], log_y)

    width, height = 760, 420
    ml, mr, mt, mb = 78, 200, 16, 48
    pw, ph = width - ml - mr, height - mt - mb

    def px(v: float) -> float:
        return ml + pw * ax_x.frac(v)

    def py(v: float) -> float:
        return mt + ph * (1.0 - ax_y.frac(v))

    colours: dict[str, str] = {}
    for p in points + vlines:
        colours.setdefault(_runtime_key(p["row"]), PALETTE[len(colours) % len(PALETTE)])

    s = [(f'<svg class="scatter" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
          'aria-label="latency vs MSE against FP32" font-family="system-ui,sans-serif" font-size="11">')]
    s.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fcfcfc" stroke="#999"/>')
    for t in ax_x.ticks:
        x = px(t)
        s.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="#e4e4e4"/>')
        s.append(f'<text x="{x:.1f}" y="{mt + ph + 15}" text-anchor="middle">{_e(_tick_label(t, ax_x.log))}</text>')
    for t in ax_y.ticks:
        y = py(t)
        s.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        s.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(_tick_label(t, ax_y.log))}</text>')
    x_title = "median latency (ms)" + (", log scale" if ax_x.log else "")
    y_title = "MSE vs FP32 (overall)" + (", log scale" if ax_y.log else "")
    s.append(f'<text x="{ml + pw / 2:.1f}" y="{height - 10}" text-anchor="middle">{_e(x_title)}</text>')
    s.append(f'<text transform="translate(16 {mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle">{_e(y_title)}</text>')
    for v in vlines:
        x, c = px(v["x"]), colours[_runtime_key(v["row"])]
        label = f"{_row_label(v['row'])} @{_threads(v['row'].get('threads'))} (latency only)"
        s.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{mt + ph}" stroke="{c}" stroke-dasharray="5 4">'
                 f"<title>{_e(label)}: {_e(fmt_ms(v['x']))} ms</title></line>")
        # Written along the line, from the bottom up, so it cannot collide with point labels sideways.
        s.append(f'<text transform="translate({x - 4:.1f} {mt + ph - 6}) rotate(-90)" fill="{c}">{_e(label)}</text>')
    # Labels avoid each other and every marker.
    placed = [(px(p["x"]) - 6, py(p["y_plot"]) - 6, px(p["x"]) + 6, py(p["y_plot"]) + 6) for p in points]
    for p in points:
        r = p["row"]
        x, y, c = px(p["x"]), py(p["y_plot"]), colours[_runtime_key(r)]
        label = f"{_row_label(r)} @{_threads(r.get('threads'))}" + (" (MSE 0)" if p["y_plot"] != p["y"] else "")
        # Filled: one thread; hollow: several threads or the runtime's default.
        fill = c if r.get("threads") == 1 else "#fff"
        tip = f"{label}: {fmt_ms(p['x'])} ms, MSE {fmt_sci(p['y'])}"
        s.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{c}" stroke-width="2">'
                 f"<title>{_e(tip)}</title></circle>")
        tx, ty, anchor = _place_label(x, y, len(label), placed, (ml, mt, ml + pw, mt + ph))
        s.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}">{_e(label)}</text>')
    ly = mt + 4
    s.append(f'<text x="{ml + pw + 16}" y="{ly + 8}" font-weight="600">runtime</text>')
    for i, (name, c) in enumerate(colours.items()):
        yy = ly + 18 + 16 * i
        s.append(f'<rect x="{ml + pw + 16}" y="{yy}" width="10" height="10" fill="{c}"/>')
        s.append(f'<text x="{ml + pw + 32}" y="{yy + 9}">{_e(name)}</text>')
    s.append("</svg>")
    caption = ("One point per artifact x threads (filled: 1 thread, hollow: more threads or the runtime default); "
               "colour by runtime; dashed vertical lines are rows with a latency but no alpha to compare "
               "(peers, latency-only ingested results).")
    if eps is not None:
        caption += f" Log y axis: an MSE of exactly 0 (e.g. the FP32 reference itself) is drawn at {eps:.0e}."
    return "\n".join(s), caption


# --------------------------------------------------------------------------- #
# HTML document
# --------------------------------------------------------------------------- #

def render_html(report: dict, pictures: Sequence[dict] | None = None) -> str:
    """The report as one self-contained HTML page (inline CSS, PNG data URIs, inline SVG; no scripts, no URLs).

    Args:
        report: a ``facemat-bench/1`` report dict.
        pictures: optional test images to show, each ``{"id": str, "input": H x W x 3 uint8 RGB,
            "gt": H x W float [0, 1], "fp32": H x W float [0, 1], "uncertainty": H x W float (teacher b) or None,
            "artifacts": {artifact id: H x W float [0, 1]}}``.

    Returns:
        The HTML text: header facts, the same tables as :func:`render_markdown`, a latency-vs-error
        scatter, then per picture a row of thumbnails (input, ground truth, FP32 alpha, uncertainty map,
        and per artifact its alpha and an |artifact - FP32| heat-map on a fixed 0 .. ``ERROR_SCALE_MAX`` scale).
    """
    title = _title(report)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
             '<dl class="facts">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _facts(report)) + "</dl>"]
    tables, remarks = _tables(report)
    parts.append(_html_table(tables[0]))
    svg, caption = _scatter_svg(report)
    parts.append("<h2>Latency vs error</h2>")
    if svg:
        parts.append(f'<div class="scroll">{svg}</div>')
    parts.append(f'<p class="caption">{_e(caption)}</p>')
    parts += [_html_table(t) for t in tables[1:]]
    notes = list(report.get("notes") or []) + remarks
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append(_pictures_section(pictures or []))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


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
        return _special(obj)
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
