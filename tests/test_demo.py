"""``python -m facemat.demo``: the effect lands on visible face skin and never on the hand in front of it.

The faces are generated (``facemat.data.synth``), so the ground truth says which
pixels are an opaque hand and which are visible face skin. Differences are mean
absolute differences over the three channels, in 8-bit levels (0-255), inside
masks eroded by 3 px so that soft edges (where alpha is legitimately between 0
and 1) are not counted.

Thresholds, from what the bundled student measured on the chosen face
(split ``test``, seed 7, the first face with a large opaque hand over the face:
index 1):

* hand: the result may differ from the input by at most ``HAND_MAX`` = 2 levels.
  Measured 0.17 (tint), 0.10 (smooth), 0.07 (cartoon); a matte of ones (a plain
  face mask) gives 31.6 (tint), the inverted ground truth 31.6: the check fails
  for both, as :func:`test_the_checks_fail_for_a_wrong_matte` asserts.
* skin: the result must differ by at least ``SKIN_MIN`` = 8 levels. Measured 25.4
  (tint), 24.0 (smooth), 12.1 (cartoon); the inverted ground truth gives 0.0.

The student is not that good on every face: over the 23 generated faces of that
split with a sizeable hand (first 60 indices) the tint moved the hand by 1.0
levels at the median and 12 at worst. These tests check the demo's wiring
(crop, matte, composite, paste back, side-by-side output), not the model's
accuracy, which the bench measures.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemat.checkpoint import file_sha256
from facemat.cli import run_main
from facemat.crop import DEFAULT as DEFAULT_CROP
from facemat.crop import crop_for
from facemat.data.synth import render_sample
from facemat.demo import (
    BUNDLED_STUDENT,
    EFFECTS,
    DemoSettings,
    composite,
    effect_tint,
    load_matter,
    main,
    process_frame,
    run_demo,
)
from facemat.errors import DataError
from facemat.finder import BlazeFaceFinder

REPO = Path(__file__).resolve().parents[1]
SEED, SPLIT, SIZE = 7, "test", 256
HAND_MAX = 2.0  # levels of 255; see the module docstring
SKIN_MIN = 8.0
ERODE = np.ones((7, 7), np.uint8)  # 3 px each side


def _eroded(mask: np.ndarray) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), ERODE).astype(bool)


def _occluded_face():
    """The first test face with a large opaque hand over the face and enough visible skin left."""
    for index in range(60):
        s = render_sample(SEED, index, SIZE, SPLIT, layers=True)
        if not s.meta["hand"]:
            continue
        hand = _eroded(s.layers["hand"] >= 0.99)
        skin = _eroded(s.alpha >= 253)  # ground truth alpha >= 0.99
        if hand.sum() >= 5000 and (hand & (s.layers["skin"] > 0.5)).sum() >= 2000 and skin.sum() >= 3000:
            return s, hand, skin
    raise AssertionError("no generated face with a large hand over it in the first 60")


@pytest.fixture(scope="module")
def face():
    return _occluded_face()


@pytest.fixture(scope="module")
def matter():
    return load_matter(checkpoint=str(BUNDLED_STUDENT))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mean abs difference over channels, in levels."""
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=-1)


def _hand_and_skin(image: np.ndarray, result: np.ndarray, hand: np.ndarray, skin: np.ndarray) -> tuple[float, float]:
    d = _diff(image, result)
    return float(d[hand].mean()), float(d[skin].mean())


def _respects_occluder(image, result, hand, skin) -> bool:
    hand_d, skin_d = _hand_and_skin(image, result, hand, skin)
    return hand_d < HAND_MAX and skin_d > SKIN_MIN


