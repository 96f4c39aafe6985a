"""The bad-input catalogue: every case runs a real command as a subprocess and must fail cleanly.

Each case must exit with code 2 and print exactly one line on stderr,
``error: ...``, that names the file or flag and the problem, with no traceback;
and no file the command could have touched may change (inputs, earlier outputs)
nor a new one appear. The cases run in two subprocesses side by side
(tests/catalogue_runner.py: each case through its command's real ``main`` and
``run_main``, with stdout and stderr captured at the file-descriptor level), a
case under a file-size limit in a subprocess of its own; each case is then its
own test.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.models import build_model
from tests.helpers import warm_bn, write_disc_folder
from tests.hostile import (Payload, checkpoint_variant, hostile_quantized, manifest_variant, png_declaring)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"^[\w. -]+: +\d+%\|")  # a tqdm bar: "synth train:   0%|   | 0/2 [...]"
PY = sys.executable


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
    p.update(make_hostile(ws, p))
    return p


def make_hostile(ws: Path, p: dict[str, Path]) -> dict[str, Path]:
    """The inputs of issue 18's findings, one group per finding."""
    h: dict[str, Path] = {}
    # 1. model files that would run code
    h.update(hostile_quantized(p["q_xnnpack"], ws, p["pwned"]))
    # 2. a report to compare, and a link to it
    h["rep"] = ws / "rep"
    h["rep"].mkdir()
    (h["rep"] / "report.json").write_text(json.dumps({"format": "facemat-bench/1", "rows": []}))
    h["rep_link"] = ws / "rep-link.md"
    h["rep_link"].symlink_to(h["rep"] / "report.json")
    # 3. manifests whose artifact path leaves their folder
    outside = ws / "outside"
    outside.mkdir()
    shutil.copy(p["art"] / "onnx-fp32.onnx", outside / "onnx-fp32.onnx")

    def setter(value):
        return lambda e, d: e.update(path=value)

    def link_out(e, d):
        (d / "onnx-fp32.onnx").unlink()
        (d / "onnx-fp32.onnx").symlink_to(outside / "onnx-fp32.onnx")

    def folder_link_out(e, d):
        (d / "pkg.mlpackage").mkdir()
        (d / "pkg.mlpackage" / "weight.bin").symlink_to(outside / "onnx-fp32.onnx")
        e["path"] = "pkg.mlpackage"

    for name, edit in [("dotdot", setter("../outside/onnx-fp32.onnx")), ("absolute", setter("/etc")),
                       ("not_string", setter(["onnx-fp32.onnx"])), ("symlink_out", link_out),
                       ("folder_symlink_out", folder_link_out)]:
        h[f"art_{name}"] = manifest_variant(p["art"], ws / f"art-{name.replace('_', '-')}", edit)
    # 4. images whose header declares 9000 x 9000 pixels (81 MP) in a few hundred bytes
    h["bomb_png"] = ws / "bomb.png"
    h["bomb_png"].write_bytes(png_declaring(9000, 9000))
    for name, sub in (("bomb_image", "images"), ("bomb_alpha", "alphas")):
        h[name] = _copy_folder(p["good"], ws / name.replace("_", "-"))
        shutil.copy(h["bomb_png"], h[name] / sub / "s001.png")
    # 5. a dataset folder to write that has room for almost nothing (see FSIZE_LIMITS)
    # 6. damaged run folders for --resume
    for name in ("run_bad_config", "run_no_state", "run_torn_ckpt", "run_config_list"):
        h[name] = ws / name.replace("_", "-")
        h[name].mkdir()
    shutil.copy(p["teacher"], h["run_bad_config"] / "last.pt")
    (h["run_bad_config"] / "config.json").write_text('{"steps": 10, "lr": ')
    shutil.copy(p["teacher"], h["run_no_state"] / "last.pt")  # a checkpoint without train_state
    shutil.copy(p["truncated_ckpt"], h["run_torn_ckpt"] / "last.pt")
    shutil.copy(p["teacher"], h["run_config_list"] / "last.pt")
    (h["run_config_list"] / "config.json").write_text("[1, 2]")

    # 7. non-finite weights; 8. model configs that ask for too much
    def poison(ck):
        ck["state_dict"][next(k for k, v in ck["state_dict"].items() if v.is_floating_point())].view(-1)[0] = math.nan

    def config(**fields):
        return lambda ck: ck["model"]["config"].update(fields)

    for name, src, edit in [("nan_student", p["student"], poison), ("nan_teacher", p["teacher"], poison),
                            ("huge_expand", p["student"], config(expand=200000)),
                            ("huge_widths", p["student"], config(widths=[16, 24, 40, 5000])),
                            ("huge_size", p["student"], config(size=8192)),
                            ("deeper_than_weights", p["student"], config(depths=[4, 4, 4, 4]))]:
        h[name] = checkpoint_variant(src, ws / "ckpt" / f"{name.replace('_', '-')}.pt", edit)
    # 9. students whose input multiple is 64 (pooled input), at sizes 64 and 128
    torch.manual_seed(0)
    h["lowres64"] = save_checkpoint(ws / "ckpt" / "lowres64.pt", build_model("student", size=64).eval())
    h["lowres128"] = save_checkpoint(ws / "ckpt" / "lowres128.pt", build_model("student", size=128).eval())
    # 11. a file name with a newline, an image linked from outside the dataset folder, a corrupt video
    h["newline"] = ws / "ckpt" / "x.pt\nerror: forged second line"
    h["linked"] = _copy_folder(p["good"], ws / "linked")
    shutil.copy(p["good"] / "images" / "s002.png", outside / "s002.png")
    (h["linked"] / "images" / "s002.png").unlink()
    (h["linked"] / "images" / "s002.png").symlink_to(outside / "s002.png")
    h["bad_mp4"] = ws / "clip.mp4"
    h["bad_mp4"].write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00garbage" * 64)
    return h


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
    # --- issue 18, finding 1: a model file is data, never code (PWNED must not appear)
    *[(f"pt2-{kind.replace('_', '-')}", "targets.export",
       ["--checkpoint", "{student}", "--quantized", "{q_%s}" % kind, "--target", "executorch", "--precision", "int8",
        "--out", "{out}"], ["model.pt2", why])
      for kind, why in [("pickled_weight", "stored as a pickle"), ("pickled_sample", "sample inputs"),
                        ("extra_entry", "unexpected entry 'data/weights/extra.pkl'"),
                        ("legacy_weights", "unexpected entry 'data/weights/model.pt'"),
                        ("aoti_library", "unexpected entry 'data/aotinductor"),
                        ("opaque_constant", "refused to load"), ("not_zip", "not a readable exported program")]],
    # --- finding 2: an output never overwrites an input
    ("overwrite-evaluate-json-is-checkpoint", "training.evaluate",
     ["--checkpoint", "{student}", "--data", "{good}", "--json", "{student}"], ["--json", "would overwrite", "--checkpoint"]),
    ("overwrite-evaluate-json-is-teacher", "training.evaluate",
     ["--checkpoint", "{student}", "--teacher", "{teacher}", "--data", "{good}", "--json", "{teacher}"],
     ["--json", "would overwrite", "--teacher"]),
    ("overwrite-compare-out-is-report", "bench.compare", ["{rep}/report.json", "--out", "{rep}/report.json"],
     ["--out", "would overwrite"]),
    ("overwrite-compare-out-is-report-of-folder", "bench.compare", ["{rep}", "--out", "{rep}/report.json"],
     ["--out", "would overwrite"]),
    ("overwrite-compare-out-links-to-report", "bench.compare", ["{rep}", "--out", "{rep_link}"],
     ["--out", "rep-link.md", "would overwrite"]),
    # --- finding 3: manifest paths stay inside the manifest's folder
    *[(f"manifest-path-{kind.replace('_', '-')}", "bench.run",
       ["--manifest", "{art_%s}/manifest.json" % kind, "--device", "x", "--out", "{out}", "--threads", "1"],
       ["manifest entry 'onnx-fp32'", why])
      for kind, why in [("dotdot", "leaves"), ("absolute", "is absolute"), ("not_string", "not a relative file name"),
                        ("symlink_out", "leaves"), ("folder_symlink_out", "symlink leaving")]],
    # --- finding 4: pixel limit from the header, before decoding
    ("pixels-dataset-image", "training.evaluate", ["--checkpoint", "{student}", "--data", "{bomb_image}"],
     ["s001.png", "9000 x 9000", "64,000,000"]),
    ("pixels-dataset-alpha", "training.evaluate", ["--checkpoint", "{student}", "--data", "{bomb_alpha}"],
     ["s001.png", "9000 x 9000"]),
    ("pixels-demo-image", "facemat.demo",
     ["--input", "{bomb_png}", "--checkpoint", "{student}", "--out", "{out}/x.png"], ["--input", "bomb.png", "9000 x 9000"]),
    # --- finding 5: a full disk (a 4 KiB file-size limit) is one line, nothing half-written
    ("disk-full-synth", "facemat.data.synth", ["--out", "{out}", "--count", "2", "--size", "64"],
     ["images/train-000000.png", "File too large", "free some space"]),
    # --- finding 6: damaged run state on --resume
    ("resume-corrupt-config", "training.teacher",
     ["--data", "{good}", "--out", "{run_bad_config}", "--resume", "--steps", "2", "--size", "64"],
     ["config.json", "not readable JSON"]),
    ("resume-config-not-a-table", "training.teacher",
     ["--data", "{good}", "--out", "{run_config_list}", "--resume", "--steps", "2", "--size", "64"],
     ["config.json", "not a settings table"]),
    ("resume-last-without-train-state", "training.teacher",
     ["--data", "{good}", "--out", "{run_no_state}", "--resume", "--steps", "2", "--size", "64", "--workers", "0"],
     ["last.pt", "no complete training state"]),
    ("resume-last-truncated", "training.teacher",
     ["--data", "{good}", "--out", "{run_torn_ckpt}", "--resume", "--steps", "2", "--size", "64", "--workers", "0"],
     ["last.pt", "truncated or corrupt"]),
    # --- finding 7: non-finite weights refused on load
    ("nan-weights-evaluate", "training.evaluate", ["--checkpoint", "{nan_student}", "--data", "{good}"],
     ["nan-student.pt", "NaN or infinite"]),
    ("nan-weights-export", "targets.export",
     ["--checkpoint", "{nan_student}", "--target", "onnx", "--precision", "fp32", "--out", "{out}"],
     ["nan-student.pt", "NaN or infinite"]),
    ("nan-weights-ptq", "quantize.ptq", ["--student", "{nan_student}", "--recipe", "xnnpack", "--out", "{out}"],
     ["nan-student.pt", "NaN or infinite"]),
    ("nan-weights-teacher-for-distill", "training.distill",
     ["--teacher", "{nan_teacher}", "--out", "{out}", "--steps", "1", "--data", "{good}", "--size", "64"],
     ["nan-teacher.pt", "NaN or infinite"]),
    # --- finding 8: a checkpoint's config cannot ask for unbounded memory
    ("config-huge-expand", "training.evaluate", ["--checkpoint", "{huge_expand}", "--data", "{good}"],
     ["huge-expand.pt", "expand 200000", "limit of 16"]),
    ("config-huge-widths", "targets.export",
     ["--checkpoint", "{huge_widths}", "--target", "onnx", "--precision", "fp32", "--out", "{out}"],
     ["huge-widths.pt", "channels 5000", "limit of 1024"]),
    ("config-huge-size", "quantize.ptq", ["--student", "{huge_size}", "--recipe", "xnnpack", "--out", "{out}"],
     ["huge-size.pt", "size 8192", "limit of 2048"]),
    ("config-builds-more-than-it-holds", "training.evaluate",
     ["--checkpoint", "{deeper_than_weights}", "--data", "{good}"], ["deeper-than-weights.pt", "builds", "holds"]),
    # --- finding 9: size contracts checked before work starts, nothing written
    ("size-ptq-above-model-size", "quantize.ptq",
     ["--student", "{lowres64}", "--recipe", "xnnpack", "--out", "{out}", "--size", "128", "--data", "{good}"],
     ["the student's own size 64", "multiple of 64 of at least 128"]),
    ("size-ptq-not-input-multiple", "quantize.ptq",
     ["--student", "{lowres128}", "--recipe", "xnnpack", "--out", "{out}", "--size", "96", "--data", "{good}"],
     ["--size 96", "multiple of 64"]),
    ("size-qat-not-input-multiple", "quantize.qat",
     ["--student", "{lowres128}", "--recipe", "xnnpack", "--out", "{out}", "--size", "96", "--data", "{good}",
      "--weighting", "uniform", "--kd-from", "student"], ["--size 96", "multiple of 64"]),
    ("size-export-not-input-multiple", "targets.export",
     ["--checkpoint", "{lowres128}", "--target", "onnx", "--precision", "fp32", "--out", "{out}", "--size", "96"],
     ["--size 96", "multiple of 64"]),
    # --- finding 10: non-finite numbers in flags
    ("nonfinite-kd-lambda-nan", "training.distill", ["--teacher", "{teacher}", "--out", "{out}", "--kd-lambda", "nan"],
     ["--kd-lambda", "'nan' is not a finite number"]),
    ("nonfinite-lr-inf", "training.teacher", ["--out", "{out}", "--lr", "inf"], ["--lr", "'inf'"]),
    ("nonfinite-gamma-minus-inf", "training.distill", ["--teacher", "{teacher}", "--out", "{out}", "--gamma=-inf"],
     ["--gamma", "'-inf'"]),
    ("nonfinite-weight-decay-nan", "training.teacher", ["--out", "{out}", "--weight-decay", "NaN"],
     ["--weight-decay", "'NaN'"]),
    ("nonfinite-uncertainty-top-nan", "training.evaluate",
     ["--checkpoint", "{student}", "--data", "{good}", "--uncertainty-top", "nan"], ["--uncertainty-top", "'nan'"]),
    ("nonfinite-qat-kd-lambda", "quantize.qat",
     ["--student", "{student}", "--teacher", "{teacher}", "--recipe", "xnnpack", "--out", "{out}", "--kd-lambda", "nan"],
     ["--kd-lambda", "'nan'"]),
    ("nonfinite-demo-margin", "facemat.demo",
     ["--input", "{bomb_png}", "--checkpoint", "{student}", "--out", "{out}/x.png", "--margin", "nan"],
     ["--margin", "'nan'"]),
    # --- finding 11: minor
    ("minor-newline-in-file-name", "training.evaluate", ["--checkpoint", "{newline}", "--data", "{good}"],
     ["x.pt\\nerror: forged"]),
    ("minor-precision-with-all", "targets.export",
     ["--checkpoint", "{student}", "--all", "--precision", "fp32", "--out", "{out}"], ["--precision 'fp32' with --all"]),
    ("minor-image-linked-from-outside", "training.evaluate", ["--checkpoint", "{student}", "--data", "{linked}"],
     ["images/s002.png", "leaves"]),
    ("minor-corrupt-mp4", "facemat.demo",
     ["--input", "{bad_mp4}", "--checkpoint", "{student}", "--out", "{out}/x.mp4"], ["--input", "clip.mp4"]),
]

