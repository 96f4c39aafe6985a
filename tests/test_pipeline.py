"""``python -m facemat.pipeline``: the chain runs end to end, caches, reruns only what changed, and locks its folder.

The runs use ``--budget tiny`` (a few training steps) and the ONNX target only,
the cheapest complete chain: data, teacher, student, evaluation, export (ONNX
fp32 + int8, each run in onnxruntime and compared with FP32) and bench.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from facemat.errors import ConfigError
from facemat.io import file_sha256
from facemat.pipeline import BUDGETS, PipelineSettings, RunLock, build_stages, folder_digests, stage_key

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "facemat.pipeline", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"pipeline failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def states(out: Path) -> dict[str, str]:
    return {r["name"]: r["state"] for r in json.loads((out / "pipeline.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("pipe") / "run"
    return out, run_cli("--out", str(out), "--budget", "tiny", "--targets", "onnx")


def test_tiny_chain_runs_every_stage_and_prints_the_report(tiny_run):
    out, proc = tiny_run
    assert states(out) == {n: "ran" for n in ("data", "teacher", "student", "evaluate", "export", "bench")}
    for stage in ("data", "teacher", "student", "evaluate", "export", "bench"):
        record = json.loads((out / stage / "stage.json").read_text())
        assert record["outputs"] == folder_digests(out / stage), stage
        assert not (out / stage / "pending.json").exists()
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"onnx-fp32", "onnx-int8"}
    report = json.loads((out / "bench" / "report.json").read_text())
    ran = {r["artifact"] for r in report["rows"] if r["status"] == "ok"}
    assert {"fp32-reference", "onnx-fp32", "onnx-int8"} <= ran
    assert (out / "bench" / "report.html").stat().st_size > 0
    # Progress per stage, then the summary table and the report's path.
    assert "pipeline: [1/6] data: running" in proc.stdout
    assert "pipeline: [6/6] bench: done" in proc.stdout
    assert "onnx-int8" in proc.stdout and "median ms" in proc.stdout
    # The baseline a filter app already has sits in the summary beside the artifacts.
    assert "mesh-oval (baseline)" in proc.stdout and "IoU over mesh-oval, onnx-int8" in proc.stdout
    assert f"report: {out / 'bench' / 'report.html'}" in proc.stdout


def test_rerun_skips_finished_stages_and_a_changed_setting_reruns_only_its_stage(tiny_run):
    out, _ = tiny_run
    before = {s: (out / s / "stage.json").read_text() for s in ("teacher", "student", "export")}
    proc = run_cli("--out", str(out), "--budget", "tiny", "--targets", "onnx")
    assert set(states(out).values()) == {"cached"}, proc.stdout
    assert "teacher: cached" in proc.stdout

    run_cli("--out", str(out), "--budget", "tiny", "--targets", "onnx", "--threads", "1,2")
    st = states(out)
    assert st.pop("bench") == "ran"
    assert set(st.values()) == {"cached"}
    assert {s: (out / s / "stage.json").read_text() for s in before} == before


def test_a_tampered_output_reruns_its_stage_and_downstream(tiny_run):
    out, _ = tiny_run
    (out / "evaluate" / "report.json").write_text("{}")
    proc = run_cli("--out", str(out), "--budget", "tiny", "--targets", "onnx", "--threads", "1,2")
    assert "evaluate: outputs changed since it ran (report.json)" in proc.stdout
    st = states(out)
    assert st["evaluate"] == "ran" and st["teacher"] == "cached" and st["export"] == "cached"
    assert json.loads((out / "evaluate" / "report.json").read_text()) != {}


def test_interrupted_training_stage_resumes_from_last_checkpoint(tmp_path: Path):
    out = tmp_path / "run"
    run_cli("--out", str(out), "--budget", "tiny", "--targets", "onnx", "--until", "teacher")
    assert states(out) == {"data": "ran", "teacher": "ran"}
    # Make the student stage look interrupted after its first checkpoint: resume must continue it.
    settings = PipelineSettings(out=str(out), budget="tiny", targets=("onnx",), until="student")
    stages = {s.name: s for s in build_stages(settings, out)}
    proc = subprocess.run([sys.executable, *stages["student"].commands[0]], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    done = {n: json.loads((out / n / "stage.json").read_text()) for n in ("data", "teacher")}
    key = stage_key(stages["student"], out, settings.nproc, {"teacher": done["teacher"]["digest"]})
    (out / "student" / "pending.json").write_text(json.dumps({"key": key}))
    proc = run_cli("--out", str(out), "--budget", "tiny", "--targets", "onnx", "--until", "student")
    assert "student: resuming" in proc.stdout
    assert states(out) == {"data": "cached", "teacher": "cached", "student": "resumed"}
    log = (out / "student" / "log.txt").read_text()
    assert "training.distill: resuming at step 3" in log


def test_second_pipeline_on_the_same_folder_gets_a_lock_error(tmp_path: Path):
    out = tmp_path / "run"
    with RunLock(out):
        proc = run_cli("--out", str(out), "--budget", "tiny", "--targets", "onnx", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --out: {out} is in use by another pipeline (pid ")
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": "huge"}, "--budget must be one of tiny, small, full"),
    ({"targets": ("onnx", "metal")}, "--targets: unknown target 'metal'"),
    ({"targets": ()}, "--targets must name at least one"),
    ({"data": "/no/such/folder"}, "--data: /no/such/folder is not a folder"),
    ({"nproc": 0}, "--nproc must be an integer >= 1"),
    ({"bench_device": "my phone"}, "--bench-device must be a short name"),
])
def test_settings_errors_name_the_flag(tmp_path: Path, kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PipelineSettings(out=str(tmp_path / "run"), **kwargs)


def test_targets_pick_their_quantize_recipes(tmp_path: Path):
    s = PipelineSettings(out=str(tmp_path), targets=("tflite", "executorch"))
    names = [st.name for st in build_stages(s, tmp_path)]
    assert names == ["data", "teacher", "student", "evaluate", "quantize-xnnpack", "quantize-coreml",
                     "quantize-litert", "export", "bench"]
    qat = PipelineSettings(out=str(tmp_path), targets=("coreml",), budget="full")
    cmd = [st for st in build_stages(qat, tmp_path) if st.name == "quantize-coreml"][0].commands[0]
    assert cmd[:2] == ["-m", "quantize.qat"] and "--weighting" in cmd
    assert cmd[cmd.index("--kd-from") + 1] == "teacher"
    assert BUDGETS["full"].quantize == "qat" and BUDGETS["small"].quantize == "ptq"


def test_the_default_fine_tunes_the_shipped_models(tmp_path: Path):
    from facemat.checkpoint import read_checkpoint
    from facemat.demo import BUNDLED_STUDENT, BUNDLED_TEACHER

    shipped = {st.name: st.commands[0] for st in build_stages(PipelineSettings(out=str(tmp_path)), tmp_path)}
    for stage, path in (("teacher", BUNDLED_TEACHER), ("student", BUNDLED_STUDENT)):
        cmd = shipped[stage]
        assert cmd[cmd.index("--init") + 1] == str(path)
        assert cmd[cmd.index("--arch") + 1] == read_checkpoint(path)["model"]["arch"]
        assert cmd[cmd.index("--data") + 1] == "mix-empty"
    scratch = {st.name: st for st in build_stages(PipelineSettings(out=str(tmp_path), init="scratch"), tmp_path)}
    assert all("--init" not in scratch[n].commands[0] for n in ("teacher", "student"))
    # The shipped weights are part of the stage key: new weights retrain.
    stages = {st.name: st for st in build_stages(PipelineSettings(out=str(tmp_path)), tmp_path)}
    assert stages["teacher"].extra_key["init_sha256"] == file_sha256(BUNDLED_TEACHER)
    with pytest.raises(ConfigError, match="--init must be one of shipped, scratch"):
        PipelineSettings(out=str(tmp_path), init="imagenet")


def test_other_test_faces_do_not_retrain(tmp_path: Path):
    """The models depend on the training data, not on the held-out faces: only data, evaluate and bench change."""
    test_dir = tmp_path / "faces"
    test_dir.mkdir()
    a = {st.name: st for st in build_stages(PipelineSettings(out=str(tmp_path)), tmp_path)}
    b = {st.name: st for st in build_stages(PipelineSettings(out=str(tmp_path), test_data=str(test_dir)), tmp_path)}
    for name in ("teacher", "student", "quantize-xnnpack", "export"):
        assert (a[name].key_material(tmp_path, 1), a[name].deps) == (b[name].key_material(tmp_path, 1),
                                                                     b[name].deps), name
        assert "data" not in a[name].deps
    assert a["data"].key_material(tmp_path, 1) != b["data"].key_material(tmp_path, 1)
    assert "data" in a["evaluate"].deps and "data" in a["bench"].deps
