"""BlazeFace in LiteRT: anchors, decoding and weighted NMS against MediaPipe's own graph on real photos.

``tests/data/blazeface_reference.json`` holds what the ``mediapipe`` package's
face-detection graph (0.10.21, min_detection_confidence 0.5) found on the
cached package photos, each also mirrored: boxes, keypoints and scores in photo
pixels (``experiments/blazeface_reference.py`` recorded it in a separate venv,
since that package needs NumPy 1). Our decoding of the same model files must
find the same faces, with boxes and keypoints within 1 % of the box side.
Measured: exact to the printed digits on all but takeo.ppm, where boxes differ
by at most 0.1 % and keypoints by 0.34 % of the side; scores by at most 0.0014.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemat.errors import ConfigError, DataError
from facemat.pretrained.blazeface import CONFIGS, BlazeFace, decode, ssd_anchors, weighted_nms
from facemat.pretrained.fetch import face_photo

REFERENCE = Path(__file__).resolve().parent / "data" / "blazeface_reference.json"
TOL = 0.01  # of the box side


@pytest.fixture(scope="module")
def detectors():
    return {m: BlazeFace(m) for m in CONFIGS}


def test_anchors_follow_mediapipes_ssd_settings():
    short = ssd_anchors(CONFIGS["short"])
    assert short.shape == (896, 2)
    # Stride 8: a 16x16 grid with 2 anchors per cell (aspect 1 + interpolated), then the three
    # stride-16 layers share one 8x8 grid with 6 anchors per cell.
    np.testing.assert_allclose(short[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[1], short[0])
    np.testing.assert_allclose(short[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(short[512:518], np.tile([[0.5 / 8, 0.5 / 8]], (6, 1)))
    np.testing.assert_allclose(short[-1], [7.5 / 8, 7.5 / 8])
    full = ssd_anchors(CONFIGS["full"])
    assert full.shape == (2304, 2)  # one anchor per cell of a 48x48 grid
    np.testing.assert_allclose(full[48], [0.5 / 48, 1.5 / 48])


def test_decode_scales_by_the_input_and_offsets_by_the_anchor():
    cfg = CONFIGS["short"]
    anchors = ssd_anchors(cfg)
    raw = np.zeros((896, 16), np.float32)
    logits = np.full(896, -5.0, np.float32)
    raw[100] = [12.8, -6.4, 25.6, 38.4] + [1.28, 2.56] * 6
    logits[100] = 200.0  # clipped to 100 before the sigmoid
    boxes, scores, kps = decode(raw, logits, anchors, cfg)
    ax, ay = anchors[100]
    cx, cy, w, h = ax + 0.1, ay - 0.05, 0.2, 0.3
    np.testing.assert_allclose(boxes, [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], atol=1e-6)
    np.testing.assert_allclose(scores, [1.0])
    np.testing.assert_allclose(kps[0], np.tile([[ax + 0.01, ay + 0.02]], (6, 1)), atol=1e-6)
    with pytest.raises(DataError, match="not the face_detection_short_range.tflite model"):
        decode(raw[:10], logits[:10], anchors, cfg)


def test_weighted_nms_averages_the_overlapping_boxes_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.6, 0.7])
    kps = np.zeros((3, 6, 2))
    kps[1] += 10.0
    out = weighted_nms(boxes, scores, kps, 0.3)
    assert [s for _, s, _ in out] == [0.9, 0.7]  # the best keeps its own score
    np.testing.assert_allclose(out[0][0], [0.4, 0, 10.4, 10])  # (0.9 * 0 + 0.6 * 1) / 1.5
    np.testing.assert_allclose(out[0][2], np.full((6, 2), 4.0))
    np.testing.assert_allclose(out[1][0], boxes[2])
    # Below the IoU threshold nothing merges.
    assert len(weighted_nms(boxes[:2], scores[:2], kps[:2], 0.9)) == 2


def _photo(name: str, mirrored: bool) -> np.ndarray:
    rgb = np.ascontiguousarray(cv2.imread(str(face_photo(name)), cv2.IMREAD_COLOR)[..., ::-1])
    return np.ascontiguousarray(rgb[:, ::-1]) if mirrored else rgb


def test_matches_mediapipes_own_graph_on_real_photos(detectors):
    ref = json.loads(REFERENCE.read_text())
    assert ref["mediapipe"] == "0.10.21"
    faces = 0
    for row in ref["rows"]:
        got = detectors[row["model"]](_photo(row["photo"], row["mirrored"]))
        where = f"{row['model']} {row['photo']}{' mirrored' if row['mirrored'] else ''}"
        assert len(got) == len(row["faces"]), f"{where}: {len(got)} faces, MediaPipe found {len(row['faces'])}"
        for want in row["faces"]:
            side = max(want["box"][2:])
            d = min(got, key=lambda g: np.abs(np.array(g.box) - want["box"]).max())
            assert np.abs(np.array(d.box) - want["box"]).max() <= TOL * side, (where, d.box, want["box"])
            assert np.abs(d.keypoints - np.array(want["keypoints"])).max() <= TOL * side, where
            assert abs(d.score - want["score"]) <= 0.005, (where, d.score, want["score"])
            faces += 1
    assert faces >= 25  # the reference is not empty: 14 short-range and 19 full-range faces


def test_eye_keypoints_give_the_roll(detectors):
    """Turning a portrait by +-20 degrees turns the eye line by as much, in the same sense.

    BlazeFace's eye points are coarse: the eye line turned by +25.0 and -16.5 degrees on
    Grace Hopper (upright: -6.5), so the tolerance is 7 degrees; a wrong sign is off by 40.
    """
    rgb = _photo("grace_hopper.jpg", False)
    h, w = rgb.shape[:2]
    upright = detectors["short"](rgb)[0].roll()
    for turn in (20.0, -20.0):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), -turn, 1.0)  # cv2 turns counter-clockwise on screen
        turned = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        roll = detectors["short"](turned)[0].roll()
        assert abs(np.degrees(roll - upright) - turn) < 7.0, (turn, np.degrees(upright), np.degrees(roll))


def test_bad_model_and_settings_are_named(tmp_path: Path):
    with pytest.raises(ConfigError, match="must be one of short, full, got 'mid'"):
        BlazeFace("mid")
    with pytest.raises(ConfigError, match="min_score must be in"):
        BlazeFace("short", min_score=1.5)
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a loadable TFLite model"):
        BlazeFace("short", path=bad)
    from facemat.pretrained.fetch import mediapipe_model

    with pytest.raises(DataError, match=r"takes input .*not BlazeFace short's 1x128x128x3"):
        BlazeFace("short", path=mediapipe_model("face_detection_full_range_sparse.tflite"))
    with pytest.raises(DataError, match="uint8 RGB frame"):
        BlazeFace("short")(np.zeros((8, 8), np.uint8))
