"""The bad-input catalogue: every case runs a real command as a subprocess and must fail cleanly.

Each case must exit with code 2 and print exactly one line on stderr,
``error: ...``, that names the file or flag and the problem, with no traceback;
and no file the command could have touched may change (inputs, earlier outputs)
nor a new one appear. The cases run two at a time in one module fixture (each
is a fresh Python process importing torch); each case is then its own test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.models import build_model
from tests.conftest import warm_bn, write_disc_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class Payload:
    """Unpickling this would run ``touch PWNED``: what a malicious checkpoint carries."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def make_workspace(ws: Path) -> dict[str, Path]:
    """Inputs for every case: good and broken data folders, checkpoints, a quantize run, an export."""
    from quantize.ptq import PTQSettings, run_ptq
    from targets.export import ExportSettings, run_export

    good = write_disc_folder(ws / "good", count=6, size=64)
    p = {"good": good}
    p["empty"] = ws / "empty"
    (p["empty"] / "images").mkdir(parents=True)
    (p["empty"] / "alphas").mkdir()
    p["stems"] = _copy_folder(good, ws / "stems")
    (p["stems"] / "alphas" / "s001.png").rename(p["stems"] / "alphas" / "other.png")
    p["corrupt"] = _copy_folder(good, ws / "corrupt")
    png = p["corrupt"] / "images" / "s002.png"
    png.write_bytes(png.read_bytes()[:8] + b"\x00garbage" * 40)
    p["truncated"] = _copy_folder(good, ws / "truncated")
    png = p["truncated"] / "alphas" / "s003.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    p["zero"] = _copy_folder(good, ws / "zero")
    (p["zero"] / "images" / "s004.png").write_bytes(b"")
    p["sizes"] = _copy_folder(good, ws / "sizes")
    import cv2
    import numpy as np

    cv2.imwrite(str(p["sizes"] / "alphas" / "s000.png"), np.zeros((48, 64), np.uint8))

    torch.manual_seed(0)
    p["student"] = save_checkpoint(ws / "ckpt" / "student.pt", warm_bn(build_model("student-full", size=64)))
    p["teacher"] = save_checkpoint(ws / "ckpt" / "teacher.pt", build_model("teacher", size=64).eval())
    data = p["student"].read_bytes()
    p["truncated_ckpt"] = ws / "ckpt" / "truncated.pt"
    p["truncated_ckpt"].write_bytes(data[: len(data) // 2])
    p["not_ckpt"] = ws / "ckpt" / "notes.pt"
    p["not_ckpt"].write_text("these are my training notes, not weights\n")
    p["pwned"] = ws / "PWNED"
    p["payload"] = ws / "ckpt" / "payload.pt"
    torch.save({"format": "facemat-checkpoint", "model": Payload(str(p["pwned"]))}, p["payload"])

    p["q_xnnpack"] = ws / "q-xnnpack"
    run_ptq(PTQSettings(student=str(p["student"]), recipe="xnnpack", out=str(p["q_xnnpack"]), data=str(good),
                        calib=4, batch=2, size=64, workers=0))
    p["art"] = ws / "art"
    run_export(ExportSettings(checkpoint=str(p["student"]), target="onnx", precision="fp32", out=str(p["art"]),
                              parity_images=1))
    manifest = json.loads((p["art"] / "manifest.json").read_text())
    p["art_missing"] = _copy_folder(p["art"], ws / "art-missing")
    (p["art_missing"] / "onnx-fp32.onnx").unlink()
    p["art_sha"] = _copy_folder(p["art"], ws / "art-sha")
    with open(p["art_sha"] / "onnx-fp32.onnx", "ab") as f:
        f.write(b"\0")
    p["bad_manifest"] = ws / "bad-manifest.json"
    p["bad_manifest"].write_text('{"format": 1, "artifacts": {"onnx-fp32": ')
    p["no_artifacts"] = ws / "no-artifacts.json"
    p["no_artifacts"].write_text(json.dumps({"format": manifest["format"], "items": []}))
    p["readonly"] = ws / "readonly"
    p["readonly"].mkdir()
    p["a_file"] = ws / "a-file.txt"
    p["a_file"].write_text("not a folder\n")
    p["video"] = ws / "clip.gif"
    p["video"].write_bytes(b"GIF89a not really")
    return p


def make_read_only(path: Path) -> bool:
    """Make ``path`` unwritable even for root (chattr +i); returns whether it worked."""
    if os.geteuid() != 0:
        path.chmod(0o555)
    else:
        subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    try:
        (path / ".probe").write_text("x")
    except OSError:
        return True
    (path / ".probe").unlink()
    return False


def undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


# (id, module, args, substrings the error line must contain). {name} is a workspace path; {out} a fresh folder.
CASES = [
    # --- data
    ("data-missing-folder", "training.teacher", ["--data", "{ws}/nowhere", "--out", "{out}"],
     ["--data", "nowhere", "is not a folder"]),
    ("data-empty-folder", "training.evaluate", ["--checkpoint", "{student}", "--data", "{empty}"],
     ["empty", "no .png files"]),
    ("data-stems-differ", "training.evaluate", ["--checkpoint", "{student}", "--data", "{stems}"],
     ["stems", "names do not match"]),
    ("data-corrupt-png", "training.evaluate", ["--checkpoint", "{student}", "--data", "{corrupt}"],
     ["s002.png"]),
    ("data-truncated-png", "training.evaluate", ["--checkpoint", "{student}", "--data", "{truncated}"],
     ["s003.png", "truncated"]),
    ("data-zero-byte-file", "training.evaluate", ["--checkpoint", "{student}", "--data", "{zero}"],
     ["s004.png", "zero-byte"]),
    ("data-image-alpha-sizes-differ", "training.evaluate", ["--checkpoint", "{student}", "--data", "{sizes}"],
     ["s000.png", "size"]),
    ("data-size-not-multiple-of-32", "training.evaluate",
     ["--checkpoint", "{student}", "--data", "{good}", "--size", "100"], ["--size", "multiple of 32", "100"]),
    ("data-synth-count-zero", "facemat.data.synth", ["--out", "{out}", "--count", "0"], ["count", ">= 1"]),
    # --- checkpoints
    ("ckpt-wrong-arch-teacher-as-student", "quantize.ptq",
     ["--student", "{teacher}", "--recipe", "xnnpack", "--out", "{out}"], ["teacher.pt", "teacher", "student"]),
    ("ckpt-wrong-arch-student-as-teacher", "training.distill",
     ["--teacher", "{student}", "--out", "{out}", "--steps", "1"], ["student.pt", "teacher"]),
    ("ckpt-truncated", "training.evaluate", ["--checkpoint", "{truncated_ckpt}", "--data", "{good}"],
     ["truncated.pt", "truncated or corrupt"]),
    ("ckpt-not-a-checkpoint", "targets.export",
     ["--checkpoint", "{not_ckpt}", "--target", "onnx", "--precision", "fp32", "--out", "{out}"],
     ["notes.pt", "not a PyTorch file"]),
    ("ckpt-pickle-payload-refused", "training.evaluate", ["--checkpoint", "{payload}", "--data", "{good}"],
     ["payload.pt", "refused to load"]),
    # --- export
    ("export-unknown-target", "targets.export",
     ["--checkpoint", "{student}", "--target", "metal", "--precision", "fp32", "--out", "{out}"],
     ["--target", "invalid choice: 'metal'"]),
    ("export-unknown-precision", "targets.export",
     ["--checkpoint", "{student}", "--target", "onnx", "--precision", "int4", "--out", "{out}"],
     ["--precision 'int4'", "onnx"]),
    ("export-precision-not-for-target", "targets.export",
     ["--checkpoint", "{student}", "--target", "onnx", "--precision", "fp16", "--out", "{out}"],
     ["--precision 'fp16' is not offered for onnx"]),
    ("export-quantized-from-other-recipe", "targets.export",
     ["--checkpoint", "{student}", "--quantized", "{q_xnnpack}", "--target", "tflite", "--precision", "int8",
      "--out", "{out}"], ["tflite int8", "'litert' recipe"]),
    ("export-read-only-out", "targets.export",
     ["--checkpoint", "{student}", "--target", "onnx", "--precision", "fp32", "--out", "{readonly}"],
     ["readonly"]),
    ("export-out-is-a-file", "targets.export",
     ["--checkpoint", "{student}", "--target", "onnx", "--precision", "fp32", "--out", "{a_file}"],
     ["a-file.txt"]),
    # --- bench
    ("bench-manifest-missing", "bench.run", ["--manifest", "{ws}/none.json", "--device", "x", "--out", "{out}"],
     ["--manifest", "none.json"]),
    ("bench-manifest-malformed", "bench.run", ["--manifest", "{bad_manifest}", "--device", "x", "--out", "{out}"],
     ["bad-manifest.json"]),
    ("bench-manifest-without-artifacts", "bench.run",
     ["--manifest", "{no_artifacts}", "--device", "x", "--out", "{out}"], ["no-artifacts.json", "without its 'artifacts' table"]),
    ("bench-artifact-missing", "bench.run",
     ["--manifest", "{art_missing}/manifest.json", "--device", "x", "--out", "{out}", "--threads", "1"],
     ["onnx-fp32.onnx"]),
    ("bench-artifact-sha-mismatch", "bench.run",
     ["--manifest", "{art_sha}/manifest.json", "--device", "x", "--out", "{out}", "--threads", "1"],
     ["onnx-fp32.onnx", "sha256"]),
    ("bench-read-only-out", "bench.run",
     ["--manifest", "{art}/manifest.json", "--device", "x", "--out", "{readonly}", "--threads", "1"],
     ["readonly"]),
    # --- flags out of range
    ("flag-negative-steps", "training.teacher", ["--steps", "-5", "--out", "{out}"], ["--steps", "-5"]),
    ("flag-zero-batch", "training.distill", ["--teacher", "{teacher}", "--batch", "0", "--out", "{out}"],
     ["--batch", ">= 1", "0"]),
    ("flag-threads-above-cores", "bench.run",
     ["--manifest", "{art}/manifest.json", "--device", "x", "--out", "{out}", "--threads", "4096"],
     ["--threads 4096", "cores"]),
    ("flag-qat-zero-steps", "quantize.qat",
     ["--student", "{student}", "--teacher", "{teacher}", "--recipe", "xnnpack", "--out", "{out}", "--steps", "0"],
     ["--steps"]),
    ("flag-negative-lr", "training.teacher", ["--lr", "-0.1", "--out", "{out}"], ["--lr", "-0.1"]),
    ("flag-ptq-zero-calib", "quantize.ptq",
     ["--student", "{student}", "--recipe", "litert", "--out", "{out}", "--calib", "0"], ["--calib", "0"]),
    ("flag-bench-zero-runs", "bench.run",
     ["--manifest", "{art}/manifest.json", "--device", "x", "--out", "{out}", "--runs", "0"], ["--runs", "0"]),
    ("flag-steps-not-a-number", "training.teacher", ["--steps", "many", "--out", "{out}"],
     ["--steps", "invalid int value: 'many'"]),
    ("flag-pipeline-unknown-target", "facemat.pipeline", ["--out", "{out}", "--targets", "onnx,metal"],
     ["--targets", "metal"]),
    ("flag-pipeline-threads-above-cores", "facemat.pipeline", ["--out", "{out}", "--threads", "4096"],
     ["--threads 4096", "cores"]),
    ("flag-pipeline-out-is-a-file", "facemat.pipeline", ["--out", "{a_file}"], ["--out", "a-file.txt"]),
]


def snapshot(ws: Path) -> dict[str, str]:
    return {p.relative_to(ws).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file() and "outs" not in p.relative_to(ws).parts}


def run_case(case, paths: dict[str, Path], ws: Path) -> tuple[subprocess.CompletedProcess, Path]:
    name, module, args, _ = case
    out = ws / "outs" / name
    subs = {"ws": str(ws), "out": str(out), **{k: str(v) for k, v in paths.items()}}
    argv = [PY, "-m", module, *[a.format(**subs) for a in args]]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env), out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    ws = tmp_path_factory.mktemp("bad")
    paths = make_workspace(ws)
    read_only = make_read_only(paths["readonly"])
    before = snapshot(ws)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = dict(zip([c[0] for c in CASES], pool.map(lambda c: run_case(c, paths, ws), CASES)))
    finally:
        undo_read_only(paths["readonly"])
    after = snapshot(ws)
    return {"done": done, "before": before, "after": after, "paths": paths, "read_only": read_only}


def test_catalogue_is_large_enough():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_clear_line(case, results):
    name, module, _, wanted = case
    if "read-only" in name and not results["read_only"]:
        pytest.fail("could not make a read-only folder here (not root with chattr, nor a user with chmod)")
    proc, out = results["done"][name]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, f"{module} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for w in wanted:
        assert w in lines[0], f"{w!r} not in {lines[0]!r}"
    # Nothing written: no file appeared in its output folder.
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], sorted(out.rglob("*"))


def test_no_input_or_earlier_output_changed(results):
    assert results["after"] == results["before"]
    assert not results["paths"]["pwned"].exists(), "the pickle payload ran"
