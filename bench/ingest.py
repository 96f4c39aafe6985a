"""``python -m bench.ingest``: import latency measured on a phone by the platform's own tools into a bench report.

The bench cannot run a ``.pte`` on an Android phone or a ``.mlpackage`` on an
iPhone; the platforms' own tools can. This command reads what those tools print
and adds (or replaces) one row in ``OUT/report.json`` (a :class:`bench.rows.Row`),
then rewrites report.md and report.html.

Formats (``--format``): ``executor_runner``, ``benchmark_model``, ``xcode``; the
parsers and what each reads are in :mod:`bench.ingest_parsers`.

A row holds only what the log gives: figures it lacks are ``null`` and the
row's ``note`` says which and what the given ones are (e.g. benchmark_model's
``avg`` is recorded as ``mean``, never as ``median``). Per-run times are
summarised with the same definitions as ``bench.run`` (``bench.worker``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ingest_parsers import FORMATS, LATENCY_KEYS, Measurement, parse_log
from bench.rows import FORMAT, Row
from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError, DataError

# Manifest targets whose artifacts each tool can have run.
FORMAT_TARGETS = {"executor_runner": ("executorch",), "benchmark_model": ("tflite",),
                  "xcode": ("coreml", "executorch")}


# --------------------------------------------------------------------------- #
# The command
# --------------------------------------------------------------------------- #

@dataclass(frozen=True)
class IngestSettings:
    """Resolved settings of one ``bench.ingest``."""

    format: str
    log: str
    artifact: str
    device: str
    out: str
    threads: int | None = None
    manifest: str | None = None
    select: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not Path(self.log).is_file():
            raise ConfigError(f"--log: {self.log} is not a file")
        if not self.artifact:
            raise ConfigError("--artifact must name the artifact the log measured (its manifest id)")
        if not self.device or any(c in self.device for c in "/\\ "):
            raise ConfigError(f"--device must be a short name without spaces or slashes, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1 (leave it out for the runtime default), got {self.threads}")
        if self.manifest is not None and not Path(self.manifest).is_file():
            raise ConfigError(f"--manifest: {self.manifest} is not a file (run python -m targets.export first)")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _manifest_entry(s: IngestSettings, m: Measurement) -> dict[str, Any]:
    """The manifest entry of ``--artifact``, checked against the format and the size the log printed."""
    if s.manifest is None:
        return {}
    from targets.manifest import read_manifest

    entries = read_manifest(s.manifest)["artifacts"]
    if s.artifact not in entries:
        raise ConfigError(f"--artifact {s.artifact!r} is not in {s.manifest} (has: {', '.join(entries) or 'none'})")
    e = entries[s.artifact]
    if e.get("target") not in FORMAT_TARGETS[s.format]:
        raise ConfigError(f"--artifact {s.artifact} is a {e.get('target')} artifact; --format {s.format} logs come "
                          f"from {' or '.join(FORMAT_TARGETS[s.format])} runs")
    # benchmark_model prints the size with 6 significant digits.
    if m.model_mb is not None and e.get("bytes") and not math.isclose(m.model_mb, e["bytes"] / 1e6, rel_tol=1e-4,
                                                                      abs_tol=1e-5):
        raise DataError(f"{s.log}: the log's model ({m.model}) is {m.model_mb:g} MB but {s.artifact} is "
                        f"{e['bytes'] / 1e6:g} MB in {s.manifest}: this log measured another file")
    return e


def _threads(s: IngestSettings, m: Measurement) -> int | None:
    if s.threads is not None and m.threads is not None and s.threads != m.threads:
        raise DataError(f"{s.log}: the log says {m.threads} threads but --threads is {s.threads}; leave --threads "
                        f"out or fix it")
    return s.threads if s.threads is not None else m.threads


def _row_note(m: Measurement) -> str:
    missing = [k for k in LATENCY_KEYS if m.latency_ms.get(k) is None]
    parts = [m.statistic]
    if missing:
        parts.append(f"not in the log (null): {', '.join(missing)}")
    if m.peak_mem_mb is None:
        parts.append("peak RSS growth not in the log")
    return "; ".join(parts + m.notes)


def _rounded(obj: Any) -> Any:
    """Floats to 6 decimals (1 ns in ms): unit conversions leave binary noise such as 7.031000000000001."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return round(obj, 6) if isinstance(obj, float) and math.isfinite(obj) else obj


