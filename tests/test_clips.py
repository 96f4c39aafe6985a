"""Clips with exact per-frame ground truth: rendering, camera transforms, warp-back, the on-disk layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemat.data.clips import (
    CAMERA,
    Camera,
    align_to_first,
    clip_motion,
    load_clips,
    read_clip,
    render_clip,
    scan_clips,
)
from facemat.data.synth import SynthSettings, generate, render_sample
from facemat.errors import ConfigError, DataError
from facemat.metrics import flicker

# --------------------------------------------------------------------------- warp-back


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(image, m, image.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_warp_back_is_exact_for_a_known_integer_shift() -> None:
    rng = np.random.default_rng(0)
    first = rng.random((40, 48)).astype(np.float32)
    cams = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]]])
    seq = np.stack([first, _shifted(first, 3, -2)])
    aligned, valid = align_to_first(seq, cams)
    # Frame 1 shows frame-0 pixel (x, y) at (x + 3, y - 2): it is seen where x <= 44 and y >= 2.
    expected = np.zeros((40, 48), bool)
    expected[2:, :45] = True
    np.testing.assert_array_equal(valid, expected)
    np.testing.assert_array_equal(aligned[1][valid], first[valid])
    assert flicker(aligned, valid) == 0.0
    assert flicker(seq) > 100  # without the warp-back the same pair flickers


def test_warp_back_is_exact_for_a_sub_pixel_shift_of_a_linear_ramp() -> None:
    # Bilinear interpolation reproduces a linear function exactly, so a ramp shifted
    # by a quarter and a half pixel comes back to itself (to float precision).
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    ramp = 0.01 * xs + 0.02 * ys
    cams = np.array([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], [[1.0, 0.0, 1.25], [0.0, 1.0, 1.5]]])
    seq = np.stack([_shifted(ramp, 1.0, 1.0), _shifted(ramp, 1.25, 1.5)])
    aligned, valid = align_to_first(seq, cams)
    inner = valid.copy()
    inner[:3, :] = inner[:, :3] = False  # away from the replicated border of the shifted copies
    assert inner.sum() > 500
    np.testing.assert_allclose(aligned[1][inner], seq[0][inner], atol=2e-6)


def test_warp_back_composes_rotations_about_different_centres() -> None:
    # A smooth scene filmed by two cameras that roll 10 and -6 degrees about different
    # points: frame 1 warped back must match frame 0 (bilinear twice: a small error).
    rng = np.random.default_rng(1)
    scene = cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 4)
    scene = (scene - scene.min()) / np.ptp(scene)
    cams = np.stack([cv2.getRotationMatrix2D((20.0, 24.0), 10.0, 1.0) + [[0, 0, 1.5], [0, 0, -0.5]],
                     cv2.getRotationMatrix2D((40.0, 30.0), -6.0, 1.0) + [[0, 0, -2.0], [0, 0, 1.0]]])
    seq = np.stack([cv2.warpAffine(scene, c, (64, 64), flags=cv2.INTER_LINEAR) for c in cams])
    aligned, valid = align_to_first(seq, cams)
    inner = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.mean() > 0.5
    err = np.abs(aligned[1] - seq[0])[inner]
    assert err.mean() < 0.005 and err.max() < 0.05
    assert np.abs(seq[1] - seq[0])[inner].mean() > 0.05  # the frames themselves differ


def test_warp_back_refuses_a_wrong_number_of_transforms() -> None:
    with pytest.raises(DataError, match="3 frames need 3 camera transforms"):
        align_to_first(np.zeros((3, 8, 8)), np.zeros((2, 2, 3)))


# --------------------------------------------------------------------------- rendering


def test_still_clip_is_deterministic_and_its_cameras_stay_within_the_shake() -> None:
    a = render_clip("synth", 3, 0, 64, "test", "still")
    b = render_clip("synth", 3, 0, 64, "test", "still")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.alphas, b.alphas)
    assert a.images.shape == (8, 64, 64, 3) and a.alphas.shape == (8, 64, 64)
    assert a.meta["motion"] == "still" and a.meta["frames"] == 8
    cams = np.asarray(a.meta["cameras"])
    centre = np.array([31.5, 31.5, 1.0])
    shift = np.linalg.norm(cams @ centre - centre[:2], axis=1)
    assert shift.max() <= CAMERA.shake_px * 64 / 256 + 1e-9
    roll = np.degrees(np.arctan2(cams[:, 1, 0], cams[:, 0, 0]))
    assert np.abs(roll).max() <= CAMERA.roll_deg + 1e-9
    assert np.ptp(roll) > 0.1  # the camera does move
    # The clip films the still sample of the same (seed, split, index): same face, same occluders.
    assert a.meta["occluders"] == render_sample(3, 0, 64, "test").meta["occluders"]


def test_ground_truth_of_a_still_clip_aligns_back_onto_frame_0() -> None:
    clip = render_clip("synth", 5, 2, 128, "test", "still")
    gt = clip.alphas.astype(np.float32) / 255.0
    aligned, valid = align_to_first(gt, np.asarray(clip.meta["cameras"]))
    assert valid.mean() > 0.9
    # Warping back leaves only resampling blur; a wrong transform would leave the shake.
    assert flicker(aligned, valid) < 0.35 * flicker(gt, valid)
    assert flicker(aligned, valid) < 3.0


def test_moving_clip_moves_its_hand() -> None:
    index = next(i for i in range(40) if "hand" in render_sample(11, i, 64, "test").meta["occluders"])
    clip = render_clip("synth", 11, index, 64, "test", "moving")
    assert clip.meta["occluder_motion"]["hand"] == "sweeps in and out"
    hidden = clip.meta["occluded_fraction"]
    # Out along the arm at both ends, at rest mid-clip: the face is most hidden in the middle.
    assert max(hidden[3], hidden[4]) > hidden[0] + 0.02 and max(hidden[3], hidden[4]) > hidden[-1] + 0.02
    still = render_clip("synth", 11, index, 64, "test", "still")
    assert np.ptp(still.meta["occluded_fraction"]) == 0.0


def test_clip_of_a_held_out_real_face() -> None:
    clip = render_clip("real-holdout", 2026, 1, 64, "gen", "moving")
    assert clip.meta["source"] == "real-holdout" and clip.meta["face"] in ("hopper", "ancelotti", "takeo")
    assert clip.alphas.max() == 255 and clip.images.shape == (8, 64, 64, 3)


def test_motion_and_camera_settings_are_checked() -> None:
    assert [clip_motion("both", i) for i in range(3)] == ["still", "moving", "still"]
    with pytest.raises(ConfigError, match="--motion must be one of still, moving, both"):
        clip_motion("shaky", 0)
    with pytest.raises(ConfigError, match="--frames must be an integer from 2 to 64"):
        Camera(frames=1)
    with pytest.raises(ConfigError, match="--frames must be an integer from 2 to 64"):
        SynthSettings(out=Path("x"), count=1, frames=0)


# --------------------------------------------------------------------------- on disk


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clips") / "set"
    generate(SynthSettings(out=out, count=2, seed=4, size=64, split="test", frames=3))
    return out


def test_written_clips_read_back_exactly(clip_folder: Path) -> None:
    assert scan_clips(clip_folder) == ["test-000000", "test-000001"]
    clips = load_clips(clip_folder)
    assert [c.motion for c in clips] == ["still", "moving"]
    for i, c in enumerate(clips):
        want = render_clip("synth", 4, i, 64, "test", c.motion, Camera(frames=3))
        np.testing.assert_array_equal((c.alphas * 255).round().astype(np.uint8), want.alphas)
        np.testing.assert_array_equal((c.images * 255).round().astype(np.uint8), want.images)
        np.testing.assert_array_equal(c.cameras, np.asarray(want.meta["cameras"]))  # every digit kept
    config = json.loads((clip_folder / "config.json").read_text())
    assert config["frames"] == 3 and config["summary"] == {"still": 1, "moving": 1}
    # The same settings again: nothing to do; other settings: refused.
    generate(SynthSettings(out=clip_folder, count=2, seed=4, size=64, split="test", frames=3))
    with pytest.raises(ConfigError, match="frames 3 there vs 4 asked"):
        generate(SynthSettings(out=clip_folder, count=2, seed=4, size=64, split="test", frames=4))


def _clip(root: Path, cid: str = "c0", frames: int = 3, size: int = 32) -> Path:
    folder = root / "clips" / cid
    for sub in ("images", "alphas"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        cv2.imwrite(str(folder / "images" / f"{t:03d}.png"), np.full((size, size, 3), 40 * t, np.uint8))
        cv2.imwrite(str(folder / "alphas" / f"{t:03d}.png"), np.full((size, size), 80 * t, np.uint8))
    return folder


def test_a_clip_made_elsewhere_without_meta_counts_as_moving(tmp_path: Path) -> None:
    _clip(tmp_path)
    clip = read_clip(tmp_path, "c0")
    assert clip.motion == "moving" and clip.cameras is None and clip.alphas.shape == (3, 32, 32)
    assert clip.alphas[2, 0, 0] == pytest.approx(160 / 255)


@pytest.mark.parametrize("breakage, message", [
    ("no clips", r"has no clips/ subfolder \(expected .*/clips/<id>/images/<t>.png"),
    ("empty clips", r"has no clips: .*clips holds no clip folders"),
    ("no alphas", r"dataset folder .*c0 has no alphas/ subfolder"),
    ("unmatched", r"image and alpha file names do not match; 1 in images/ without an alpha: 003"),
    ("not numbers", r"frame names must be frame numbers \(000.png, 001.png, ...\), got first.png"),
    ("gap", r"frames must be numbered 0..T-1 without gaps; frame 1 is missing"),
    ("one frame", r"has 1 frame; a clip needs at least 2"),
    ("empty file", r"001.png is an empty \(zero-byte\) file"),
])
def test_scan_rejects_bad_layouts_with_one_line(tmp_path: Path, breakage: str, message: str) -> None:
    root = tmp_path / "set"
    root.mkdir()
    if breakage != "no clips":
        (root / "clips").mkdir()
    if breakage not in ("no clips", "empty clips"):
        folder = _clip(root, frames=1 if breakage == "one frame" else 3)
        if breakage == "no alphas":
            for f in (folder / "alphas").iterdir():
                f.unlink()
            (folder / "alphas").rmdir()
        elif breakage == "unmatched":
            cv2.imwrite(str(folder / "images" / "003.png"), np.zeros((32, 32, 3), np.uint8))
        elif breakage == "not numbers":
            for sub in ("images", "alphas"):
                (folder / sub / "000.png").rename(folder / sub / "first.png")
        elif breakage == "gap":
            for sub in ("images", "alphas"):
                (folder / sub / "001.png").unlink()
        elif breakage == "empty file":
            (folder / "alphas" / "001.png").write_bytes(b"")
    with pytest.raises(DataError, match=message) as info:
        scan_clips(root)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("meta, message", [
    ("{not json", r"meta.json: not readable JSON"),
    ('{"motion": "jumpy"}', r"motion must be still or moving, got 'jumpy'"),
    ('{"motion": "still"}', r"a still clip needs 'cameras'"),
    ('{"motion": "still", "cameras": [[[1, 0, 0], [0, 1, 0]]]}', r"'cameras' must be 3 finite 2 x 3 transforms"),
    ('{"motion": "still", "cameras": [[[0, 0, 0], [0, 0, 0]], [[1, 0, 0], [0, 1, 0]], [[1, 0, 0], [0, 1, 0]]]}',
     r"a camera transform is not invertible"),
])
def test_read_rejects_a_bad_meta_json(tmp_path: Path, meta: str, message: str) -> None:
    folder = _clip(tmp_path)
    (folder / "meta.json").write_text(meta)
    with pytest.raises(DataError, match=message):
        read_clip(tmp_path, "c0")


def test_read_rejects_frames_of_different_sizes(tmp_path: Path) -> None:
    folder = _clip(tmp_path)
    cv2.imwrite(str(folder / "images" / "002.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(folder / "alphas" / "002.png"), np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError, match=r"frame 002 is 64x64 but frame 000 is 32x32"):
        read_clip(tmp_path, "c0")


def test_camera_transforms_are_exact_in_json() -> None:
    clip = render_clip("synth", 1, 0, 64, "test", "still", Camera(frames=2))
    back = json.loads(json.dumps(clip.meta))["cameras"]
    assert back == clip.meta["cameras"]
    assert all(math.isfinite(v) for m in back for row in m for v in row)
