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
    notes = list(report.get("notes") or []) + remarks
    if notes:
        lines += ["## Notes", ""] + [f"- {md_escape(n)}" for n in notes] + [""]
    return "\n".join(lines)
