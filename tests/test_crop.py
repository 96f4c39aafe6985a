"""The crop contract (facemat.crop): geometry, sampling, paste-back, its record, and the phone code that repeats it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemat.crop import CROP_FORMAT, DEFAULT, Crop, CropSpec, crop_for, extract, feather_ramp, paste
from facemat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_box_to_square_with_margin_and_shift():
    spec = CropSpec(scale=2.5, shift_up=0.1, roll="eyes", feather=0.05)
    c = crop_for((100, 50, 40, 60), spec, roll=None)  # no eyes: upright
    assert (c.side, c.angle) == (150.0, 0.0)  # 2.5 x the longer side
    assert (c.cx, c.cy) == (120.0, 80.0 - 15.0)  # box centre (120, 80), 0.1 x 150 up
    turned = crop_for((100, 50, 40, 60), spec, roll=math.pi / 2)  # eye line pointing down: head lies on its right
    assert turned.angle == pytest.approx(math.pi / 2)
    assert (turned.cx, turned.cy) == pytest.approx((120.0 + 15.0, 80.0))  # "up" is +x in the frame
    assert crop_for((100, 50, 40, 60), CropSpec(roll="none"), roll=0.3).angle == 0.0


def test_model_pixels_are_pixel_centres_like_a_bilinear_resize():
    """An upright crop inside the frame samples exactly what cv2.resize (align_corners=False) gives."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    c = Crop(cx=60.0, cy=50.0, side=64.0)  # covers frame pixels 28..91 x 18..81
    m = c.matrix(128)
    np.testing.assert_allclose(m @ [59.5, 49.5, 1.0], [63.5, 63.5])  # centre to centre
    np.testing.assert_allclose(m @ [27.5, 17.5, 1.0], [-0.5, -0.5])  # corner to corner (pixel 28's left edge)
    got = extract(frame, c, 128).astype(int)
    want = cv2.resize(frame[18:82, 28:92], (128, 128), interpolation=cv2.INTER_LINEAR).astype(int)
    # The outer model pixels differ: there the crop sees the frame beyond it, the cut-out repeats its edge.
    assert np.abs(got - want)[1:-1, 1:-1].max() <= 1
    assert np.abs(got - want)[0].max() > 10


def test_roll_makes_a_turned_face_upright():
    """A bar along the eye line of a face turned by 30 degrees comes out horizontal."""
    frame = np.zeros((200, 200), np.uint8)
    angle = math.radians(30)
    d = np.array([math.cos(angle), math.sin(angle)]) * 60
    cv2.line(frame, tuple(np.round([100 - d[0], 100 - d[1]]).astype(int)),
             tuple(np.round([100 + d[0], 100 + d[1]]).astype(int)), 255, 5)
    out = extract(frame[..., None].repeat(3, 2), Crop(100.0, 100.0, 150.0, angle), 64)[..., 0]
    rows = out.sum(1)
    assert abs(int(np.argmax(rows)) - 31.5) <= 1  # the bar is one horizontal band through the middle
    assert (out[:20] < 10).all() and (out[-20:] < 10).all()
    upright = extract(frame[..., None].repeat(3, 2), Crop(100.0, 100.0, 150.0, 0.0), 64)[..., 0]
    assert (upright[:20] > 100).any()  # without the roll the bar crosses the top rows


def test_outside_the_frame_the_edge_pixels_repeat():
    frame = np.zeros((50, 50, 3), np.uint8)
    frame[:, 0] = (200, 100, 50)
    out = extract(frame, Crop(10.0, 25.0, 40.0), 40)  # sticks out 10 px to the left
    assert (out[:, :9] == (200, 100, 50)).all()


