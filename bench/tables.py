"""The table model of a bench report, shared by the Markdown and HTML renderings.

Both renderings are built from the same :class:`Table` objects, so they show the
same numbers formatted the same way. A row whose figures are missing never shows
blanks: the cells say why (the row's ``reason``, "latency only (ingested:...)",
"n/a: peer has no alpha").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.format import DASH, GT_FMT, REF_FMT, fmt_fixed, fmt_ms, fmt_ratio, fmt_threads, is_num

MATTING_KEYS = ("sad", "mse", "grad", "conn", "iou")
REFERENCE_KEYS = ("max_abs", "mse", "psnr")
GT_HEADERS = ("SAD", "MSE", "Grad", "Conn", "IoU")
REF_HEADERS = ("max abs vs FP32", "MSE vs FP32", "PSNR vs FP32 (dB)")


# --------------------------------------------------------------------------- #
# Table model shared by the Markdown and HTML renderings
# --------------------------------------------------------------------------- #

@dataclass
class Span:
    """A cell standing in for ``cols`` figure cells: the reason the figures are absent."""

    text: str
    cols: int


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]          # each cell a str or a Span
    num_from: int                  # columns from this index on are numbers (right-aligned)
    caption: str = ""
    muted: list[bool] = field(default_factory=list)  # per row: not run / failed


def row_label(row: dict) -> str:
    return str(row.get("artifact", "?"))


def runtime_label(row: dict) -> str:
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
        return [Span(why_missing, len(keys))]
    return [fmts[k](values.get(k)) for k in keys]


def _accuracy_missing_reason(row: dict) -> str:
    if row.get("kind") == "peer":
        return "n/a: peer model has no alpha"
    source = row.get("source") or "measured"
    if source != "measured":
        return f"latency only ({source})"
    return "accuracy not measured"


def _main_table(report: dict) -> Table:
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
    table = Table("Latency, memory and accuracy (overall)", lead + figs, [], num_from=len(lead))
    for r in rows:
        cells: list[Any] = [row_label(r), runtime_label(r), fmt_threads(r.get("threads")), _status(r)]
        if show_source:
            cells.append(str(r.get("source") or "measured"))
        if show_device:
            cells.append(str(r.get("device") or DASH))
        size = fmt_fixed(r["file_bytes"] / 1e6, 2) if is_num(r.get("file_bytes")) else DASH
        ok = r.get("status") == "ok"
        if not ok:
            # File size is known without running; everything else is replaced by the reason.
            cells += [size, Span(_missing_reason(r), len(figs) - 1)]
        else:
            lat = r.get("latency_ms")
            if lat:
                cells += [size, fmt_ms(lat.get("median")), fmt_ms(lat.get("p90")), fmt_ms(lat.get("min"))]
            else:
                cells += [size, Span("not timed", 3)]
            cells.append(fmt_fixed(r.get("peak_mem_mb"), 1) if is_num(r.get("peak_mem_mb")) else DASH)
            acc = r.get("accuracy")
            if acc:
                cells += _block_cells((acc.get("gt") or {}).get("overall"), MATTING_KEYS, GT_FMT,
                                      "no ground-truth scores")
                cells += _block_cells(fp32_block(r, "overall"), REFERENCE_KEYS, REF_FMT, "no FP32 comparison")
            else:
                cells.append(Span(_accuracy_missing_reason(r), len(GT_HEADERS) + len(REF_HEADERS)))
        table.rows.append(cells)
        table.muted.append(not ok)
    table.caption = ("SAD, Grad and Conn are /1000 per image, MSE raw, IoU of alpha >= 0.5; means over images. "
                     "vs FP32: agreement with the FP32 reference's alpha (max abs is the worst image, PSNR the mean "
                     "over images that differ, inf when all are identical). MB = 10^6 bytes; peak mem is the growth of "
                     "the process's peak RSS while loading and running the artifact.")
    return table


def fp32_block(row: dict, band: str) -> dict | None:
    acc = row.get("accuracy") or {}
    block = (acc.get("fp32") or {}).get(band)
    if block is None and row.get("kind") == "reference" and (acc.get("gt") or {}).get(band):
        # The reference agrees with itself exactly; say so instead of leaving a gap.
        return {"max_abs": 0.0, "mse": 0.0, "psnr": math.inf}
    return block


def _band_table(report: dict, band: str, title: str) -> Table:
    """One row per artifact; thread counts that gave identical scores share a row."""
    figs = [*GT_HEADERS, *REF_HEADERS]
    table = Table(title, ["artifact", "threads", *figs], [], num_from=2)
    groups: dict[tuple, tuple[str, list[str], list[Any], bool]] = {}
    for r in report.get("rows", []):
        if r.get("kind") == "peer":
            continue
        ok = r.get("status") == "ok"
        acc = r.get("accuracy")
        if not ok:
            cells: list[Any] = [Span(_missing_reason(r), len(figs))]
        elif not acc:
            cells = [Span(_accuracy_missing_reason(r), len(figs))]
        else:
            gt = (acc.get("gt") or {}).get(band)
            cells = (_block_cells(gt, MATTING_KEYS, GT_FMT, "no ground-truth scores in this band")
                     + _block_cells(fp32_block(r, band), REFERENCE_KEYS, REF_FMT, "no FP32 comparison"))
        key = (row_label(r), tuple(repr(c) for c in cells))
        if key in groups:
            groups[key][1].append(fmt_threads(r.get("threads")))
        else:
            groups[key] = (row_label(r), [fmt_threads(r.get("threads"))], cells, not ok)
    for label, threads, cells, muted in groups.values():
        table.rows.append([label, ", ".join(threads), *cells])
        table.muted.append(muted)
    return table


def _ratio_table(report: dict) -> Table | None:
    ratios = report.get("ratios") or []
    if not ratios:
        return None
    table = Table("int8 vs fp32", ["runtime", "threads", "int8", "fp32", "latency int8/fp32", "SAD int8/fp32"],
                   [], num_from=4, caption="Ratios below 1 mean the int8 artifact is faster / closer to the ground truth.")
    for q in ratios:
        table.rows.append([str(q.get("runtime", DASH)), fmt_threads(q.get("threads")), str(q.get("int8", DASH)),
                           str(q.get("fp32", DASH)), fmt_ratio(q.get("latency_int8_over_fp32")),
                           fmt_ratio(q.get("sad_int8_over_fp32"))])
        table.muted.append(False)
    return table


def _find_row(report: dict, artifact: str | None, threads: Any) -> dict | None:
    for r in report.get("rows", []):
        if r.get("artifact") == artifact and r.get("threads") == threads:
            return r
    return None


def _peer_table(report: dict) -> Table | None:
    peers = report.get("peers") or []
    if not peers:
        return None
    table = Table("Peers", ["peer", "input", "threads", "student", "peer median (ms)", "student median (ms)",
                             "student/peer latency"], [], num_from=4,
                   caption="Below 1: the matting student runs faster than the peer model on this device.")
    for p in peers:
        student = _find_row(report, p.get("student"), p.get("threads"))
        s_lat = (student or {}).get("latency_ms") or {}
        table.rows.append([str(p.get("name", DASH)), str(p.get("input", DASH)), fmt_threads(p.get("threads")),
                           str(p.get("student", DASH)), fmt_ms((p.get("latency_ms") or {}).get("median")),
                           fmt_ms(s_lat.get("median")), fmt_ratio(p.get("student_over_peer"))])
        table.muted.append(False)
    return table


def _profile_tables(report: dict, top: int = 10) -> list[Table]:
    tables = []
    for r in report.get("rows", []):
        prof = r.get("profile") or {}
        ops = prof.get("top_ops") or []
        if not ops and not prof.get("note"):
            continue
        title = f"Profile: {row_label(r)}, threads {fmt_threads(r.get('threads'))} ({prof.get('tool') or 'no profiler'})"
        if is_num(prof.get("delegate_call_ms")):
            title += f"; delegate call {fmt_ms(prof['delegate_call_ms'])} ms"
        t = Table(title, ["op", "ms", "share of op time", "count"], [], num_from=1)
        if not ops:
            t.rows.append([str(prof["note"]), DASH, DASH, DASH])
            t.muted.append(True)
        for op in ops[:top]:
            share = op.get("share")
            t.rows.append([str(op.get("op", DASH)), fmt_ms(op.get("ms")),
                           f"{100 * share:.1f}%" if is_num(share) else DASH,
                           str(op["count"]) if is_num(op.get("count")) else DASH])
            t.muted.append(False)
        tables.append(t)
    return tables


def _has_teacher(report: dict) -> bool:
    return bool(report.get("teacher")) or any(
        ((r.get("accuracy") or {}).get("gt") or {}).get("uncertainty") for r in report.get("rows", []))


def build_tables(report: dict) -> tuple[list[Table], list[str]]:
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


def facts(report: dict) -> list[tuple[str, str]]:
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


def title(report: dict) -> str:
    return f"FaceMat bench: {(report.get('device') or {}).get('name', 'unknown device')}"
