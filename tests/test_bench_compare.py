"""bench.compare: the side-by-side table over bench reports (measured and ingested)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.compare import CompareSettings, compare_reports, main, run_compare
from facemat.cli import run_main
from facemat.errors import ConfigError

LOGS = Path(__file__).parent / "data" / "bench_logs"


def _row(artifact: str, threads: int | None, median: float | None, mean: float | None = None,
         sad: float | None = None, status: str = "ok", source: str = "measured") -> dict:
    acc = {"gt": {"overall": {"sad": sad}}, "fp32": None} if sad is not None else None
    lat = None if median is None and mean is None else {"median": median, "p90": None, "min": None, "mean": mean,
                                                        "runs": 50, "warmup": 5}
    return {"artifact": artifact, "kind": "artifact", "threads": threads, "status": status, "source": source,
            "latency_ms": lat, "accuracy": acc}


def _report(folder: Path, device: str, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps({
        "format": "facemat-bench/1", "device": {"name": device, "description": f"{device} test device"},
        "date": "2026-11-26T10:00:00+00:00", "rows": rows}))
    return folder


def _table(md: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| artifact"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[(cells[0], cells[1])] = cells[2:]
    return rows


@pytest.fixture()
def reports(tmp_path: Path) -> list[Path]:
    laptop = _report(tmp_path / "laptop", "laptop-x86", [
        _row("tflite-int8", 1, 20.0, sad=4.0),
        _row("tflite-int8", 2, 12.0, sad=4.0),
        _row("coreml-fp16", None, None, status="not run here"),
    ])
    pixel = _report(tmp_path / "pixel8", "pixel8", [
        _row("tflite-int8", 1, 10.0, source="ingested:benchmark_model"),
        _row("executorch-int8", 4, None, mean=9.0, source="ingested:executor_runner"),
    ])
    return [laptop, pixel]


def test_table_medians_ratios_and_missing(reports):
    md = compare_reports(reports)
    t = _table(md)
    head = next(line for line in md.splitlines() if line.startswith("| artifact"))
    assert head == ("| artifact | threads | laptop-x86 median (ms) | laptop-x86 SAD | pixel8 median (ms) | pixel8 SAD "
                    "| pixel8 / laptop-x86 latency | pixel8 / laptop-x86 SAD |")
    assert t[("tflite-int8", "1")] == ["20.00", "4.000", "10.00", "-", "0.50", "-"]
    assert t[("tflite-int8", "2")] == ["12.00", "4.000", "-", "-", "-", "-"]
    assert t[("coreml-fp16", "default")] == ["-", "-", "-", "-", "-", "-"]      # not run: no figure
    assert t[("executorch-int8", "4")] == ["-", "-", "9.00†", "-", "-", "-"]    # mean only, marked
    assert "† mean, not median" in md


def test_ratio_only_between_same_statistic(tmp_path):
    a = _report(tmp_path / "a", "phone-a", [_row("x", 1, None, mean=10.0), _row("y", 1, 4.0)])
    b = _report(tmp_path / "b", "phone-b", [_row("x", 1, None, mean=15.0), _row("y", 1, None, mean=5.0)])
    t = _table(compare_reports([a, b]))
    assert t[("x", "1")] == ["10.00†", "15.00†", "1.50†"]
    assert t[("y", "1")] == ["4.00", "5.00†", "-"]        # median vs mean: no ratio


def test_duplicate_rows_prefer_measured_and_say_so(tmp_path):
    a = _report(tmp_path / "a", "laptop", [_row("x", 1, None, mean=7.0, source="ingested:benchmark_model"),
                                           _row("x", 1, 5.0)])
    md = compare_reports([a])
    assert _table(md)[("x", "1")] == ["5.00"]
    assert "Several rows for one artifact x threads" in md and "laptop: x x 1" in md


def test_same_device_name_columns_use_folders(tmp_path):
    a = _report(tmp_path / "run1", "pixel8", [_row("x", 1, 10.0)])
    b = _report(tmp_path / "run2", "pixel8", [_row("x", 1, 11.0)])
    md = compare_reports([a / "report.json", b])
    assert "pixel8 (run1) median (ms)" in md and "pixel8 (run2) / pixel8 (run1) latency" in md
    assert _table(md)[("x", "1")] == ["10.00", "11.00", "1.10"]


def test_cli_prints_and_writes(reports, tmp_path, capsys):
    out = tmp_path / "cmp" / "compare.md"
    assert run_main(main, [str(p) for p in reports] + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text() and printed.startswith("# Bench comparison")


def test_cli_missing_report_is_one_line(tmp_path, capsys):
    assert run_main(main, [str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing" in err and err.count("\n") == 1


def test_settings_validation(tmp_path):
    with pytest.raises(ConfigError, match="give one or more report folders"):
        CompareSettings(reports=())
    with pytest.raises(ConfigError, match="--out: .* is a folder"):
        CompareSettings(reports=("a",), out=str(tmp_path))


def test_compares_ingested_reports_end_to_end(tmp_path):
    """Two phones ingested with bench.ingest, then compared: the report files round-trip."""
    from bench.ingest import IngestSettings, run_ingest

    run_ingest(IngestSettings(format="benchmark_model", log=str(LOGS / "benchmark_model_litert.log"),
                              artifact="tflite-int8", device="pixel8", out=str(tmp_path / "pixel8")))
    run_ingest(IngestSettings(format="benchmark_model", log=str(LOGS / "benchmark_model_logcat_two_models.log"),
                              select="int8", artifact="tflite-int8", device="galaxy", out=str(tmp_path / "galaxy")))
    text = run_compare(CompareSettings(reports=(str(tmp_path / "pixel8"), str(tmp_path / "galaxy"))))
    # 14.782 ms (median=14782 us) vs 9.343 ms (median=9343 us), both 4 threads.
    assert _table(text)[("tflite-int8", "4")] == ["14.78", "9.34", f"{9.343 / 14.782:.2f}"]