def test_a_large_crop_is_shrunk_by_area_first():
    """A 1-pixel checkerboard seen through a crop 4x the model side averages to grey (bilinear alone aliases)."""
    frame = ((np.indices((600, 600)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, 2)
    out = extract(frame, Crop(300.3, 299.8, 512.0), 128).astype(float)
    assert abs(out.mean() - 127.5) < 3 and out.std() < 10
    plain = cv2.warpAffine(frame, Crop(300.3, 299.8, 512.0).matrix(128), (128, 128), flags=cv2.INTER_LINEAR)
    assert abs(plain.mean() - 127.5) > 20 or plain.std() > 50  # what the shrink prevents: a wrong grey or moire


def test_paste_puts_the_crop_back_with_a_feathered_edge():
    c = Crop(cx=80.0, cy=60.0, side=100.0, angle=math.radians(20))
    full = paste(np.ones((64, 64), np.float32), c, 120, 160, feather=0.1)
    assert full.shape == (120, 160) and full.dtype == np.float32
    assert full[60, 80] == pytest.approx(1.0)
    corners = c.corners()
    inside = corners.mean(0) + 0.7 * (corners - corners.mean(0))  # well inside, beyond the feather
    for x, y in inside:
        assert full[int(y), int(x)] == pytest.approx(1.0, abs=0.02)
    for x, y in corners.mean(0) + 1.1 * (corners - corners.mean(0)):  # just outside the square
        if 0 <= x < 160 and 0 <= y < 120:
            assert full[int(y), int(x)] == 0.0
    mid_edge = (corners[0] + corners[1]) / 2  # on the edge: the ramp has fallen to about 0
    assert full[int(round(mid_edge[1])), int(round(mid_edge[0]))] < 0.15
    ramp = feather_ramp(64, 0.1)
    assert ramp[32, 0] == pytest.approx(0.5 / 6.4) and ramp[32, 32] == 1.0 and ramp[0, 0] == ramp[32, 0]


def test_extract_then_paste_returns_the_frame_alpha():
    """Cutting a frame-sized alpha through the crop and pasting it back gives it back inside the crop."""
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float32)
    gt = np.clip(1.0 - np.hypot(xx - 82, yy - 58) / 30.0, 0, 1)  # a soft disc
    c = crop_for((60, 35, 45, 45), DEFAULT, roll=math.radians(-10))
    cut = extract(gt[..., None], c, 256)
    back = paste(cut[..., 0] if cut.ndim == 3 else cut, c, 120, 160, feather=0.0)
    inner = paste(np.ones((256, 256), np.float32), c, 120, 160, feather=0.05) >= 0.999
    assert np.abs(back - gt)[inner].max() < 0.03


def test_spec_checks_and_manifest_record():
    rec = DEFAULT.to_manifest()
    assert rec["format"] == CROP_FORMAT and rec["scale"] == DEFAULT.scale and rec["shift_up"] == DEFAULT.shift_up
    assert CropSpec.from_manifest(rec) == DEFAULT
    for bad, msg in (({"scale": 0.5}, "crop scale must be between 1 and 5"),
                     ({"shift_up": 2.0}, "crop shift_up must be between"),
                     ({"roll": "mesh"}, "crop roll must be one of eyes, none"),
                     ({"feather": float("nan")}, "crop feather must be between")):
        with pytest.raises(ConfigError, match=msg):
            CropSpec(**bad)
    with pytest.raises(ConfigError, match=r"m\.json: crop record has format 'x', expected 'facemat-crop/1'"):
        CropSpec.from_manifest({"format": "x"}, "m.json")
    with pytest.raises(ConfigError, match="missing or has a bad field"):
        CropSpec.from_manifest({"format": CROP_FORMAT, "scale": 2.0}, "m.json")


def _number(pattern: str, text: str, where: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{where}: no match for {pattern}"
    return float(m.group(1))


def test_phone_code_and_docs_use_the_same_crop():
    """The Swift and Kotlin FaceCrop defaults and the numbers docs/mobile.md states are the code's."""
    swift = (ROOT / "examples" / "ios" / "FaceMatFilter.swift").read_text()
    kotlin = (ROOT / "examples" / "android" / "FaceMatFilter.kt").read_text()
    doc = (ROOT / "docs" / "mobile.md").read_text()
    for text, where, suffix in ((swift, "FaceMatFilter.swift", ""), (kotlin, "FaceMatFilter.kt", "f")):
        assert _number(rf"scale: (?:Double|Float) = ([0-9.]+){suffix}\b", text, where) == DEFAULT.scale
        assert _number(rf"shiftUp: (?:Double|Float) = ([0-9.]+){suffix}\b", text, where) == DEFAULT.shift_up
        assert _number(rf"feather: (?:Double|Float) = ([0-9.]+){suffix}\b", text, where) == DEFAULT.feather
    section = doc.split("## The crop contract in code", 1)[1].split("\n## ", 1)[0]
    assert f"scale = {DEFAULT.scale:g}" in section and f"shift_up = {DEFAULT.shift_up:g}" in section
    assert f"feather = {DEFAULT.feather:g}" in section
    assert "```swift" in section and "```kotlin" in section
