"""The temporal filter (facemat.temporal) and the clip scores (facemat.evaluation)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from facemat.data.clips import ClipData, render_clip
from facemat.errors import ConfigError, DataError
from facemat.evaluation import ClipScores, format_clip_table, score_clips, temporal_checks
from facemat.metrics import flicker
from facemat.temporal import DEFAULT, TemporalConfig, TemporalFilter, filter_sequence


def _noisy_still(frames: int = 8, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A still scene filmed with sensor noise, and a matte that shimmers on it."""
    rng = np.random.default_rng(seed)
    scene = np.zeros((size, size, 3), np.float32)
    scene[8:24, 8:24] = 0.7
    images = np.clip(scene + rng.normal(0, 2 / 255, (frames, size, size, 3)), 0, 1).astype(np.float32)
    truth = (scene[..., 0] > 0).astype(np.float32)
    alphas = np.clip(truth + rng.normal(0, 0.15, (frames, size, size)), 0, 1).astype(np.float32)
    return images, alphas


def test_filter_reduces_the_flicker_of_a_noisy_still_sequence() -> None:
    images, alphas = _noisy_still()
    out = filter_sequence(images, alphas)
    assert flicker(out) < 0.6 * flicker(alphas)
    # The matte is held where it was, not dragged elsewhere.
    assert abs(float(out.mean()) - float(alphas.mean())) < 0.02


def test_filter_follows_at_once_where_the_picture_changes() -> None:
    size = 32
    before = np.zeros((size, size, 3), np.float32)
    after = before.copy()
    after[:, :16] = 0.8  # a bright hand slides over the left half
    cfg = DEFAULT
    filt = TemporalFilter(cfg)
    first = filt(before, np.ones((size, size), np.float32))
    np.testing.assert_array_equal(first, 1.0)  # the first frame passes through
    out = filt(after, np.zeros((size, size), np.float32))
    r = cfg.radius
    assert np.all(out[:, : 16 - r] == 0.0)  # moved: the new alpha is taken whole (k = 1)
    assert np.allclose(out[:, 16 + r:], 1.0 - cfg.k_min)  # still: only k_min of the change


def test_filter_formula_by_hand() -> None:
    # A uniform luma change c = 0.025 over the frame: the box mean is c everywhere, so with
    # d0 = 0.01, d1 = 0.04: g = (0.025 - 0.01) / 0.03 = 0.5, k = 0.2 + 0.8 * 0.5 = 0.6,
    # out = 0.3 + 0.6 * (0.9 - 0.3) = 0.66.
    cfg = TemporalConfig(k_min=0.2, d0=0.01, d1=0.04, radius=1)
    filt = TemporalFilter(cfg)
    grey = np.full((4, 5, 3), 0.5, np.float32)
    filt(grey, np.full((4, 5), 0.3, np.float32))
    out = filt(grey + 0.025, np.full((4, 5), 0.9, np.float32))
    np.testing.assert_allclose(out, 0.66, atol=1e-6)
    # uint8 frames are divided by 255 first: the same answer.
    filt = TemporalFilter(cfg)
    filt(np.full((4, 5, 3), 100, np.uint8), np.full((4, 5), 0.3, np.float32))
    out = filt(np.full((4, 5, 3), 100, np.uint8) + np.uint8(6), np.full((4, 5), 0.9, np.float32))
    g = (6 / 255 - 0.01) / 0.03
    np.testing.assert_allclose(out, 0.3 + (0.2 + 0.8 * g) * 0.6, atol=1e-5)


def test_k_min_one_turns_the_filter_off_and_reset_forgets() -> None:
    images, alphas = _noisy_still(frames=4)
    np.testing.assert_allclose(filter_sequence(images, alphas, TemporalConfig(k_min=1.0)), alphas, atol=1e-6)
    filt = TemporalFilter()
    filt(images[0], alphas[0])
    filt.reset()
    np.testing.assert_array_equal(filt(images[1], alphas[1]), alphas[1])


