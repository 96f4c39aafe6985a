"""Tests for bench.report: Markdown and HTML renderings, the files written, and loading report.json back."""

from __future__ import annotations

import base64
import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.report import load_report, render_html, render_markdown, write_reports
from facemat.errors import ConfigError

SIZE = 64
NOT_RUN_REASON = "Core ML prediction needs macOS"


def gt_block(sad: float, mse: float, with_uncertainty: bool = True) -> dict:
    overall = {"sad": sad, "mse": mse, "grad": sad / 2, "conn": sad * 0.9, "iou": 0.9812}
    boundary = {"sad": sad / 3, "mse": mse * 4, "grad": sad / 5, "conn": sad / 4, "iou": 0.8123}
    unc = {"sad": sad / 8, "mse": mse * 9, "grad": sad / 9, "conn": sad / 9, "iou": 0.7012} if with_uncertainty else None
    return {"overall": overall, "boundary": boundary, "uncertainty": unc}


def fp32_block(max_abs: float, mse: float, psnr: float, with_uncertainty: bool = True) -> dict:
    b = {"max_abs": max_abs, "mse": mse, "psnr": psnr}
    return {"overall": b, "boundary": dict(b), "uncertainty": dict(b) if with_uncertainty else None}


def artifact_row(artifact: str, target: str, precision: str, runtime: str, threads: int | None, median: float,
                 sad: float, ref_mse: float, psnr: float, file_bytes: int) -> dict:
    return {
        "artifact": artifact, "kind": "artifact", "target": target, "precision": precision, "delegate": None,
        "runtime": runtime, "threads": threads, "status": "ok", "reason": None, "source": "measured",
        "device": "laptop-x86", "file_bytes": file_bytes,
        "latency_ms": {"median": median, "p90": median * 1.1, "min": median - 0.1, "mean": median * 1.02,
                       "runs": 50, "warmup": 5},
        "peak_mem_mb": 35.24,
        "accuracy": {"gt": gt_block(sad, 1.2345e-3), "fp32": fp32_block(0.0421, ref_mse, psnr)},
        "profile": None,
    }


