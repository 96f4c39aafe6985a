"""``python -m bench.compare reports/A reports/B ...``: one latency table across devices and runs.

Rows are artifact x threads; for each report a median-latency column (and a
SAD column when any report scored accuracy), then the ratio of each later report
to the first (B/A: above 1 means slower, or worse SAD, than A). A cell the report
lacks is ``-``. Where a row has no median (``benchmark_model`` and the ExecuTorch
benchmark app print only a mean) its mean is shown marked ``†``, and a ratio is
given only between figures of the same kind. Prints Markdown; ``--out`` also
writes it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.format import fmt_ms, fmt_ratio, fmt_threads, is_num
from bench.markdown import md_escape
from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError
from facemat.safety import refuse_overwrite

MISSING = "-"
MEAN_MARK = "†"


@dataclass(frozen=True)
class CompareSettings:
    """Resolved settings of one ``bench.compare``."""

    reports: tuple[str, ...]
    out: str | None = None

    def __post_init__(self) -> None:
        if not self.reports:
            raise ConfigError("give one or more report folders (or report.json files) to compare")
        if self.out is not None and Path(self.out).is_dir():
            raise ConfigError(f"--out: {self.out} is a folder; give a file name such as compare.md")
        reports = [Path(r) / "report.json" if Path(r).is_dir() else Path(r) for r in self.reports]
        refuse_overwrite({"--out": self.out}, {"reports": reports})


@dataclass(frozen=True)
class _Cell:
    """One report's figure for one row: a latency (and which statistic) and a SAD."""

    ms: float | None = None
    kind: str | None = None        # "median" or "mean"
    sad: float | None = None


def _sad(row: dict[str, Any]) -> float | None:
    v = (((row.get("accuracy") or {}).get("gt") or {}).get("overall") or {}).get("sad")
    return float(v) if is_num(v) else None


def _cell(row: dict[str, Any]) -> _Cell:
    if row.get("status") != "ok":
        return _Cell()
    lat = row.get("latency_ms") or {}
    for kind in ("median", "mean"):
        if is_num(lat.get(kind)):
            return _Cell(float(lat[kind]), kind, _sad(row))
    return _Cell(sad=_sad(row))


def _rank(row: dict[str, Any]) -> tuple:
    """Which of several rows for one artifact x threads a report shows: ok, then measured here, then medians."""
    lat = row.get("latency_ms") or {}
    return (row.get("status") != "ok", (row.get("source") or "measured") != "measured", not is_num(lat.get("median")))


def _latency_text(c: _Cell) -> str:
    if c.ms is None:
        return MISSING
    return fmt_ms(c.ms) + (MEAN_MARK if c.kind == "mean" else "")


def _ratio(a: float | None, b: float | None, mark: str = "") -> str:
    if a is None or b is None or a == 0:
        return MISSING
    return fmt_ratio(b / a) + mark


def _labels(paths: Sequence[str], reports: Sequence[dict[str, Any]]) -> list[str]:
    """Column label per report: its device name, or the folder name where two share a device."""
    names = [str((r.get("device") or {}).get("name") or Path(p).name) for p, r in zip(paths, reports)]
    out = []
    for p, n in zip(paths, names):
        path = Path(p)
        folder = path.parent.name if path.name == "report.json" else path.name
        out.append(n if names.count(n) == 1 else f"{n} ({folder})")
    return [o if out.count(o) == 1 else f"{o} #{i + 1}" for i, o in enumerate(out)]