def test_filter_settings_and_shapes_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"k_min must be in \(0, 1\]"):
        TemporalConfig(k_min=0.0)
    with pytest.raises(ConfigError, match="needs 0 <= d0 < d1 <= 1"):
        TemporalConfig(d0=0.05, d1=0.05)
    with pytest.raises(ConfigError, match="radius must be an integer from 0 to 16"):
        TemporalConfig(radius=2.5)
    with pytest.raises(ConfigError, match="must be a finite number"):
        TemporalConfig(k_min=float("nan"))
    filt = TemporalFilter()
    with pytest.raises(DataError, match=r"H x W x 3 RGB frames, got shape \(8, 8\)"):
        filt(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(DataError, match=r"alpha of shape \(4, 4\) for a frame of \(8, 8\)"):
        filt(np.zeros((8, 8, 3)), np.zeros((4, 4)))
    filt(np.zeros((8, 8, 3)), np.zeros((8, 8)))
    with pytest.raises(DataError, match="call reset"):
        filt(np.zeros((4, 4, 3)), np.zeros((4, 4)))


# --------------------------------------------------------------------------- clip scores


def _as_data(clip) -> ClipData:
    return ClipData(clip.meta["id"], clip.images.astype(np.float32) / 255, clip.alphas.astype(np.float32) / 255,
                    clip.meta["motion"], np.asarray(clip.meta["cameras"]), clip.meta)


def test_clip_scores_of_the_ground_truth_and_of_a_shimmering_matte() -> None:
    still = _as_data(render_clip("synth", 2, 0, 64, "test", "still"))
    moving = _as_data(render_clip("synth", 2, 1, 64, "test", "moving"))
    rng = np.random.default_rng(0)
    shimmer = [np.clip(c.alphas + rng.normal(0, 0.1, c.alphas.shape), 0, 1) for c in (still, moving)]
    rows = score_clips([still, moving], {"noisy": shimmer}, filtered=("noisy",))
    gt = rows["ground-truth"]
    assert gt["all"]["iou"] == 1.0 and gt["moving"]["dtssd"] == 0.0
    assert gt["still"]["flicker"] < 3.0  # what warping back alone leaves
    assert rows["noisy"]["still"]["flicker"] > 10 * gt["still"]["flicker"]
    assert rows["noisy+filter"]["still"]["flicker"] < 0.7 * rows["noisy"]["still"]["flicker"]
    assert rows["noisy"]["all"]["frames"] == 16 and rows["noisy"]["still"]["clips"] == 1
    assert "flicker" not in rows["noisy"]["moving"]  # moving clips cannot be aligned
    table = format_clip_table(rows)
    assert "noisy+filter" in table and "1 still and 1 moving clips" in table
    with pytest.raises(ValueError, match="predictions of shape"):
        ClipScores().add(np.zeros((2, 8, 8)), still)


def test_temporal_checks_follow_the_numbers() -> None:
    def row(fl, dt, iou_still, iou):
        return {"still": {"flicker": fl, "iou": iou_still}, "moving": {"dtssd": dt}, "all": {"iou": iou}}

    rows = {"m": row(20.0, 0.12, 0.71, 0.70), "m+filter": row(9.0, 0.10, 0.72, 0.695),
            "mesh-oval": row(10.0, 0.13, 0.6, 0.6)}
    assert [c["ok"] for c in temporal_checks(rows, "m")] == [True, True, True, True]
    rows["m+filter"] = row(11.0, 0.13, 0.69, 0.68)
    assert [c["ok"] for c in temporal_checks(rows, "m")] == [False, False, False, False]
    rows["m+filter"] = row(10.0, 0.119, 0.705, 0.685)  # flicker equal to the baseline; IoU -0.005 still, -0.015 all
    assert [c["ok"] for c in temporal_checks(rows, "m")] == [True, True, False, True]
    del rows["mesh-oval"]
    assert len(temporal_checks(rows, "m")) == 3


# --------------------------------------------------------------------------- the documented formula


def _documented_filter(images, alphas, k_min, d0, d1, r):
    """The loops of docs/mobile.md, transliterated: clamped coordinates, horizontal then vertical box mean."""
    out, prev = None, None
    for rgb, a in zip(images, alphas):
        luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        if out is None:
            out, prev = a.astype(np.float64).copy(), luma
            continue
        h, w = luma.shape
        diff = luma - prev
        rows = np.zeros((h, w))
        for x in range(w):
            rows[:, x] = sum(diff[:, min(max(x + dx, 0), w - 1)] for dx in range(-r, r + 1)) / (2 * r + 1)
        box = np.zeros((h, w))
        for y in range(h):
            box[y] = sum(rows[min(max(y + dy, 0), h - 1)] for dy in range(-r, r + 1)) / (2 * r + 1)
        k = k_min + (1 - k_min) * np.clip((np.abs(box) - d0) / (d1 - d0), 0, 1)
        out = out + k * (a - out)
        prev = luma
    return out


def test_the_formula_in_docs_mobile_is_the_reference_implementation() -> None:
    from pathlib import Path

    rng = np.random.default_rng(3)
    images = rng.random((4, 12, 10, 3)).astype(np.float32) * 0.3
    images[2:, :, :5] += 0.5  # something moves in halfway
    alphas = rng.random((4, 12, 10)).astype(np.float32)
    c = DEFAULT
    want = _documented_filter(images, alphas, c.k_min, c.d0, c.d1, c.radius)
    np.testing.assert_allclose(filter_sequence(images, alphas)[-1], want, atol=1e-5)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "mobile.md").read_text()
    section = doc.split("## Holding the matte steady on video", 1)[1]
    assert f"`kMin = {c.k_min:g}`, `d0 = {c.d0:g}`, `d1 = {c.d1:g}`, `r = {c.radius}`" in section
    assert f"let kMin: Float = {c.k_min:g}, d0: Float = {c.d0:g}, d1: Float = {c.d1:g}, radius = {c.radius}" in section
    assert (f"private val kMin: Float = {c.k_min:g}f, private val d0: Float = {c.d0:g}f, "
            f"private val d1: Float = {c.d1:g}f,") in section and f"private val radius: Int = {c.radius}," in section