def make_report() -> dict:
    """A realistic report: reference, two TFLite artifacts at 1 thread, int8 also at 2, a Core ML row
    that does not run on Linux, and a Face Mesh peer."""
    int8_1 = artifact_row("tflite-int8", "tflite", "int8", "ai-edge-litert 2.3.0", 1, 2.1, 12.3456, 7.5e-5,
                          41.2496, 180_000)
    int8_1["profile"] = {"tool": "benchmark_model --enable_op_profiling",
                         "top_ops": [{"op": "CONV_2D", "ms": 1.2, "share": 0.6, "count": 20},
                                     {"op": "DEPTHWISE_CONV_2D", "ms": 0.5, "share": 0.25, "count": 12}]}
    int8_2 = artifact_row("tflite-int8", "tflite", "int8", "ai-edge-litert 2.3.0", 2, 1.3, 12.3456, 7.5e-5,
                          41.2496, 180_000)
    fp32 = artifact_row("tflite-fp32", "tflite", "fp32", "ai-edge-litert 2.3.0", 1, 2.5, 12.2, 3.1e-12,
                        115.09, 650_000)
    fp32["accuracy"]["fp32"] = fp32_block(2.4e-6, 3.1e-12, 115.09)
    # Identical to the reference inside the uncertainty band: PSNR inf.
    fp32["accuracy"]["fp32"]["uncertainty"] = {"max_abs": 0.0, "mse": 0.0, "psnr": math.inf}
    reference = {
        "artifact": "fp32-reference", "kind": "reference", "target": None, "precision": "fp32", "delegate": None,
        "runtime": "pytorch 2.13.0", "threads": None, "status": "ok", "reason": None, "source": "measured",
        "device": "laptop-x86", "file_bytes": 700_000,
        "latency_ms": {"median": 9.87, "p90": 10.5, "min": 9.5, "mean": 9.9, "runs": 50, "warmup": 5},
        "peak_mem_mb": 120.0,
        "accuracy": {"gt": gt_block(12.2, 1.2e-3), "fp32": None}, "profile": None,
    }
    coreml = {
        "artifact": "coreml-fp16", "kind": "artifact", "target": "coreml", "precision": "fp16", "delegate": None,
        "runtime": "coremltools 9.0", "threads": None, "status": "not run here", "reason": NOT_RUN_REASON,
        "source": "measured", "device": "laptop-x86", "file_bytes": 330_000, "latency_ms": None,
        "peak_mem_mb": None, "accuracy": None, "profile": None,
    }
    peer = {
        "artifact": "peer:face_landmark", "kind": "peer", "target": "tflite", "precision": "fp32",
        "delegate": None, "runtime": "ai-edge-litert 2.3.0", "threads": 1, "status": "ok", "reason": None,
        "source": "measured", "device": "laptop-x86", "file_bytes": 1_240_000,
        "latency_ms": {"median": 2.625, "p90": 2.9, "min": 2.5, "mean": 2.7, "runs": 50, "warmup": 5},
        "peak_mem_mb": 20.0, "accuracy": None, "profile": None,
    }
    return {
        "format": "facemat-bench/1",
        "device": {"name": "laptop-x86", "description": "Intel Core i5, 2 cores, Linux 6.8 x86_64", "os": "Linux",
                   "machine": "x86_64", "cpu_count": 2},
        "date": "2026-11-26T10:00:00+00:00",
        "tools": {"torch": "2.13.0", "ai-edge-litert": "2.3.0", "coremltools": "9.0"},
        "manifest": "artifacts/manifest.json",
        "data": {"kind": "synth", "path": None, "images": 16, "size": SIZE, "seed": 7},
        "reference": {"name": "fp32-reference", "runtime": "pytorch 2.13.0", "device": "cpu",
                      "checkpoint": "runs/student/best.pt", "sha256": "ab" * 32},
        "teacher": {"checkpoint": "runs/teacher/best.pt", "sha256": "cd" * 32},
        "timing": {"runs": 50, "warmup": 5,
                   "what": "invoke only: pre/post-processing (layout change, int8 I/O (de)quantization, "
                           "image decoding) excluded"},
        "rows": [reference, fp32, int8_1, int8_2, coreml, peer],
        "ratios": [{"runtime": "tflite", "threads": 1, "int8": "tflite-int8", "fp32": "tflite-fp32",
                    "latency_int8_over_fp32": 0.84, "sad_int8_over_fp32": 1.0119}],
        "peers": [{"name": "face_landmark", "input": "1x192x192x3", "threads": 1,
                   "latency_ms": {"median": 2.625, "p90": 2.9, "min": 2.5}, "student": "tflite-int8",
                   "student_over_peer": 0.8}],
        "notes": ["Core ML rows need a Mac: run python -m bench.run there and merge."],
    }


def make_pictures(count: int = 2, uncertainty: bool = True) -> list[dict]:
    rng = np.random.default_rng(0)
    pics = []
    for i in range(count):
        fp32 = rng.random((SIZE, SIZE)).astype(np.float32)
        pics.append({
            "id": f"synth-test-{i:06d}",
            "input": (rng.random((SIZE, SIZE, 3)) * 255).astype(np.uint8),
            "gt": rng.random((SIZE, SIZE)).astype(np.float32),
            "fp32": fp32,
            "uncertainty": (rng.random((SIZE, SIZE)) * 0.2 + 1e-3).astype(np.float32) if uncertainty else None,
            "artifacts": {"tflite-fp32": fp32.copy(),
                          "tflite-int8": np.clip(fp32 + rng.normal(0, 0.02, fp32.shape), 0, 1).astype(np.float32)},
        })
    return pics


def table_row(md: str, first_cell: str, threads: str, threads_col: int = 2) -> list[str]:
    """Cells of the first Markdown table row with this artifact and threads."""
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[0] == first_cell and cells[threads_col] == threads:
            return cells
    raise AssertionError(f"no row {first_cell} threads {threads} in\n{md}")


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #

