"""Domain randomization of training samples: photo backgrounds and surfaces, relighting, train split only."""

from __future__ import annotations

import numpy as np
import pytest

from facemat.data import domain
from facemat.data.synth import render_sample
from facemat.data.synth_draw import Layer
from facemat.data.synth_face import render_face
from facemat.data.synth_occluders import Occluder
from facemat.errors import ConfigError
from facemat.pretrained.fetch import ASSETS, texture_photo


def test_texture_photos_are_face_free_package_files():
    textures = {n for n, a in ASSETS.items() if a.group == "textures"}
    assert set(domain.TEXTURES) <= textures  # the rest are the face-free check's (facemat.data.empty)
    with pytest.raises(ConfigError, match="not a texture photograph"):
        texture_photo("grace_hopper.jpg")
    for photo in domain.load_textures():
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert max(photo.shape[:2]) <= 512


def test_only_the_train_split_is_randomized():
    assert domain.domain_rng(0, 3, "val", "synth") is None
    assert domain.domain_rng(0, 3, "test", "synth") is None
    a = domain.domain_rng(0, 3, "train", "synth").random(4)
    assert np.array_equal(a, domain.domain_rng(0, 3, "train", "synth").random(4))
    assert not np.array_equal(a, domain.domain_rng(0, 3, "train", "real-train").random(4))
    # Validation samples carry no randomization; some training samples do.
    assert all("domain" not in render_sample(7, i, 64, "val").meta for i in range(6))
    train = [render_sample(7, i, 64, "train").meta.get("domain", {}) for i in range(12)]
    assert any(d.get("background") == "photo" for d in train)


def test_a_photo_background_changes_the_image_not_the_face():
    bg = domain.photo_background(np.random.default_rng(1), 64)
    plain = render_face(np.random.default_rng(5), 64)
    over = render_face(np.random.default_rng(5), 64, background=bg)
    assert np.array_equal(plain.skin, over.skin)
    assert not np.array_equal(plain.rgb, over.rgb)
    # Far from the head (the corners) the pixels are the photo's.
    assert np.array_equal(over.rgb[0, 0], bg[0, 0])


def test_surfaces_keep_alpha_and_shape_and_hands_stay_skin():
    rng = np.random.default_rng(0)
    alpha = np.zeros((20, 30), np.float32)
    alpha[4:16, 5:25] = 1.0
    rgb = np.full((20, 30, 3), 0.5, np.float32)
    cups = [Occluder("cup", Layer(rgb.copy(), alpha.copy(), 3, 4)) for _ in range(16)]
    hand = Occluder("hand", Layer(rgb.copy(), alpha.copy(), 3, 4))
    out = domain.texture_surfaces(rng, cups + [hand])
    changed = [o for o, c in zip(out[:-1], cups) if not np.array_equal(o.layer.rgb, c.layer.rgb)]
    assert 0 < len(changed) < len(cups)  # P_SURFACE of them
    for o in changed:
        assert np.array_equal(o.layer.alpha, alpha) and (o.layer.y0, o.layer.x0) == (3, 4)
        assert o.layer.rgb.dtype == np.float32 and 0.0 <= o.layer.rgb.min() and o.layer.rgb.max() <= 1.0
    assert out[-1] is hand


def test_relight_is_a_smooth_gradient():
    flat = np.full((32, 32, 3), 128, np.uint8)
    lit = domain.relight(np.random.default_rng(3), flat)
    assert lit.shape == flat.shape and lit.dtype == np.uint8
    grey = lit.astype(np.float32).mean(2)
    assert grey.max() - grey.min() > 20  # a real gradient across the frame
    assert np.abs(np.diff(grey, axis=0)).max() <= 4 and np.abs(np.diff(grey, axis=1)).max() <= 4


def test_the_selfie_segmenter_finds_the_person_in_a_photo():
    from facemat.data.real import load_faces
    from facemat.pretrained.segmenter import SelfieSegmenter

    face = next(f for f in load_faces("train") if f.spec.name == "jesse")
    prob = SelfieSegmenter()(face.image)
    assert prob.shape == face.image.shape[:2]
    cx, cy = face.eyes.mean(0).astype(int)
    assert prob[cy, cx] > 0.8  # between the eyes
    h, w = prob.shape
    assert prob[: h // 10, w - w // 10 :].mean() < 0.5 or prob[h - h // 10 :, : w // 10].mean() < 0.5
