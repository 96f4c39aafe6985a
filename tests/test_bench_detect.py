"""bench.detect and the camera-like frames it measures finders on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.detect import DetectSettings, main, match, run_detect
from facemat.cli import run_main
from facemat.data.frames import render_frame
from facemat.errors import ConfigError
from facemat.pretrained.blazeface import Detection


def test_frames_are_deterministic_and_carry_their_ground_truth():
    a, b = render_frame("synth", 3, 1), render_frame("synth", 3, 1)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (480, 640, 3) and a.alpha.shape == (480, 640)
    assert a.meta["occluders"]  # every frame has an occluder
    x, y, w, h = a.face_box
    ys, xs = np.nonzero(a.alpha > 0.5)  # the visible face skin lies in the face box
    assert xs.min() >= x - 1 and xs.max() <= x + w + 1 and ys.min() >= y - 1 and ys.max() <= y + h + 1
    side = a.placed.side
    assert 0.25 * 480 - 1 <= side <= 0.9 * 480 + 1
    assert not np.array_equal(render_frame("synth", 3, 2).image, a.image)
    with_hand = [render_frame("synth", 3, i) for i in range(6)]
    assert any(f.meta["hand_over_face"] >= 0.05 for f in with_hand)
    assert all(f.meta["hand_over_face"] == 0 for f in with_hand if not f.meta["hand"])
    with pytest.raises(ConfigError, match="frame source must be one of synth, real, real-holdout, got 'mix'"):
        render_frame("mix", 0, 0)


def test_match_needs_the_centre_in_the_box_and_a_similar_size():
    face = (100.0, 100.0, 100.0, 120.0)
    good, small, off = Detection((110, 120, 90, 90), 0.7), Detection((140, 140, 20, 20), 0.9), \
        Detection((300, 100, 100, 100), 0.8)
    assert match([small, good, off], face) == (1, 2)
    assert match([small, off], face) == (None, 2)
    assert match([], face) == (None, 0)


def test_a_small_run_reports_rates_and_framing(tmp_path: Path, capsys):
    out = run_detect(DetectSettings(finders=("blazeface-frame", "haar"), sources=("synth",), count=3,
                                    framing_count=3, json=str(tmp_path / "r.json")))
    saved = json.loads((tmp_path / "r.json").read_text())
    summary, rows = saved["rate"]["summary"], saved["rate"]["rows"]
    assert saved["rate"]["frames"] == 3 and set(summary) == {"blazeface-frame", "haar"}
    for name, v in summary.items():
        assert v["all"]["of"] == 3 and v["all"]["found"] == sum(r[name]["found"] for r in rows)
        assert v["hand"]["of"] + v["no_hand"]["of"] == 3
    assert out["framing"]["synth"]["samples"] == 3 and out["framing"]["both"]["samples"] == 6
    printed = capsys.readouterr().out
    assert "haar" in printed and "derived crop" in printed and "cores" in printed


def test_bad_settings_are_one_line(capsys):
    for argv, msg in ((["--finders", "yolo"], "--finders takes a comma-separated list of blazeface"),
                      (["--count", "0"], "--count and --framing-count must be >= 1"),
                      (["--width", "10"], "--width and --height must be between 64 and 4096")):
        assert run_main(main, argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and msg in err and "\n" not in err
