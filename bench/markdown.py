"""A bench report as GitHub-flavoured Markdown (report.md)."""

from __future__ import annotations

from bench.format import DASH
from bench.tables import Span, Table, build_tables, facts, title

# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #

def md_escape(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> list[str]:
    out = [f"## {t.title}", ""]
    if t.caption:
        out += [t.caption, ""]
    out.append("| " + " | ".join(md_escape(h) for h in t.headers) + " |")
    out.append("|" + "|".join("---" if i < t.num_from else "---:" for i in range(len(t.headers))) + "|")
    for row in t.rows:
        cells: list[str] = []
        for c in row:
            if isinstance(c, Span):
                # Markdown has no colspan: the reason goes in the first figure cell, dashes after it.
                cells += [md_escape(c.text)] + [DASH] * (c.cols - 1)
            else:
                cells.append(md_escape(c))
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
    lines = [f"# {md_escape(title(report))}", ""]
    lines += [f"- **{label}:** {md_escape(text)}" for label, text in facts(report)]
    lines.append("")
    tables, remarks = build_tables(report)
    for t in tables:
        lines += _md_table(t)
    if report.get("baseline"):
        lines += ["## Quality beside the mesh-oval baseline", ""] + baseline_lines(report["baseline"]) + [""]
    if report.get("temporal"):
        lines += ["## Temporal stability on clips", ""] + temporal_lines(report["temporal"]) + [""]
    notes = list(report.get("notes") or []) + remarks
    if notes:
        lines += ["## Notes", ""] + [f"- {md_escape(n)}" for n in notes] + [""]
    return "\n".join(lines)


def baseline_lines(baseline: dict | None) -> list[str]:
    """Markdown table: IoU and SAD of each model and of ``mesh-oval`` (all / occluded / unoccluded images),
    with each model's IoU gain over the baseline; one line when the baseline could not run."""
    if not baseline:
        return []
    if "error" in baseline:
        return [md_escape(baseline["error"])]
    groups = ("all", "occluded", "unoccluded")
    base = baseline.get("mesh-oval", {})
    head = "| model | " + " | ".join(f"IoU {g} | gain {g}" for g in groups) + " | SAD all |"
    lines = [head, "|" + "---|" * (2 + 2 * len(groups))]
    for name, split in baseline.items():
        cells = []
        for g in groups:
            v, b = split.get(g), base.get(g)
            cells.append("-" if v is None else f"{v['iou']:.4f} ({v['images']})")
            cells.append("-" if v is None or b is None or name == "mesh-oval" else f"{v['iou'] - b['iou']:+.4f}")
        sad = split.get("all", {}).get("sad")
        lines.append(f"| {md_escape(name)} | " + " | ".join(cells) + f" | {'-' if sad is None else f'{sad:.4f}'} |")
    lines += ["", "mesh-oval: MediaPipe Face Mesh's 36 face-oval landmarks filled as a polygon, what a filter app "
              "already computes (no occlusion handling); (n) = images; gain = IoU minus mesh-oval's."]
    return lines


def temporal_lines(temporal: dict) -> list[str]:
    """Markdown table of the ``temporal`` section: flicker on still clips, dtSSD on moving clips and per-frame
    IoU of every model, raw and after the temporal filter; then each model's checks and the filter's latency."""
    d, f = temporal["data"], temporal["filter"]
    lines = [f"{d['clips']} clips ({d['frames']} frames) from {md_escape(d['path'])}; filter k_min {f['k_min']:g}, "
             f"d0 {f['d0']:g}, d1 {f['d1']:g}, radius {f['radius']}.", "",
             "| model | flicker (still) | dtSSD x100 (moving) | IoU per frame | SAD per frame |",
             "|---|---:|---:|---:|---:|"]

    def cell(row: dict, group: str, key: str, scale: float, fmt: str) -> str:
        v = row.get(group, {}).get(key)
        return "-" if v is None else format(v * scale, fmt)

    for name, row in temporal["rows"].items():
        lines.append(f"| {md_escape(name)} | {cell(row, 'still', 'flicker', 1, '.2f')} | "
                     f"{cell(row, 'moving', 'dtssd', 100, '.3f')} | {cell(row, 'all', 'iou', 1, '.4f')} | "
                     f"{cell(row, 'all', 'sad', 1, '.4f')} |")
    lines += ["", "flicker: mean per-pixel std over frames warped back onto frame 0, x 1000; ground-truth: what "
              "the warp-back alone leaves."]
    if temporal.get("baseline_error"):
        lines.append(md_escape(temporal["baseline_error"]))
    for aid, reason in (temporal.get("failed") or {}).items():
        lines.append(f"{md_escape(aid)}: not scored on clips ({md_escape(reason)})")
    lines.append("")
    for name, checks in temporal["checks"].items():
        lines += [f"- [{'met' if c['ok'] else 'NOT met'}] {md_escape(c['check'])}: {md_escape(c['measured'])}"
                  for c in checks]
    lat = temporal.get("latency_ms") or {}
    if "filter" in lat:
        mesh = lat.get("face_mesh")
        lines += ["", f"Filter latency: median {lat['filter']['median']:.3f} ms per frame"
                  + (f" beside Face Mesh's {mesh['median']:.3f} ms" if mesh else "")
                  + f" ({md_escape(temporal.get('latency_what', ''))})."]
    return lines