# --------------------------------------------------------------------------- training.evaluate --clips


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory):
    from facemat.data.synth import SynthSettings, generate

    out = tmp_path_factory.mktemp("clips") / "set"
    generate(SynthSettings(out=out, count=2, seed=6, size=64, split="test", frames=3))
    return out


def test_evaluate_scores_clips_beside_the_baseline(small_clips, tmp_path) -> None:
    import torch

    from facemat.checkpoint import load_checkpoint
    from facemat.data.clips import load_clips
    from facemat.demo import BUNDLED_STUDENT
    from facemat.evaluation import clip_predictions
    from training.evaluate import EvaluateSettings, evaluate, format_table

    report = evaluate(EvaluateSettings(checkpoint=str(BUNDLED_STUDENT), data=None, clips=(str(small_clips),)))
    assert "bands" not in report
    c = report["clips"][0]
    assert c["clips"] == 2 and c["frames"] == 6 and c["model_size"] == 256
    rows = c["rows"]
    assert set(rows) == {"model", "model+filter", "mesh-oval", "mesh-oval+filter", "ground-truth"}
    # The model's row is the student run on each frame (resized to 256 and back) and scored per clip.
    model, _ = load_checkpoint(BUNDLED_STUDENT, expect="student")
    clips = load_clips(small_clips)
    with torch.no_grad():
        preds = [clip_predictions(lambda x: model(torch.from_numpy(x)).numpy()[:, 0], clip, 256) for clip in clips]
    want = score_clips(clips, {"model": preds}, filtered=("model",))
    for name in ("model", "model+filter"):
        assert rows[name]["still"]["flicker"] == pytest.approx(want[name]["still"]["flicker"], rel=1e-4)
        assert rows[name]["moving"]["dtssd"] == pytest.approx(want[name]["moving"]["dtssd"], rel=1e-4)
    assert len(c["checks"]) == 4
    text = format_table(report)
    assert "model+filter" in text and "met] model+filter flicker <= mesh-oval flicker (still clips)" in text