def test_markdown_tables_and_formats() -> None:
    md = render_markdown(make_report())
    assert md.startswith("# FaceMat bench: laptop-x86")
    assert "Intel Core i5, 2 cores" in md and "2026-11-26T10:00:00+00:00" in md
    assert "pytorch 2.13.0 on cpu" in md and "synthetic faces, 16 images at 64x64, seed 7" in md
    assert "50 runs after 5 warm-up runs" in md and "image decoding) excluded" in md
    for heading in ("## Latency, memory and accuracy (overall)", "## Boundary band", "## Uncertainty band",
                    "## int8 vs fp32", "## Peers", "## Profile: tflite-int8, threads 1", "## Notes"):
        assert heading in md
    assert ("| artifact | runtime | threads | status | size (MB) | median (ms) | p90 (ms) | min (ms) | "
            "peak mem (MB) | SAD | MSE | Grad | Conn | IoU | max abs vs FP32 | MSE vs FP32 | PSNR vs FP32 (dB) |") in md

    row = table_row(md, "tflite-int8", "1")
    # size, median, p90, min, peak, SAD, MSE, Grad, Conn, IoU, max abs, MSE vs FP32, PSNR
    assert row[4:] == ["0.18", "2.10", "2.31", "2.00", "35.2", "12.346", "1.234e-03", "6.173", "11.111", "0.9812",
                       "0.0421", "7.500e-05", "41.2"]
    fp32 = table_row(md, "tflite-fp32", "1")
    assert fp32[-3:] == ["2.40e-06", "3.100e-12", "115.1"]
    ref = table_row(md, "fp32-reference", "default")
    assert ref[-3:] == ["0", "0", "inf"]  # the reference agrees with itself

    coreml = table_row(md, "coreml-fp16", "default")
    assert coreml[3] == "not run here" and coreml[4] == "0.33"
    assert coreml[5] == f"not run here: {NOT_RUN_REASON}" and set(coreml[6:]) == {"—"}
    peer = table_row(md, "peer:face_landmark", "1")
    assert peer[5] == "2.62" and "n/a: peer model has no alpha" in peer

    # Band tables: the int8 rows at 1 and 2 threads score the same and share one row.
    boundary = md.split("## Boundary band")[1].split("## Uncertainty band")[0]
    assert table_row(boundary, "tflite-int8", "1, 2", threads_col=1)[2:4] == ["4.115", "4.938e-03"]
    assert NOT_RUN_REASON in boundary
    assert "| tflite | 1 | tflite-int8 | tflite-fp32 | 0.84 | 1.01 |" in md
    assert "| face_landmark | 1x192x192x3 | 1 | tflite-int8 | 2.62 | 2.10 | 0.80 |" in md
    assert "| CONV_2D | 1.20 | 60.0% | 20 |" in md


def test_markdown_without_teacher_skips_uncertainty_table() -> None:
    report = make_report()
    report["teacher"] = None
    for r in report["rows"]:
        for block in (r["accuracy"] or {}).values():
            if block:
                block["uncertainty"] = None
    md = render_markdown(report)
    assert "## Uncertainty band" not in md
    assert "Uncertainty band: not scored (no teacher checkpoint given)." in md
    assert "Teacher:** none" in md


def test_markdown_escapes_pipes() -> None:
    report = make_report()
    report["rows"][4]["reason"] = "needs macOS | iOS"
    md = render_markdown(report)
    assert "not run here: needs macOS \\| iOS" in md


# --------------------------------------------------------------------------- #
# HTML
# --------------------------------------------------------------------------- #