def _write_png(path: Path, rgb: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_bundled_student_is_the_shipped_one():
    from facemat.checkpoint import load_checkpoint

    model, _ = load_checkpoint(BUNDLED_STUDENT, expect="student")
    assert model.arch == "student-wide" and model.config.size == 256  # the variant benched against Face Mesh
    out = subprocess.run(["git", "check-ignore", "-q", str(BUNDLED_STUDENT)], check=False, cwd=REPO)
    assert out.returncode == 1, f"{BUNDLED_STUDENT} is git-ignored: it would not ship"


def test_cli_tint_leaves_the_hand_and_tints_the_skin(face, tmp_path: Path):
    s, hand, skin = face
    inp = _write_png(tmp_path / "x.png", s.image)
    out = tmp_path / "y.png"
    proc = subprocess.run([sys.executable, "-m", "facemat.demo", "--input", str(inp), "--checkpoint",
                           str(BUNDLED_STUDENT), "--effect", "tint", "--whole-frame", "--out", str(out)],
                          check=False, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sheet = _read_rgb(out)
    assert sheet.shape == (SIZE, 3 * SIZE, 3)  # input | alpha | result
    panel_in, panel_alpha, result = sheet[:, :SIZE], sheet[:, SIZE:2 * SIZE], sheet[:, 2 * SIZE:]
    np.testing.assert_array_equal(panel_in, s.image)
    assert (panel_alpha[..., 0] == panel_alpha[..., 2]).all()  # grey
    alpha = panel_alpha[..., 0] / 255.0
    assert alpha[hand].mean() < 0.05 and alpha[skin].mean() > 0.6  # measured 0.006 and 0.86
    hand_d, skin_d = _hand_and_skin(s.image, result, hand, skin)
    assert hand_d < HAND_MAX, f"tint leaked onto the hand: {hand_d:.2f} levels"
    assert skin_d > SKIN_MIN, f"tint barely changed the skin: {skin_d:.2f} levels"
    summary = json.loads((tmp_path / "y.png.json").read_text())
    assert summary["model"]["sha256"] == file_sha256(BUNDLED_STUDENT)
    assert summary["faces_per_frame"] == [1] and summary["model_input_size"] == 256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png", "y.png", "y.png.json"]  # no temp files left


def test_the_checks_fail_for_a_wrong_matte(face):
    """The hand check catches a plain face mask (alpha 1 everywhere) and the inverted truth;
    the skin check catches the inverted truth. Otherwise the tests above could not fail."""
    s, hand, skin = face
    tinted = effect_tint(s.image)
    gt = s.alpha / 255.0
    assert _respects_occluder(s.image, composite(s.image, gt, tinted), hand, skin)
    ones = composite(s.image, np.ones_like(gt), tinted)
    assert _hand_and_skin(s.image, ones, hand, skin)[0] > HAND_MAX
    inverted = composite(s.image, 1.0 - gt, tinted)
    hand_d, skin_d = _hand_and_skin(s.image, inverted, hand, skin)
    assert hand_d > HAND_MAX and skin_d < SKIN_MIN
    assert not _respects_occluder(s.image, ones, hand, skin)
    assert not _respects_occluder(s.image, inverted, hand, skin)


@pytest.mark.parametrize("effect", EFFECTS)
def test_every_effect_changes_skin_and_spares_the_hand(face, matter, effect: str):
    s, hand, skin = face
    alpha, result, faces = process_frame(s.image, matter, effect, finder=None)
    assert faces == 1 and alpha.shape == (SIZE, SIZE) and result.dtype == np.uint8
    hand_d, skin_d = _hand_and_skin(s.image, result, hand, skin)
    assert hand_d < HAND_MAX, f"{effect} leaked onto the hand: {hand_d:.2f} levels"
    assert skin_d > SKIN_MIN, f"{effect} barely changed the skin: {skin_d:.2f} levels"


def test_detected_face_is_cropped_matted_and_pasted_back(matter):
    """Without --whole-frame: BlazeFace finds a generated face placed in a larger frame; only its
    crop (the crop contract's square around the box) changes, and the skin in it does."""
    s = render_sample(SEED, 3, SIZE, SPLIT)  # unoccluded
    frame = np.full((360, 480, 3), (90, 110, 130), np.uint8)
    frame[60:316, 150:406] = s.image
    gt = np.zeros(frame.shape[:2], np.uint8)
    gt[60:316, 150:406] = s.alpha
    finder = BlazeFaceFinder()
    dets = finder(frame)
    assert len(dets) == 1
    x, y, w, h = dets[0].box
    ys, xs = np.nonzero(gt >= 128)
    assert x < xs.mean() < x + w and y < ys.mean() < y + h
    crop = crop_for(dets[0].box, DEFAULT_CROP, dets[0].roll())
    x0, y0, x1, y1 = crop.bounds(360, 480)
    alpha, result, faces = process_frame(frame, matter, "cartoon", finder)
    assert faces == 1
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (alpha[outside] == 0).all() and (result[outside] == frame[outside]).all()
    skin = _eroded(gt >= 253)
    assert _diff(frame, result)[skin].mean() > SKIN_MIN
    assert ((alpha >= 0.5) & (gt >= 128)).sum() / max(1, ((alpha >= 0.5) | (gt >= 128)).sum()) > 0.6  # IoU


def test_video_gives_a_side_by_side_video(face, tmp_path: Path, capsys):
    s, _, _ = face
    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIZE, SIZE))
    for i in range(3):
        writer.write(cv2.cvtColor(np.roll(s.image, 4 * i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out.mp4"
    summary = run_demo(DemoSettings(input=str(video), out=str(out), effect="smooth",
                                    checkpoint=str(BUNDLED_STUDENT), whole_frame=True))
    assert summary["input_kind"] == "video" and summary["faces_per_frame"] == [1, 1, 1]
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    assert len(frames) == 3 and frames[0].shape == (SIZE, 3 * SIZE, 3)
    assert "3/3" in capsys.readouterr().err  # progress on stderr
    run_demo(DemoSettings(input=str(video), out=str(out), checkpoint=str(BUNDLED_STUDENT), whole_frame=True,
                          max_frames=2))
    assert json.loads((tmp_path / "out.mp4.json").read_text())["frames"] == 2


def test_clip_folder_plays_through_the_temporal_filter_and_reports_its_flicker(tmp_path: Path, capsys):
    from facemat.data.synth import SynthSettings, generate

    generate(SynthSettings(out=tmp_path / "clips", count=1, seed=3, size=SIZE, split="test", frames=5,
                           motion="still"))
    clip = tmp_path / "clips" / "clips" / "test-000000"
    out = tmp_path / "clip.mp4"
    assert run_main(main, ["--input", str(clip), "--checkpoint", str(BUNDLED_STUDENT), "--whole-frame",
                           "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "flicker of the output alphas:" in said and "warped back onto frame 0" in said
    summary = json.loads((tmp_path / "clip.mp4.json").read_text())
    f = summary["flicker"]
    assert summary["input_kind"] == "clip" and summary["frames"] == 5
    # The figures are the student's alphas on the clip's frames, filtered, warped back and measured.
    from facemat.data.clips import align_to_first, read_clip_folder
    from facemat.metrics import dtssd, flicker
    from facemat.temporal import filter_sequence

    data = read_clip_folder(clip)
    matter = load_matter(checkpoint=str(BUNDLED_STUDENT))
    raw = np.stack([np.asarray(matter.runner(x[None]))[0, 0] for x in data.images.transpose(0, 3, 1, 2)])
    filtered = filter_sequence(data.images, raw)
    assert f["unfiltered"] == pytest.approx(flicker(*align_to_first(raw, data.cameras)), abs=0.02)
    assert f["filtered"] == pytest.approx(flicker(*align_to_first(filtered, data.cameras)), abs=0.02)
    assert f["dtssd_filtered"] == pytest.approx(dtssd(filtered, data.alphas), abs=1e-3)
    assert f["ground_truth"] < 3.0 and f["filtered"] != f["unfiltered"]
    assert f"{f['filtered']:.2f} with the temporal filter, {f['unfiltered']:.2f} without" in said
    summary = run_demo(DemoSettings(input=str(clip), out=str(out), checkpoint=str(BUNDLED_STUDENT),
                                    whole_frame=True, filter=None))
    assert "filtered" not in summary["flicker"]
    assert summary["flicker"]["unfiltered"] == pytest.approx(f["unfiltered"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a file or a clip folder"):
        DemoSettings(input=str(tmp_path / "empty"), out=str(out), checkpoint=str(BUNDLED_STUDENT))


def test_no_face_found_is_said_and_the_frame_is_left_alone(tmp_path: Path, capsys):
    grey = np.tile(np.linspace(60, 200, SIZE, dtype=np.uint8)[None, :, None], (SIZE, 1, 3))  # no face in it
    inp = _write_png(tmp_path / "x.png", grey)
    summary = run_demo(DemoSettings(input=str(inp), out=str(tmp_path / "y.png"), checkpoint=str(BUNDLED_STUDENT)))
    assert summary["frames_without_face"] == 1 and summary["finder"]["name"] == "blazeface"
    err = capsys.readouterr().err
    assert "no face found" in err and "--whole-frame" in err
    sheet = _read_rgb(tmp_path / "y.png")
    np.testing.assert_array_equal(sheet[:, 2 * SIZE:], grey)


def test_without_blazeface_the_haar_cascade_is_used_and_said(face, tmp_path: Path, capsys, monkeypatch):
    import facemat.finder
    from facemat.errors import DataError

    def unavailable(*a, **k):
        raise DataError("could not download mediapipe==0.10.21 from the package index: no network")

    monkeypatch.setattr(facemat.finder, "BlazeFaceFinder", unavailable)
    s, _, _ = face
    summary = run_demo(DemoSettings(input=str(_write_png(tmp_path / "x.png", s.image)), out=str(tmp_path / "y.png"),
                                    checkpoint=str(BUNDLED_STUDENT)))
    assert summary["finder"]["name"] == "haar" and "no network" in summary["finder"]["fallback"]
    err = capsys.readouterr().err
    assert "BlazeFace is not available (could not download" in err and "Haar cascade instead" in err


def test_video_faces_are_tracked_and_lost_frames_reported(tmp_path: Path, capsys):
    """A face that drifts, then leaves for 12 frames: shown once confirmed (3 frames), tracked while there,
    held 8 frames when gone, the gap reported on stderr."""
    from facemat.data.frames import render_frame

    f = render_frame("synth", 0, 0)  # 640x480, one face with a few strands over it
    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    small = cv2.resize(f.image, (320, 240), interpolation=cv2.INTER_AREA)
    empty = np.full_like(small, 120)
    for i in range(24):
        img = empty if 6 <= i < 18 else np.roll(small, i, axis=1)
        writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    writer.release()
    summary = run_demo(DemoSettings(input=str(video), out=str(tmp_path / "out.mp4"), checkpoint=str(BUNDLED_STUDENT)))
    faces = summary["faces_per_frame"]
    assert faces[:6] == [0, 0, 1, 1, 1, 1] and faces[6:14] == [1] * 8 and faces[14:20] == [0] * 6
    assert faces[20:] == [1] * 4
    lost = summary["tracking"]["frames_with_a_lost_face"]
    assert lost == list(range(6, 15)) and summary["tracking"]["whole_frame_searches"] < 24
    err = capsys.readouterr().err
    assert "a face was lost in 9 of 24 frames (6-14)" in err, err
    assert summary["crop"]["scale"] == DEFAULT_CROP.scale


# --------------------------------------------------------------------------- errors


def _coreml_folder(tmp_path: Path) -> Path:
    """A manifest listing a (dummy) Core ML package with its right sha256."""
    from targets.common import IOSpec
    from targets.manifest import artifact_sha256, update_manifest

    pkg = tmp_path / "art" / "m.mlpackage"
    pkg.mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    inp, outs = IOSpec(size=256).to_manifest()
    update_manifest(tmp_path / "art" / "manifest.json", {"coreml-fp16": {
        "id": "coreml-fp16", "target": "coreml", "precision": "fp16", "path": "m.mlpackage",
        "sha256": artifact_sha256(pkg), "input": inp, "outputs": outs}})
    return pkg


def _errors(tmp_path: Path) -> list[tuple[list[str], str]]:
    ok_in = _write_png(tmp_path / "x.png", np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "afile").write_text("")
    (tmp_path / "lonely.onnx").write_bytes(b"onnx?")
    ck = ["--checkpoint", str(BUNDLED_STUDENT)]
    out = ["--out", str(tmp_path / "y.png")]
    return [
        (["--input", str(tmp_path / "nope.png"), *ck, *out], r"--input .*nope\.png: no such file"),
        (["--input", str(ok_in), *ck], r"the following arguments are required: --out"),
        (["--input", str(ok_in), *ck, "--effect", "sepia", *out],
         r"--effect must be one of tint, smooth, cartoon, got 'sepia'"),
        (["--input", str(ok_in), *ck, "--detector", "yolo", *out],
         r"--detector must be one of blazeface, blazeface-full, haar, got 'yolo'"),
        (["--input", str(ok_in), "--example", *out], r"give exactly one of --input and --example \(both given\)"),
        ([*ck, *out], r"give exactly one of --input and --example"),
        (["--input", str(ok_in), *out], r"give exactly one of --artifact and --checkpoint \(neither given\)"),
        (["--input", str(ok_in), *ck, "--artifact", str(tmp_path / "lonely.onnx"), *out],
         r"exactly one of --artifact and --checkpoint \(both given\)"),
        (["--input", str(ok_in), *ck, "--out", str(tmp_path / "y.gif")], r"unsupported extension '\.gif'"),
        (["--input", str(ok_in), *ck, "--out", str(tmp_path / "y.mp4")], r"an image input writes \.png"),
        (["--input", str(ok_in), *ck, "--out", str(tmp_path / "afile" / "y.png")], r"afile is a file, not a folder"),
        (["--input", str(tmp_path / "broken.png"), *ck, *out], r"cannot read it as an image"),
        (["--input", str(ok_in), "--artifact", str(tmp_path / "lonely.onnx"), *out],
         r"no manifest\.json in .*the demo runs artifacts written by python -m targets\.export"),
        (["--input", str(ok_in), "--artifact", str(_coreml_folder(tmp_path)), "--whole-frame", *out],
         r"cannot run on this OS .*Core ML artifacts run only on macOS/iOS"),
    ]


def test_user_errors_are_one_line(tmp_path: Path, capsys):
    cases = _errors(tmp_path)
    if sys.platform == "darwin":  # Core ML runs there: the "cannot run on this OS" case does not apply
        cases = [c for c in cases if "Core ML" not in c[1]]
    for argv, pattern in cases:
        assert run_main(main, argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert re.search(pattern, err), (pattern, err)
    assert not (tmp_path / "y.png").exists()


@pytest.mark.slow
def test_artifact_runs_through_its_manifest_like_the_checkpoint(face, tmp_path: Path, capsys):
    """An ONNX fp32 export gives the checkpoint's matte (to one 8-bit level); a copy not in the
    manifest and a changed file are refused."""
    from targets.export import ExportSettings, run_export

    s, hand, skin = face
    art = tmp_path / "artifacts"
    run_export(ExportSettings(out=str(art), target="onnx", precision="fp32", checkpoint=str(BUNDLED_STUDENT),
                              parity_images=1))
    onnx = art / "onnx-fp32.onnx"
    inp = _write_png(tmp_path / "x.png", s.image)
    by_art = run_demo(DemoSettings(input=str(inp), out=str(tmp_path / "a.png"), artifact=str(onnx),
                                   whole_frame=True))
    run_demo(DemoSettings(input=str(inp), out=str(tmp_path / "c.png"), checkpoint=str(BUNDLED_STUDENT),
                          whole_frame=True))
    assert by_art["model"]["id"] == "onnx-fp32" and by_art["model_input_size"] == 256
    a, c = _read_rgb(tmp_path / "a.png").astype(int), _read_rgb(tmp_path / "c.png").astype(int)
    assert np.abs(a - c).max() <= 1
    assert _respects_occluder(s.image, a[:, 2 * SIZE:].astype(np.uint8), hand, skin)

    shutil.copy(onnx, art / "copy.onnx")
    capsys.readouterr()
    assert run_main(main, ["--input", str(inp), "--artifact", str(art / "copy.onnx"), "--whole-frame",
                           "--out", str(tmp_path / "b.png")]) == 2
    assert "not listed in" in capsys.readouterr().err
    with open(onnx, "ab") as f:
        f.write(b"\0")
    assert run_main(main, ["--input", str(inp), "--artifact", str(onnx), "--whole-frame",
                           "--out", str(tmp_path / "b.png")]) == 2
    assert "the manifest says" in capsys.readouterr().err