def test_evaluate_clip_flags_are_checked(small_clips, tmp_path, capsys) -> None:
    from facemat.cli import run_main
    from facemat.demo import BUNDLED_STUDENT
    from training.evaluate import main

    ck = ["--checkpoint", str(BUNDLED_STUDENT)]
    for argv, message in (
        (ck, "give --data DIR, --clips DIR, or both"),
        (ck + ["--clips", str(tmp_path / "none")], "--clips: .*none is not a folder"),
        (ck + ["--clips", str(small_clips), "--filter", "k_min=0"], r"k_min must be in \(0, 1\]"),
        (ck + ["--clips", str(small_clips), "--filter", "speed=2"], "--filter: unknown setting 'speed'"),
        (ck + ["--clips", str(tmp_path)], "has no clips/ subfolder"),
    ):
        assert run_main(main, argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err, err
        assert re.search(message, err), (message, err)


# --------------------------------------------------------------------------- training.tune_temporal


def test_tuning_rule_keeps_iou_and_dtssd_then_weighs_flicker_and_dtssd_alike() -> None:
    from training.tune_temporal import pick

    raw = {"still": {"flicker": 10.0}, "moving": {"dtssd": 0.10}, "all": {"iou": 0.70}}

    def result(name, fl, dt, iou):
        return {"config": {"name": name}, "rows": {"still": {"flicker": fl}, "moving": {"dtssd": dt},
                                                   "all": {"iou": iou}}}

    results = [result("lowest flicker, loses IoU", 2.0, 0.05, 0.69),
               result("raises dtSSD", 3.0, 0.11, 0.70),
               result("good", 5.0, 0.08, 0.699),
               result("better", 4.0, 0.085, 0.70)]
    chosen = pick(results, raw, iou_margin=0.005)
    assert chosen["config"]["name"] == "better"  # 0.4 + 0.85 = 1.25 against 0.5 + 0.8 = 1.3
    assert chosen["score"] == pytest.approx(1.25)
    assert "score" not in results[0] and "score" not in results[1]
    assert pick(results[:2], raw, 0.005) is None


def test_tune_runs_the_grid_on_clips(small_clips, tmp_path) -> None:
    from facemat.demo import BUNDLED_STUDENT
    from training.tune_temporal import TuneSettings, format_result, grid, tune

    s = TuneSettings(checkpoint=str(BUNDLED_STUDENT), clips=(str(small_clips),), k_min=(0.1, 1.0), d0=(0.03,),
                     span=(0.16, 2.0), radius=(4,), iou_margin=1.0)
    assert [(c.k_min, c.d1) for c in grid(s)] == [(0.1, 0.19), (0.1, 1.0), (1.0, 0.19), (1.0, 1.0)]
    report = tune(s)
    by = {(r["config"]["k_min"], r["config"]["d1"]): r["rows"] for r in report["grid"]}
    # k_min = 1 is no filter at all: its rows are the unfiltered student's.
    assert by[(1.0, 0.19)]["still"]["flicker"] == pytest.approx(report["raw"]["still"]["flicker"], abs=1e-3)
    assert by[(0.1, 0.19)]["still"]["flicker"] < report["raw"]["still"]["flicker"]
    assert "chosen: k_min" in format_result(report)
    with pytest.raises(ConfigError, match="--clips: .* is not a folder"):
        TuneSettings(checkpoint=str(BUNDLED_STUDENT), clips=(str(tmp_path / "none"),))
