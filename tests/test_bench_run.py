"""bench.run end to end: artifacts exported from a tiny student, run in their runtimes, scored, reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import CheckpointError, ConfigError
from facemat.models import build_model
from tests.helpers import warm_bn


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    from targets.export import ExportSettings, run_export

    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    student = save_checkpoint(root / "student.pt", warm_bn(build_model("student-full", size=64)))
    teacher = save_checkpoint(root / "teacher.pt", warm_bn(build_model("teacher", size=64)))
    out = root / "artifacts"
    for target, precision in (("onnx", "fp32"), ("onnx", "int8"), ("tflite", "fp32"), ("coreml", "fp32")):
        run_export(ExportSettings(out=str(out), target=target, precision=precision, checkpoint=str(student),
                                  parity_images=2, calib_images=4))
    return {"student": student, "teacher": teacher, "manifest": out / "manifest.json", "root": root}


def test_bench_measures_scores_and_reports_every_artifact(exported, tmp_path: Path):
    from bench.report import load_report
    from bench.run import BenchSettings, run_bench

    peers = tmp_path / "peers"
    peers.mkdir()
    # Any .tflite stands in for Face Mesh here: the test checks the side-by-side path, not MediaPipe.
    shutil.copy(exported["manifest"].parent / "tflite-fp32.tflite", peers / "face_landmark.tflite")
    out = tmp_path / "report"
    report = run_bench(BenchSettings(manifest=str(exported["manifest"]), out=str(out), device="test-cpu", runs=3,
                                     warmup=1, threads="1,2", limit=3, teacher=str(exported["teacher"]),
                                     peers=str(peers), pictures=2))
    rows = {(r["artifact"], r["threads"]): r for r in report["rows"]}
    for aid in ("onnx-fp32", "onnx-int8", "tflite-fp32", "fp32-reference"):
        for th in (1, 2):
            r = rows[(aid, th)]
            assert r["status"] == "ok", r["reason"]
            lat = r["latency_ms"]
            assert lat["runs"] == 3 and 0 < lat["min"] <= lat["median"] <= lat["p90"]
            gt = r["accuracy"]["gt"]
            assert set(gt) == {"overall", "boundary", "uncertainty"} and gt["uncertainty"] is not None
            assert 0 <= gt["overall"]["iou"] <= 1
    # fp32 artifacts agree with the reference to float rounding; the int8 one does not, but stays close.
    assert rows[("onnx-fp32", 1)]["accuracy"]["fp32"]["overall"]["max_abs"] < 1e-4
    int8 = rows[("onnx-int8", 1)]["accuracy"]["fp32"]["overall"]
    assert 0 < int8["mse"] < 2e-3
    coreml = rows[("coreml-fp32", 1)]
    assert coreml["status"] == "not run here" and "macOS" in coreml["reason"] and coreml["latency_ms"] is None
    assert rows[("peer:face_landmark", 1)]["status"] == "ok"
    ratio = [r for r in report["ratios"] if r["runtime"] == "onnx" and r["threads"] == 1]
    assert len(ratio) == 1 and ratio[0]["latency_int8_over_fp32"] > 0
    assert [p["student"] for p in report["peers"] if p["threads"] == 1] == ["tflite-fp32"]
    assert report["reference"]["device"] == ("cpu" if not torch.cuda.is_available() else report["reference"]["device"])
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).is_file()
    loaded = load_report(out)
    assert len(loaded["rows"]) == len(report["rows"]) == 2 * 5 + 2  # 4 artifacts + reference, 1 peer; x 2 threads
    ref = next(r for r in loaded["rows"] if r["artifact"] == "fp32-reference")
    assert ref["accuracy"]["fp32"]["overall"]["psnr"] == float("inf")  # stored as "inf", read back as a float
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 * (3 + 3 * 2)  # input, gt, fp32, uncertainty + per artifact
    assert "coreml-fp32" in (out / "report.md").read_text()
    # The mesh-oval baseline is scored on the same images, beside each measured model.
    base = report["baseline"]
    assert set(base) == {"mesh-oval", "fp32-reference", "onnx-fp32", "onnx-int8", "tflite-fp32"}
    assert base["mesh-oval"]["all"]["images"] == 3 and 0 <= base["mesh-oval"]["all"]["iou"] <= 1
    # The synth test faces say which are occluded: the split covers every image once.
    split = base["onnx-int8"]
    assert sum(split.get(g, {}).get("images", 0) for g in ("occluded", "unoccluded")) == 3
    assert split["all"]["sad"] == pytest.approx(rows[("onnx-int8", 1)]["accuracy"]["gt"]["overall"]["sad"])
    assert "Quality beside the mesh-oval baseline" in (out / "report.md").read_text()


def test_bench_scores_every_artifact_on_clips_in_its_runtime(exported, tmp_path: Path):
    from bench.run import BenchSettings, run_bench
    from facemat.data.synth import SynthSettings, generate

    clips = tmp_path / "clips"
    generate(SynthSettings(out=clips, count=2, seed=5, size=64, split="test", frames=3))
    out = tmp_path / "report"
    report = run_bench(BenchSettings(manifest=str(exported["manifest"]), out=str(out), device="test-cpu", runs=2,
                                     warmup=1, threads="1", limit=2, only=("onnx-fp32",),
                                     clips=str(clips), pictures=0))
    t = report["temporal"]
    assert t["data"]["clips"] == 2 and t["data"]["frames"] == 6 and not t["failed"]
    names = ("fp32-reference", "onnx-fp32", "mesh-oval")
    assert set(t["rows"]) == {*names, *(n + "+filter" for n in names), "ground-truth"}
    rows = t["rows"]
    # The runtime's outputs land on the right clips: the fp32 artifact scores as the reference does.
    for group, key in (("still", "flicker"), ("moving", "dtssd"), ("all", "iou")):
        assert rows["onnx-fp32"][group][key] == pytest.approx(rows["fp32-reference"][group][key], abs=1e-3)
    assert rows["onnx-fp32+filter"]["still"]["flicker"] < rows["onnx-fp32"]["still"]["flicker"]
    assert rows["ground-truth"]["moving"]["dtssd"] == 0.0
    assert set(t["checks"]) == {"fp32-reference", "onnx-fp32"}
    assert len(t["checks"]["onnx-fp32"]) == 4
    assert t["latency_ms"]["filter"]["median"] > 0 and t["latency_ms"]["face_mesh"]["median"] > 0
    md = (out / "report.md").read_text()
    assert "Temporal stability on clips" in md and "onnx-fp32+filter" in md


def test_bench_refuses_a_changed_artifact_before_running(exported, tmp_path: Path):
    from bench.run import BenchSettings, run_bench

    root = tmp_path / "a"
    shutil.copytree(exported["manifest"].parent, root)
    data = json.loads((root / "manifest.json").read_text())
    (root / "onnx-fp32.onnx").write_bytes((root / "onnx-fp32.onnx").read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="onnx-fp32: .*onnx-fp32.onnx has sha256 .* the file changed after export"):
        run_bench(BenchSettings(manifest=str(root / "manifest.json"), out=str(tmp_path / "r"), device="x",
                                checkpoint=str(exported["student"])))
    assert not (tmp_path / "r").exists()
    assert data["artifacts"]["onnx-fp32"]["sha256"]


@pytest.mark.parametrize("kwargs, message", [
    ({"threads": "0"}, "--threads must be a comma list of positive integers or 'all'"),
    ({"runs": 0}, "--runs must be >= 1"),
    ({"device": "my phone"}, "--device must be a short name"),
    ({"data": "/nonexistent"}, "--data: /nonexistent is not a folder"),
    ({"clips": "/nonexistent"}, "--clips: /nonexistent is not a folder"),
    ({"clip_limit": 0}, "--clip-limit must be >= 1"),
])
def test_bench_settings_errors(exported, kwargs, message):
    from bench.run import BenchSettings

    with pytest.raises(ConfigError, match=message):
        BenchSettings(**{"manifest": str(exported["manifest"]), "out": "x", "device": "d", **kwargs})


def test_latency_stats_by_hand():
    from bench.worker import latency_stats

    s = latency_stats([5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0], warmup=2)
    assert s == {"median": 5.5, "p90": 9.0, "min": 1.0, "mean": 5.5, "runs": 10, "warmup": 2}
    assert np.isclose(latency_stats([2.0], 0)["p90"], 2.0)