# Cases run under a file-size limit (bytes): a disk that is full after that much, per file.
FSIZE_LIMITS = {"disk-full-synth": 4096}


def snapshot(ws: Path) -> dict[str, str]:
    return {p.relative_to(ws).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file() and "outs" not in p.relative_to(ws).parts}


def _argv(case, paths: dict[str, Path], ws: Path) -> list[str]:
    name, _, args, _ = case
    subs = {"ws": str(ws), "out": str(ws / "outs" / name), **{k: str(v) for k, v in paths.items()}}
    return [a.format(**subs) for a in args]


def run_batch(cases, paths: dict[str, Path], ws: Path, fsize: int | None = None) -> dict[str, SimpleNamespace]:
    """Run ``cases`` in one subprocess (tests/catalogue_runner.py: each through its command's real main)."""
    spec = ws / "outs" / f"spec-{cases[0][0]}.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps([{"name": c[0], "module": c[1], "argv": _argv(c, paths, ws)} for c in cases]))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def full_disk() -> None:  # writes beyond `fsize` fail with EFBIG, as on a full disk (no SIGXFSZ kill)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    proc = subprocess.run([PY, "-m", "tests.catalogue_runner", str(spec)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=env, preexec_fn=full_disk if fsize else None)
    out = Path(str(spec) + ".out")
    if not out.is_file():  # the runner itself died: every case of the batch reports it
        return {c[0]: SimpleNamespace(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)
                for c in cases}
    return {k: SimpleNamespace(**v) for k, v in json.loads(out.read_text()).items()}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    ws = tmp_path_factory.mktemp("bad")
    paths = make_workspace(ws)
    read_only = make_read_only(paths["readonly"])
    before = snapshot(ws)
    plain = [c for c in CASES if c[0] not in FSIZE_LIMITS]
    batches = [(plain[i::2], None) for i in range(2)] + [([c], FSIZE_LIMITS[c[0]]) for c in CASES
                                                          if c[0] in FSIZE_LIMITS]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            done: dict[str, SimpleNamespace] = {}
            for part in pool.map(lambda b: run_batch(b[0], paths, ws, b[1]), batches):
                done.update(part)
    finally:
        undo_read_only(paths["readonly"])
    after = snapshot(ws)
    done = {c[0]: (done[c[0]], ws / "outs" / c[0]) for c in CASES}
    return {"done": done, "before": before, "after": after, "paths": paths, "read_only": read_only}


def test_catalogue_is_large_enough():
    assert len(CASES) >= 70 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_with_one_clear_line(case, results):
    name, module, _, wanted = case
    if "read-only" in name and not results["read_only"]:
        pytest.fail("could not make a read-only folder here (not root with chattr, nor a user with chmod)")
    proc, out = results["done"][name]
    # A progress bar the command drew before the failure is not a message; anything else is.
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not PROGRESS.search(ln)]
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
