"""bench.ingest: parsers on sample logs in each tool's published format, and the command end to end.

The sample logs under tests/data/bench_logs/ reproduce each tool's output format
(see the parser docstrings for the source versions); the expected figures below
are worked out by hand from the numbers printed in them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.ingest import IngestSettings, main, run_ingest
from bench.ingest_parsers import parse_benchmark_model, parse_executor_runner, parse_log, parse_xcode
from facemat.cli import run_main
from facemat.errors import ConfigError, DataError

LOGS = Path(__file__).parent / "data" / "bench_logs"


def _read(name: str) -> str:
    return (LOGS / name).read_text()


# --------------------------------------------------------------------------- #
# executor_runner
# --------------------------------------------------------------------------- #

def test_executor_runner_per_iteration_lines():
    m = parse_executor_runner(_read("executor_runner_posix.log"), "er.log")
    lat = m.latency_ms
    # 10 printed iterations; sorted middle pair 11.777065, 11.932156; p90 = 9th of 10 (nearest rank).
    assert lat["median"] == pytest.approx((11.777065 + 11.932156) / 2)
    assert lat["p90"] == pytest.approx(12.184365)
    assert lat["min"] == pytest.approx(11.334857)
    assert lat["mean"] == pytest.approx(121.157889 / 10, abs=1e-6)
    assert (lat["runs"], lat["warmup"]) == (10, 0)
    assert m.threads == 4
    assert m.model == "/data/local/tmp/facemat/facemat_xnnpack_int8.pte"
    assert m.extra["load_ms"] == pytest.approx(28.413562)


def test_executor_runner_total_only_via_logcat():
    m = parse_executor_runner(_read("executor_runner_logcat.log"), "er.log")
    assert m.latency_ms["mean"] == pytest.approx(303.078596 / 20)
    assert m.latency_ms["runs"] == 20
    assert m.latency_ms["median"] is None and m.latency_ms["p90"] is None and m.latency_ms["min"] is None
    assert "median, p90 and min are unknown" in m.statistic
    assert m.threads == 2


def test_executorch_benchmark_app_json():
    text = _read("executorch_benchmark_results.json")
    with pytest.raises(DataError, match=r"facemat_xnnpack_int8, facemat_xnnpack_fp32.*--select"):
        parse_executor_runner(text, "results.json")
    m = parse_executor_runner(text, "results.json", select="int8")
    assert m.latency_ms["mean"] == pytest.approx(9.412861)
    assert m.latency_ms["median"] is None and m.latency_ms["runs"] is None
    assert m.extra["trimmean_ms"] == pytest.approx(9.287744)
    assert m.extra["device_info"]["arch"] == "Pixel 8"


def test_executorch_benchmark_app_load_failure():
    data = json.loads(_read("executorch_benchmark_results.json"))
    for d in data:
        if d["metric"] == "load_status":
            d["actualValue"] = 34.0
    with pytest.raises(DataError, match=r"results.json: .*load_status 34: the app could not load it"):
        parse_executor_runner(json.dumps(data), "results.json", select="fp32")


@pytest.mark.parametrize("log, message", [
    ("I 00:00:00.1 executorch:executor_runner.cpp:928] Execution of method forward failed with status 0x12\n",
     r"x.log: not a usable executor_runner log: execution of method forward failed with status 0x12"),
    ("I 00:00:00.000764 executorch:executor_runner.cpp:180] Model executed successfully.\n",
     r"x.log: not a usable executor_runner log: .*prints no time"),
    ("hello\n", r"x.log: not a usable executor_runner log: no 'Model executed successfully N time\(s\) in T ms.' line"),
])
def test_executor_runner_bad_logs(log, message):
    with pytest.raises(DataError, match=message):
        parse_executor_runner(log, "x.log")


# --------------------------------------------------------------------------- #
# benchmark_model
# --------------------------------------------------------------------------- #

def test_benchmark_model_litert_with_percentiles():
    m = parse_benchmark_model(_read("benchmark_model_litert.log"), "b.log")
    lat = m.latency_ms
    assert lat["median"] == pytest.approx(14.782)      # median=14782 us
    assert lat["min"] == pytest.approx(14.184)
    assert lat["mean"] == pytest.approx(14.7921)       # Inference (avg): 14792.1 us
    assert lat["p90"] is None                          # benchmark_model prints p5/p95, no p90
    assert (lat["runs"], lat["warmup"]) == (50, 33)
    assert m.threads == 4
    assert m.peak_mem_mb == pytest.approx(21.4102)
    assert m.model_mb == pytest.approx(2.34568)
    assert m.extra["p95_ms"] == pytest.approx(15.159)
    assert m.extra["mem_peak_monitored_mb"] == pytest.approx(27.8203)
    assert m.extra["delegated"].startswith("97 of 97 nodes to TfLiteXNNPackDelegate")


def test_benchmark_model_tf23_without_percentiles():
    m = parse_benchmark_model(_read("benchmark_model_tf23.log"), "b.log")
    lat = m.latency_ms
    assert lat["median"] is None and lat["p90"] is None
    assert lat["mean"] == pytest.approx(33.1835)
    assert lat["min"] == pytest.approx(32.173)
    assert (lat["runs"], lat["warmup"]) == (50, 15)
    assert m.threads == 1
    assert m.peak_mem_mb == pytest.approx(12.8672)    # the old "Peak memory footprint (MB): ... overall=" line
    assert "prints no median" in m.statistic


def test_benchmark_model_logcat_two_runs_needs_select():
    text = _read("benchmark_model_logcat_two_models.log")
    with pytest.raises(DataError, match=r"2 benchmark runs .*facemat_int8.tflite, .*facemat_fp32.tflite.*--select"):
        parse_benchmark_model(text, "b.log")
    with pytest.raises(DataError, match=r"--select 'facemat' matches 2 of its 2"):
        parse_benchmark_model(text, "b.log", select="facemat")
    m = parse_benchmark_model(text, "b.log", select="fp32")
    assert m.latency_ms["median"] == pytest.approx(14.95)
    assert (m.latency_ms["runs"], m.latency_ms["warmup"]) == (25, 3)
    assert m.peak_mem_mb == pytest.approx(73.4102)     # this run's memory line, not the other's


def test_benchmark_model_all_same_and_no_warmup():
    log = ("INFO: count=0\n\nINFO: count=5 curr=2000(all same) p5=2000 median=2000 p95=2000\n\n"
           "INFO: Inference timings in us: Init: 10, First inference: -nan, Warmup (avg): -nan, "
           "Inference (avg): 2000\n")
    m = parse_benchmark_model(log, "b.log")
    assert m.latency_ms == {"median": 2.0, "p90": None, "min": 2.0, "mean": 2.0, "runs": 5, "warmup": 0}
    assert m.threads is None


def test_benchmark_model_ignores_op_profiling_stats():
    log = _read("benchmark_model_tf23.log") + ("Profiling Info for Benchmark Initialization:\n"
                                                "Timings (microseconds): count=1 curr=1234\n"
                                                "Memory (bytes): count=0\n")
    assert parse_benchmark_model(log, "b.log").latency_ms["runs"] == 50


@pytest.mark.parametrize("log, message", [
    ("INFO: Loaded model x.tflite\nERROR: Node number 3 (CONV_2D) failed to invoke.\nERROR: Benchmarking failed.\n",
     r"b.log: not a usable benchmark_model log: no 'Inference timings in us: ...' line \('Benchmarking failed.'\)"),
    ("", r"b.log: not a usable benchmark_model log: no 'Inference timings in us: ...' line \(the run did not finish"),
    (("INFO: count=0\n\nINFO: count=0\n\nINFO: Inference timings in us: Init: 5, First inference: -nan, "
      "Warmup (avg): -nan, Inference (avg): -nan\n"), r"'Inference \(avg\): nan': no timed runs \(a --dry_run"),
])
def test_benchmark_model_bad_logs(log, message):
    with pytest.raises(DataError, match=message):
        parse_benchmark_model(log, "b.log")


# --------------------------------------------------------------------------- #
# xcode
# --------------------------------------------------------------------------- #

def test_xcode_xctest_measure():
    text = _read("xcode_xctest_executorch.log")
    with pytest.raises(DataError, match=r"2 measured tests .*test_forward_.*test_load_.*--select"):
        parse_xcode(text, "x.log")
    m = parse_xcode(text, "x.log", select="forward")
    lat = m.latency_ms
    assert (lat["runs"], lat["warmup"]) == (20, 1)   # iterationCount 20, plus 1 dropped (Apple docs)
    assert lat["min"] == pytest.approx(6.869)
    assert lat["median"] == pytest.approx((7.028 + 7.034) / 2)
    assert lat["p90"] == pytest.approx(7.151)
    assert m.peak_mem_mb is None                      # XCTest's peak is absolute, not growth
    assert m.extra["memory_peak_physical_mb"] == pytest.approx(61.47328)


def test_xcode_legacy_measure_block():
    log = ("Test Case '-[FaceMatTests.LatencyTests testPredict]' measured [Time, seconds] average: 0.003, relative "
           "standard deviation: 4.011%, values: [0.003210, 0.002950, 0.003010, 0.002990, 0.003050], "
           "performanceMetricID:com.apple.XCTPerformanceMetric_WallClockTime, baselineName: \"\", baselineAverage: , "
           "maxPercentRegression: 10.000%, maxPercentRelativeStandardDeviation: 10.000%, maxRegression: 0.100, "
           "maxStandardDeviation: 0.100\n")
    m = parse_xcode(log, "x.log")
    assert m.latency_ms["median"] == pytest.approx(3.01) and m.latency_ms["min"] == pytest.approx(2.95)
    assert m.latency_ms["runs"] == 5 and m.latency_ms["warmup"] is None
    assert any("legacy measure" in n for n in m.notes)


def test_xcode_failed_test_is_refused():
    text = _read("xcode_xctest_executorch.log").replace(
        "test_forward_facemat_xnnpack_int8_pte_iOS_18_2_iPhone16_1]' passed",
        "test_forward_facemat_xnnpack_int8_pte_iOS_18_2_iPhone16_1]' failed")
    with pytest.raises(DataError, match=r"test GenericTests test_forward_.* failed"):
        parse_xcode(text, "x.log", select="forward")


def test_xcode_transcribed_coreml_report():
    m = parse_xcode(_read("xcode_coreml_report.json"), "r.json")
    assert m.latency_ms["median"] == pytest.approx(1.84)
    assert m.latency_ms["p90"] is None and m.latency_ms["runs"] is None
    assert "transcribed by hand" in m.statistic
    with pytest.raises(DataError, match=r"r.json: .*format 'something', expected 'facemat-xcode-coreml-report/1'"):
        parse_xcode('{"format": "something"}', "r.json")


def test_xcode_bad_log():
    with pytest.raises(DataError, match=r"x.log: not a usable xcode \(XCTest measure\) log: no \"Test Case"):
        parse_xcode("** TEST SUCCEEDED **\n", "x.log")


def test_wrong_format_for_the_log_names_file_and_format():
    with pytest.raises(DataError, match=r"er.log: not a usable benchmark_model log"):
        parse_log("benchmark_model", _read("executor_runner_posix.log"), "er.log")


# --------------------------------------------------------------------------- #
# The command
# --------------------------------------------------------------------------- #

@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    entries = {
        "tflite-int8": {"id": "tflite-int8", "target": "tflite", "precision": "int8", "delegate": None,
                        "path": "facemat_int8.tflite", "bytes": 2_345_678},
        "executorch-xnnpack-int8": {"id": "executorch-xnnpack-int8", "target": "executorch", "precision": "int8",
                                    "delegate": "xnnpack", "path": "facemat.pte", "bytes": 3_000_000},
    }
    p = tmp_path / "artifacts" / "manifest.json"
    p.parent.mkdir()
    p.write_text(json.dumps({"format": "facemat-manifest/1", "updated": None, "artifacts": entries}))
    return p


def _args(tmp_path: Path, manifest: Path, *extra: str, log: str = "benchmark_model_litert.log",
          fmt: str = "benchmark_model", artifact: str = "tflite-int8") -> list[str]:
    return ["--format", fmt, "--log", str(LOGS / log), "--artifact", artifact, "--device", "pixel8",
            "--out", str(tmp_path / "reports" / "pixel8"), "--manifest", str(manifest), *extra]


def test_cli_creates_report_and_replaces_row(tmp_path, manifest):
    out = tmp_path / "reports" / "pixel8"
    assert run_main(main, _args(tmp_path, manifest)) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "facemat-bench/1"
    assert report["device"] == {"name": "pixel8", "description": "ingested from benchmark_model logs"}
    [row] = report["rows"]
    assert row["artifact"] == "tflite-int8" and row["kind"] == "artifact" and row["status"] == "ok"
    assert (row["target"], row["precision"], row["file_bytes"]) == ("tflite", "int8", 2_345_678)
    assert row["source"] == "ingested:benchmark_model" and row["device"] == "pixel8" and row["threads"] == 4
    assert row["latency_ms"] == {"median": 14.782, "p90": None, "min": 14.184, "mean": 14.7921, "runs": 50,
                                 "warmup": 33}
    assert row["accuracy"] is None and row["peak_mem_mb"] == pytest.approx(21.4102)
    assert "not in the log (null): p90" in row["note"]
    assert row["ingest"]["log_sha256"] and row["ingest"]["extra"]["p95_ms"] == pytest.approx(15.159)
    md = (out / "report.md").read_text()
    assert "tflite-int8" in md and "14.78" in md and (out / "report.html").is_file()

    # Same (artifact, device, threads, source): replaced; another thread count: added.
    assert run_main(main, _args(tmp_path, manifest)) == 0
    assert len(json.loads((out / "report.json").read_text())["rows"]) == 1
    tf23 = tmp_path / "tf23_fake_size.log"
    tf23.write_text((LOGS / "benchmark_model_tf23.log").read_text().replace("7.81342", "2.34568"))
    args = _args(tmp_path, manifest)
    args[args.index("--log") + 1] = str(tf23)
    assert run_main(main, args) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [(r["threads"], r["latency_ms"]["median"]) for r in rows] == [(4, 14.782), (1, None)]


def test_cli_executor_runner_into_existing_report(tmp_path, manifest):
    run_ingest(IngestSettings(format="benchmark_model", log=str(LOGS / "benchmark_model_litert.log"),
                              artifact="tflite-int8", device="pixel8", out=str(tmp_path / "r"),
                              manifest=str(manifest)))
    row = run_ingest(IngestSettings(format="executor_runner", log=str(LOGS / "executor_runner_posix.log"),
                                    artifact="executorch-xnnpack-int8", device="pixel8", out=str(tmp_path / "r"),
                                    manifest=str(manifest)))
    assert row["delegate"] == "xnnpack" and row["threads"] == 4 and row["latency_ms"]["runs"] == 10
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [r["source"] for r in report["rows"]] == ["ingested:benchmark_model", "ingested:executor_runner"]
    assert report["device"]["description"] == "ingested from benchmark_model logs"


@pytest.mark.parametrize("extra, kw, message", [
    ((), {"artifact": "coreml-fp16"},
     r"--artifact 'coreml-fp16' is not in .*manifest.json \(has: tflite-int8, executorch-xnnpack-int8\)"),
    ((), {"artifact": "executorch-xnnpack-int8"},
     r"executorch-xnnpack-int8 is a executorch artifact; --format benchmark_model logs come from tflite runs"),
    ((), {"log": "benchmark_model_tf23.log"},
     r"the log's model \(/data/local/tmp/facemat_fp32.tflite\) is 7.81342 MB but tflite-int8 is 2.34568 MB"),
    (("--threads", "2"), {}, r"the log says 4 threads but --threads is 2"),
    (("--threads", "0"), {}, r"--threads must be >= 1"),
])
def test_cli_user_errors_are_one_line(tmp_path, manifest, capsys, extra, kw, message):
    assert run_main(main, _args(tmp_path, manifest, *extra, **kw)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "reports" / "pixel8" / "report.json").exists()


def test_settings_validation(tmp_path):
    log = str(LOGS / "executor_runner_posix.log")
    with pytest.raises(ConfigError, match=r"--log: .*nope.log is not a file"):
        IngestSettings(format="executor_runner", log=str(tmp_path / "nope.log"), artifact="a", device="d", out="o")
    with pytest.raises(ConfigError, match=r"--device must be a short name"):
        IngestSettings(format="executor_runner", log=log, artifact="a", device="my phone", out="o")
    with pytest.raises(ConfigError, match=r"--format must be one of executor_runner, benchmark_model, xcode"):
        IngestSettings(format="adb", log=log, artifact="a", device="d", out="o")
    with pytest.raises(ConfigError, match=r"--manifest: .*missing.json is not a file"):
        IngestSettings(format="executor_runner", log=log, artifact="a", device="d", out="o",
                       manifest=str(tmp_path / "missing.json"))


def test_help_names_the_formats(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "executor_runner" in out and "benchmark_model" in out and "xcode" in out