def build_row(s: IngestSettings, m: Measurement, entry: dict[str, Any], log_sha256: str) -> dict[str, Any]:
    """The report row (:class:`bench.rows.Row`, as a dict) for measurement ``m`` of ``--artifact``."""
    ingest = {"log": str(s.log), "log_sha256": log_sha256, "tool": m.tool, "model": m.model,
              "statistic": m.statistic, "select": s.select, "manifest": s.manifest, "extra": _rounded(m.extra),
              "ingested": _now()}
    return Row(s.artifact, "artifact", entry.get("target"), entry.get("precision"), entry.get("delegate"),
               m.runtime, _threads(s, m), "ok", None, f"ingested:{s.format}", s.device, entry.get("bytes"),
               _rounded(dict(m.latency_ms)), _rounded(m.peak_mem_mb), note=_row_note(m), ingest=ingest).to_dict()


def _new_report(s: IngestSettings) -> dict[str, Any]:
    return {"format": FORMAT,
            "device": {"name": s.device, "description": f"ingested from {s.format} logs"},
            "date": _now(), "manifest": s.manifest, "teacher": None, "rows": [], "notes": []}


def _row_key(r: dict[str, Any]) -> tuple:
    return (r.get("artifact"), r.get("device"), r.get("threads"), r.get("source"))


def run_ingest(s: IngestSettings) -> dict[str, Any]:
    """Parse ``s.log``, add or replace its row in ``s.out``/report.json, rewrite the reports; return the row."""
    from bench.report import load_report, write_reports

    raw = Path(s.log).read_bytes()
    m = parse_log(s.format, raw.decode("utf-8", errors="replace"), s.log, s.select)
    entry = _manifest_entry(s, m)
    row = build_row(s, m, entry, hashlib.sha256(raw).hexdigest())
    out = Path(s.out)
    report = load_report(out) if (out / "report.json").is_file() else _new_report(s)
    key = _row_key(row)
    report["rows"] = [r for r in report.get("rows", []) if _row_key(r) != key] + [row]
    # One note per ingested row, replaced on re-ingest, so report.md says what each figure is.
    tag = (f"Ingested {s.artifact} (threads {'default' if row['threads'] is None else row['threads']}) on "
           f"{s.device} from {s.format}:")
    notes = [n for n in report.get("notes") or [] if not n.startswith(tag)]
    report["notes"] = notes + [f"{tag} {Path(s.log).name}; {row['note']}"]
    write_reports(out, report, pictures=None)
    return row


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m bench.ingest",
        description="Import latency measured on a phone by the platform's own tool into a bench report: adds (or "
        "replaces) the row for (artifact, device, threads, source) in OUT/report.json and rewrites report.md and "
        "report.html. Formats: executor_runner (ExecuTorch executor_runner log, or the ExecuTorch Android benchmark "
        "app's benchmark_results.json), benchmark_model (LiteRT/TFLite benchmark_model log), xcode (xcodebuild test "
        "output of an XCTest measure block, or a facemat-xcode-coreml-report/1 JSON transcribing Xcode's Core ML "
        "Performance report). Figures the log lacks are left empty and the row's note says which.",
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="which tool wrote --log")
    parser.add_argument("--log", required=True, help="the tool's output (text log or JSON)")
    parser.add_argument("--artifact", required=True, help="artifact id the log measured (manifest id)")
    parser.add_argument("--device", required=True, help="short name of the phone, e.g. pixel8, iphone15pro")
    parser.add_argument("--out", help="report folder (default reports/DEVICE); report.json is created if absent")
    parser.add_argument("--threads", type=int, help="threads the run used, when the log does not say")
    parser.add_argument("--manifest", help="targets.export manifest: fills target, precision, file size and "
                        "refuses an --artifact it does not list (e.g. artifacts/manifest.json)")
    parser.add_argument("--select", help="for a log holding several runs: part of the model path (executor_runner, "
                        "benchmark_model), model name (benchmark app JSON) or test name (xcode) to take")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    s = IngestSettings(format=a.format, log=a.log, artifact=a.artifact, device=a.device,
                       out=a.out or f"reports/{a.device}", threads=a.threads, manifest=a.manifest, select=a.select)
    row = run_ingest(s)
    lat = row["latency_ms"]
    print(f"bench.ingest: {s.artifact} on {s.device} ({row['threads'] or 'default'} threads): median "
          f"{_fmt(lat['median'])} ms, mean {_fmt(lat['mean'])} ms, {lat['runs'] or '?'} runs -> {s.out}/report.json",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
