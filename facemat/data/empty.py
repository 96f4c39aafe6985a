"""Crops with no face in them: ground truth all 0.

A face finder also boxes things that are not faces (a flag's stars, a pattern, a
hand); the app then mattes that crop, and a model that has only ever seen a face
in every crop paints skin there. These samples teach it the answer: no face, no
matte. Each is a background with the generator's occluders (hands in the
photo's skin colour, cups, phones, hair strands, smoke...) composited over it and
degraded like a camera, exactly as over a face, and the alpha is 0 everywhere.

Backgrounds, group ``train``:

* a face-free region of a training face photo (bodies, necks, clothes, rooms),
  found by keeping well away from every face that the recorded specs
  (:data:`facemat.data.real.FACES`) list or BlazeFace finds in the photo;
* a cut of a texture photograph (:data:`facemat.data.domain.TEXTURES`: a cup, a
  cat's face, a rocket, gravel, grass, bricks);
* the procedural generator's clutter (shapes, stripes, skin-coloured blobs).

Group ``holdout`` draws only from :data:`HOLDOUT_PHOTOS`, six face-free
photographs never trained on: the face-free check (``--source empty-holdout``).
On it IoU is the share of crops left clean (1 when nothing reaches 0.5, else 0)
and SAD the matte painted.

Sample ``i`` depends only on ``(seed, split, i)`` and the cached photos.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import cv2
import numpy as np

from facemat.data.synth import (Sample, _check_seed, _check_size, _check_split, augment, occlude, sample_record,
                                sample_rng)
from facemat.data.synth_face import render_background, render_face
from facemat.data.synth_occluders import sample_occluders
from facemat.errors import ConfigError

__all__ = ["BACKGROUNDS", "HOLDOUT_PHOTOS", "face_boxes", "face_free_window", "render_empty"]

HOLDOUT_PHOTOS = ("hubble_deep_field.jpg", "coins.png", "clock_motion.png", "text.png", "retina.jpg", "ihc.png")
"""Face-free photographs kept out of training (scikit-image data; see :mod:`facemat.pretrained.fetch`)."""
BACKGROUNDS = {"photo-region": 0.4, "texture": 0.4, "clutter": 0.2}
"""Training backgrounds and how often each is drawn."""
GROUPS = ("train", "holdout")
_KEEP_OUT = 1.0  # no window comes nearer a face than this many face sides from its centre
_TRIES = 40


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """A training face photo, decoded once per process."""
    from facemat.data.real import _read_photo

    return _read_photo(name)


@functools.lru_cache(maxsize=None)
def face_boxes(photo: str) -> tuple[tuple[float, float, float], ...]:
    """The faces of one training photo as ``(cx, cy, side)`` squares: the specs', then BlazeFace's, cached.

    BlazeFace runs with its candidates' threshold (0.4) and zoomed windows, so that
    a face the specs leave out (a second person, a profile) is avoided too.
    """
    from facemat.data.real import FACES
    from facemat.finder import CANDIDATE, BlazeFaceFinder

    boxes = [(f.cx, f.cy, f.side) for f in FACES if f.photo == photo]
    image = _photo(photo)
    finder = BlazeFaceFinder("short", confirm=False, min_score=CANDIDATE)
    for d in finder(image):
        x, y, w, h = d.box
        boxes.append((x + w / 2, y + h / 2, 1.5 * max(w, h)))
    return tuple(boxes)


def face_free_window(rng: np.random.Generator, photo: str) -> tuple[int, int, int] | None:
    """A random square ``(x0, y0, side)`` of a training photo clear of its faces, or None when the draws find none.

    Clear means outside every face's keep-out square (:data:`_KEEP_OUT` face sides
    around its centre, from :func:`face_boxes`).
    """
    h, w = _photo(photo).shape[:2]
    faces = face_boxes(photo)
    for _ in range(_TRIES):
        side = int(min(h, w) * rng.uniform(0.12, 0.5))
        x0, y0 = int(rng.uniform(0, w - side)), int(rng.uniform(0, h - side))
        if all(x0 + side <= cx - _KEEP_OUT * s or x0 >= cx + _KEEP_OUT * s or
               y0 + side <= cy - _KEEP_OUT * s or y0 >= cy + _KEEP_OUT * s for cx, cy, s in faces):
            return x0, y0, side
    return None


def _cut(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    cut = image[y0:y0 + side, x0:x0 + side]
    return cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)


def _photo_region(rng: np.random.Generator, size: int) -> np.ndarray | None:
    """A ``size x size`` face-free cut of a training face photo, or None when the draws find none."""
    from facemat.data.real import FACES

    photos = sorted({f.photo for f in FACES if f.group == "train"})
    photo = photos[int(rng.integers(len(photos)))]
    window = face_free_window(rng, photo)
    return None if window is None else _cut(_photo(photo), *window, size)


@functools.lru_cache(maxsize=None)
def _holdout_photos() -> tuple[np.ndarray, ...]:
    from facemat.data.domain import _read_texture

    return tuple(_read_texture(name) for name in HOLDOUT_PHOTOS)


def _holdout_region(rng: np.random.Generator, size: int) -> np.ndarray:
    photos = _holdout_photos()
    image = photos[int(rng.integers(len(photos)))]
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    return _cut(image, int(rng.uniform(0, w - side)), int(rng.uniform(0, h - side)), side, size)


def render_empty(seed: int, index: int, size: int = 256, split: str = "train", group: str = "train") -> Sample:
    """Sample ``index`` of ``(seed, split)``: a face-free background with occluders, alpha 0.

    Returns:
        A :class:`~facemat.data.synth.Sample` whose meta has ``source`` (``empty``
        or ``empty-holdout``), ``background`` and the occluders.
    """
    from facemat.data.domain import photo_background

    _check_seed(seed)
    _check_size(size)
    _check_split(split)
    if group not in GROUPS:
        raise ConfigError(f"face-free group must be one of {', '.join(GROUPS)}, got {group!r}")
    rng = sample_rng(seed, index, f"empty-{group}-{split}")
    if group == "holdout":
        kind, bg = "photo-holdout", _holdout_region(rng, size)
    else:
        kind = str(rng.choice(list(BACKGROUNDS), p=list(BACKGROUNDS.values())))
        bg = _photo_region(rng, size) if kind == "photo-region" else None
        if bg is None and kind == "photo-region":
            kind = "texture"
        if kind == "texture":
            bg = photo_background(rng, size)
        elif kind == "clutter":
            bg = render_background(rng, size)
    # A generated head lends what the occluders aim at (pose, hair, light, hands' skin); its pixels are not used.
    lend = render_face(rng, size)
    scene = dataclasses.replace(lend, rgb=np.ascontiguousarray(bg), skin=np.zeros((size, size), np.float32),
                                parts={})
    image, gt, occluders = occlude(scene, sample_occluders(rng, scene, size))
    if rng.random() < 0.5:
        image = np.ascontiguousarray(image[:, ::-1])
    out, aug = augment(rng, image)
    alpha = np.zeros((size, size), np.uint8)
    meta: dict[str, Any] = {
        **sample_record(seed, index, size, split, gt, 0.0, alpha, occluders),
        "source": "empty" if group == "train" else "empty-holdout",
        "background": kind,
        "augment": aug,
    }
    return Sample(out, alpha, meta, {})