def test_html_self_contained_with_pictures_and_scatter() -> None:
    report, pictures = make_report(), make_pictures(2)
    page = render_html(report, pictures)
    assert page.startswith("<!DOCTYPE html>") and page.count("<html") == 1
    for forbidden in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert forbidden not in page

    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # per picture: input, gt, FP32 alpha, uncertainty, and alpha + error map for each of 2 artifacts
    assert len(uris) == page.count("data:image/png;base64,") == 2 * (3 + 1 + 2 * 2)
    first = cv2.imdecode(np.frombuffer(base64.b64decode(uris[0]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert first.shape == (SIZE, SIZE, 3)
    # The input thumbnail is the input image (RGB in, PNG stores BGR).
    np.testing.assert_array_equal(first[..., ::-1], pictures[0]["input"])
    gt = cv2.imdecode(np.frombuffer(base64.b64decode(uris[1]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert gt.shape == (SIZE, SIZE) and gt.dtype == np.uint8
    assert "fixed inferno scale 0 .. 0.1" in page

    # Same tables as the Markdown, with the not-run reason spanning the figure cells.
    assert f'<td class="reason" colspan="12">not run here: {NOT_RUN_REASON}</td>' in page
    assert "<th>PSNR vs FP32 (dB)</th>" in page and "Uncertainty band" in page

    assert page.count("<svg") == 1
    svg = page[page.index("<svg"):page.index("</svg>")]
    # reference, tflite-fp32 @1, tflite-int8 @1 and @2 have latency and an MSE vs FP32; the peer is a dashed line.
    ET.fromstring(svg + "</svg>")  # well-formed markup
    assert svg.count("<circle") == 4
    assert "peer:face_landmark @1 (latency only)" in svg and "stroke-dasharray" in svg
    # MSE spans 3e-12 .. 7.5e-5: log axis, and the reference's exact 0 floored a decade below the smallest.
    assert "MSE vs FP32 (overall), log scale" in svg and "drawn at 1e-13" in page


def test_scatter_linear_when_errors_are_close() -> None:
    report = make_report()
    report["rows"] = [r for r in report["rows"] if r["artifact"] == "tflite-int8"]
    page = render_html(report)
    svg = page[page.index("<svg"):page.index("</svg>")]
    assert svg.count("<circle") == 2 and "log scale" not in svg and "drawn at" not in page


def test_html_without_pictures_or_uncertainty() -> None:
    page = render_html(make_report(), make_pictures(1, uncertainty=False))
    assert page.count("data:image/png;base64,") == 3 + 2 * 2
    page = render_html(make_report())
    assert "data:image/png" not in page and "<h2>Pictures</h2>" not in page


def test_html_escapes_text() -> None:
    report = make_report()
    report["notes"] = ['<img src=x onerror="alert(1)"> & more']
    report["rows"][4]["reason"] = "needs <macOS>"
    page = render_html(report)
    assert "<img src=x" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; more" in page
    assert "needs &lt;macOS&gt;" in page


# --------------------------------------------------------------------------- #
# Files
# --------------------------------------------------------------------------- #

def test_write_reports_round_trip(tmp_path: Path) -> None:
    report = make_report()
    before = json.dumps(report, sort_keys=True)
    paths = write_reports(tmp_path / "bench" / "laptop", report, make_pictures(1))
    assert [p.name for p in paths] == ["report.json", "report.md", "report.html"]
    assert all(p.is_file() for p in paths)
    assert json.dumps(report, sort_keys=True) == before  # input untouched

    text = paths[0].read_text()
    assert "Infinity" not in text and '"psnr": "inf"' in text

    def strict(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")
    json.loads(text, parse_constant=strict)  # strict JSON, readable outside Python

    loaded = load_report(paths[0].parent)
    assert loaded == report  # inf restored as a float (NaN-free report, so == is exact)
    assert loaded["rows"][1]["accuracy"]["fp32"]["uncertainty"]["psnr"] == math.inf
    assert paths[1].read_text() == render_markdown(report)
    assert paths[2].read_text().count("data:image/png;base64,") == 3 + 1 + 2 * 2
    assert not list(paths[0].parent.glob(".*"))  # no temporary files left behind


def test_load_report_accepts_legacy_infinity(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(make_report()))  # Python's default: Infinity
    assert "Infinity" in path.read_text()
    assert load_report(path)["rows"][1]["accuracy"]["fp32"]["uncertainty"]["psnr"] == math.inf


def test_load_report_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing[/\\]report\.json: no bench report there"):
        load_report(tmp_path / "missing" / "report.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty[/\\]report\.json: no bench report there"):
        load_report(tmp_path / "empty")

    garbled = tmp_path / "garbled" / "report.json"
    garbled.parent.mkdir()
    garbled.write_text(json.dumps(make_report())[:200])
    with pytest.raises(ConfigError, match=r"garbled[/\\]report\.json: not valid JSON .* line 1"):
        load_report(garbled)

    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=r"binary\.json: not a text file"):
        load_report(binary)

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else/2", "rows": []}))
    with pytest.raises(ConfigError, match=r"other\.json: not a bench report \(format 'something-else/2'"):
        load_report(other)
