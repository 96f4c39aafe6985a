"""Face-free crops (alpha 0): backgrounds clear of faces, held-out photos kept out of training, the mix."""

from __future__ import annotations

import numpy as np
import pytest

from facemat.data import domain, empty
from facemat.data.real import FACES, MIX_EMPTY_P, SOURCES, render_mix, render_source
from facemat.errors import ConfigError
from facemat.pretrained.fetch import ASSETS


def test_held_out_photos_are_fetched_and_never_trained_on():
    textures = {n for n, a in ASSETS.items() if a.group == "textures"}
    assert set(empty.HOLDOUT_PHOTOS) <= textures
    assert not set(empty.HOLDOUT_PHOTOS) & set(domain.TEXTURES)
    assert not set(empty.HOLDOUT_PHOTOS) & {f.photo for f in FACES}
    # Training draws come from the training backgrounds only.
    kinds = {render_source("empty", 3, i, 64).meta["background"] for i in range(40)}
    assert kinds <= set(empty.BACKGROUNDS) and len(kinds) >= 2
    assert {render_source("empty-holdout", 3, i, 64, "gen").meta["background"] for i in range(6)} == {"photo-holdout"}


@pytest.mark.parametrize("source", ["empty", "empty-holdout"])
def test_a_face_free_crop_has_alpha_zero_and_is_a_pure_function(source):
    a = render_source(source, 5, 2, 64, "train")
    b = render_source(source, 5, 2, 64, "train")
    assert a.image.shape == (64, 64, 3) and a.image.dtype == np.uint8
    assert a.alpha.shape == (64, 64) and not a.alpha.any()
    assert np.array_equal(a.image, b.image) and a.meta == b.meta
    assert a.meta["source"] == source and a.meta["occluded_fraction"] == 0.0
    assert not np.array_equal(a.image, render_source(source, 5, 3, 64, "train").image)


def test_photo_windows_keep_clear_of_every_face():
    for photo in ("bus.jpg", "multi_face.jpg", "obama3.jpg"):
        faces = empty.face_boxes(photo)
        # The specs' faces are among them, and BlazeFace adds the ones the specs leave out.
        assert {(f.cx, f.cy, f.side) for f in FACES if f.photo == photo} <= set(faces)
        rng = np.random.default_rng(0)
        windows = [w for w in (empty.face_free_window(rng, photo) for _ in range(30)) if w is not None]
        assert windows, photo
        for x0, y0, side in windows:
            for cx, cy, s in faces:
                k = empty._KEEP_OUT * s
                assert x0 + side <= cx - k or x0 >= cx + k or y0 + side <= cy - k or y0 >= cy + k


def test_mix_empty_is_the_mix_with_a_share_of_face_free_crops():
    n = 200
    samples = [render_source("mix-empty", 1, i, 32) for i in range(n)]
    blank = [s.meta["source"] == "empty" for s in samples]
    assert abs(sum(blank) / n - MIX_EMPTY_P) < 0.06
    for i, s in enumerate(samples[:40]):
        if not blank[i]:
            assert np.array_equal(s.image, render_mix(1, i, 32).image)
        else:
            assert not s.alpha.any()


def test_clip_and_frame_sources_refuse_face_free_crops():
    from facemat.data.clips import render_clip
    from facemat.data.frames import render_frame

    assert {"mix-empty", "empty", "empty-holdout"} <= set(SOURCES)
    with pytest.raises(ConfigError, match="a clip follows a face"):
        render_clip("empty", 0, 0, 64)
    with pytest.raises(ConfigError, match="frame source must be one of synth, real, real-holdout, got 'empty'"):
        render_frame("empty", 0, 0)
    with pytest.raises(ConfigError, match="face-free group must be one of train, holdout"):
        empty.render_empty(0, 0, 64, "train", "val")