def compare_reports(paths: Sequence[str | Path]) -> str:
    """Markdown table comparing the bench reports at ``paths`` (folders or report.json files).

    Args:
        paths: report folders (as written by ``bench.run`` / ``bench.ingest``) or report.json files; the
            first is the baseline of the ratio columns.

    Returns:
        Markdown: the reports compared, the table (rows artifact x threads in first-seen order;
        per report the median latency in ms and, where any report has it, SAD; then later / first
        ratios), and footnotes.

    Raises:
        ConfigError: a path holds no bench report (from :func:`bench.report.load_report`).
    """
    from bench.report import load_report

    paths = [str(p) for p in paths]
    reports = [load_report(p) for p in paths]
    labels = _labels(paths, reports)
    keys: list[tuple[str, Any]] = []
    cells: list[dict[tuple[str, Any], _Cell]] = []
    doubled: list[str] = []
    for label, rep in zip(labels, reports):
        chosen: dict[tuple[str, Any], dict[str, Any]] = {}
        for row in rep.get("rows", []):
            key = (str(row.get("artifact")), row.get("threads"))
            if key not in keys:
                keys.append(key)
            if key in chosen:
                doubled.append(f"{label}: {key[0]} x {fmt_threads(key[1])}")
                if _rank(row) >= _rank(chosen[key]):
                    continue
            chosen[key] = row
        cells.append({k: _cell(r) for k, r in chosen.items()})
    with_sad = any(c.sad is not None for per in cells for c in per.values())

    head = ["artifact", "threads"]
    for label in labels:
        head.append(f"{label} median (ms)")
        if with_sad:
            head.append(f"{label} SAD")
    for label in labels[1:]:
        head.append(f"{label} / {labels[0]} latency")
        if with_sad:
            head.append(f"{label} / {labels[0]} SAD")
    lines = ["# Bench comparison", ""]
    for label, p, rep in zip(labels, paths, reports):
        dev = rep.get("device") or {}
        lines.append(f"- **{md_escape(label)}**: {md_escape(p)}; {md_escape(dev.get('description') or 'no description')}; "
                     f"{md_escape(rep.get('date') or 'undated')}")
    lines += ["", "| " + " | ".join(md_escape(h) for h in head) + " |",
              "|---|---|" + "---:|" * (len(head) - 2)]
    any_mean = False
    for key in keys:
        row = [md_escape(key[0]), fmt_threads(key[1])]
        per = [c.get(key, _Cell()) for c in cells]
        for c in per:
            row.append(_latency_text(c))
            any_mean |= c.kind == "mean"
            if with_sad:
                row.append(MISSING if c.sad is None else f"{c.sad:.3f}")
        base = per[0]
        for c in per[1:]:
            same = base.kind is not None and base.kind == c.kind
            row.append(_ratio(base.ms, c.ms, MEAN_MARK if base.kind == "mean" else "") if same else MISSING)
            if with_sad:
                row.append(_ratio(base.sad, c.sad))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    notes = [(f"Latency in ms; ratios are later report / first (above 1: slower, or higher SAD, than {labels[0]}). "
              f"{MISSING}: the report has no such row, the row did not run, or (ratios) the two figures are not "
              "the same statistic.")]
    if any_mean:
        notes.append(f"{MEAN_MARK} mean, not median: the tool that measured it prints no median (see the row's "
                     "note in that report.json).")
    if with_sad:
        notes.append("SAD: overall, /1000 per image, mean over the images; only bench.run scores accuracy, so "
                     "ingested phone rows have none.")
    if doubled:
        notes.append("Several rows for one artifact x threads (e.g. measured and ingested, or two devices); shown: "
                     "the ok one measured here first, else one with a median: " + "; ".join(doubled) + ".")
    lines += [f"- {md_escape(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def run_compare(s: CompareSettings) -> str:
    """Build the comparison; write it to ``s.out`` when given. Returns the Markdown."""
    text = compare_reports(s.reports)
    if s.out is not None:
        from facemat.io import write_text_atomic

        write_text_atomic(s.out, text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m bench.compare",
        description="Compare bench reports side by side (devices, runtimes, runs): one row per artifact x threads, "
        "per report the median latency (and SAD where scored), and the ratio of each later report to the first. "
        "Missing cells show '-'. A row whose tool prints no median (benchmark_model, the ExecuTorch benchmark app) "
        "shows its mean marked with a dagger, and ratios are given only between figures of the same kind. Prints "
        "Markdown.",
    )
    parser.add_argument("reports", nargs="+", help="report folders (reports/NAME) or report.json files; the first "
                        "is the baseline of the ratios")
    parser.add_argument("--out", help="also write the Markdown to this file")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    text = run_compare(CompareSettings(reports=tuple(a.reports), out=a.out))
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
