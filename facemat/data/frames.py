"""Camera-like frames: one generated face crop, with its occluders, placed in a larger scene.

What a face finder and the crop contract are checked on. Each frame is a
``width x height`` picture (640x480 by default) of a cluttered, photo-like
background (the generator's own backgrounds, with skin-coloured blobs that are
not faces), a generated 256x256 sample of a :data:`~facemat.data.real.SOURCES`
source scaled to a random size and position and blended in through a soft
disc, and light sensor noise. Every frame holds at least one occluder (a
sample without one is skipped); the generator puts a hand in about 40 % of
them. Ground truth comes along: the visible face-skin alpha in the frame, the
face box (the face skin before occluders), and how much of the face a hand
covers.

Frame ``i`` depends only on ``(source, seed, i, width, height)`` and, for real
faces, the cached package photos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facemat.crop import Crop
from facemat.data.synth import sample_rng
from facemat.data.synth_face import render_background
from facemat.errors import ConfigError

__all__ = ["Frame", "SPLIT", "render_frame"]

SPLIT = "frames"
"""The generator split the face crops are drawn from (never a training split)."""
SIDE = (0.25, 0.9)  # crop side as a fraction of the frame's shorter edge (log-uniform)
_TRIES = 8  # samples tried per frame for one with an occluder
HAND_OVER_FACE = 0.05  # a hand covers at least this fraction of the face skin


@dataclass
class Frame:
    """One camera-like frame and its ground truth.

    Attributes:
        image: ``H x W x 3`` uint8 RGB.
        alpha: ``H x W`` float32 in [0, 1]: visible face skin.
        face_box: ``(x, y, w, h)`` frame pixels: the face skin's box before occluders.
        placed: where the 256x256 training-style crop landed (upright square).
        meta: source, sample id, occluders, ``hand_over_face`` (fraction of the
            face skin a hand covers), ``occluded_fraction``.
    """

    image: np.ndarray
    alpha: np.ndarray
    face_box: tuple[float, float, float, float]
    placed: Crop
    meta: dict[str, Any] = field(default_factory=dict)


def render_frame(source: str, seed: int, index: int, width: int = 640, height: int = 480,
                 sample_size: int = 256) -> Frame:
    """Frame ``index`` of ``(source, seed)``: a pure function of its arguments.

    Raises:
        ConfigError: an unknown source or a frame smaller than 64 pixels.
    """
    from facemat.data.real import render_source

    allowed = ("synth", "real", "real-holdout")  # a frame places one face: sources of one face each
    if source not in allowed:
        raise ConfigError(f"frame source must be one of {', '.join(allowed)}, got {source!r}")
    if min(width, height) < 64:
        raise ConfigError(f"frames must be at least 64x64, got {width}x{height}")
    rng = sample_rng(seed, index, f"{SPLIT}-{source}")
    sample = None
    for t in range(_TRIES):
        s = render_source(source, seed, index * _TRIES + t, sample_size, SPLIT, layers=True)
        if s.meta["occluders"]:
            sample = s
            break
    if sample is None:  # every try came out without an occluder: keep the last one
        sample = s
    bg = render_background(rng, max(width, height))[:height, :width]
    short = min(width, height)
    side = int(round(short * math.exp(rng.uniform(math.log(SIDE[0]), math.log(SIDE[1])))))
    x0 = int(rng.integers(0, width - side + 1))
    y0 = int(rng.integers(0, height - side + 1))

    k = side / sample_size
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    face = cv2.resize(sample.image, (side, side), interpolation=interp).astype(np.float32)
    alpha = cv2.resize(sample.alpha.astype(np.float32) / 255.0, (side, side), interpolation=cv2.INTER_LINEAR)
    # A soft disc carries the crop into the scene: its square corners (the sample's own
    # background) fade out, the head and what covers it stay.
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    r = np.hypot(xx - side / 2, yy - side / 2) / (side / 2)
    disc = np.clip((1.0 - r) / 0.12, 0.0, 1.0)[..., None]
    image = bg.astype(np.float32)
    image[y0:y0 + side, x0:x0 + side] = face * disc + image[y0:y0 + side, x0:x0 + side] * (1.0 - disc)
    noise = rng.normal(0.0, rng.uniform(1.0, 4.0), image.shape).astype(np.float32)
    image = np.clip(image + noise + 0.5, 0, 255).astype(np.uint8)
    gt = np.zeros((height, width), np.float32)
    gt[y0:y0 + side, x0:x0 + side] = alpha * disc[..., 0]

    skin = sample.layers["skin"]
    ys, xs = np.nonzero(skin >= 0.5)
    box = (x0 + xs.min() * k, y0 + ys.min() * k, (xs.max() + 1 - xs.min()) * k, (ys.max() + 1 - ys.min()) * k)
    skin_sum = float(skin.sum())
    hand = float((sample.layers["hand"] * skin).sum() / skin_sum) if skin_sum > 0 else 0.0
    meta = {"source": source, "seed": int(seed), "index": int(index), "sample": sample.meta["id"],
            "sample_index": int(sample.meta["index"]), "occluders": list(sample.meta["occluders"]),
            "hand": bool(sample.meta["hand"]), "hand_over_face": round(hand, 4),
            "occluded_fraction": sample.meta["occluded_fraction"], "crop_side": side}
    return Frame(image, gt, tuple(float(v) for v in box), Crop(x0 + side / 2, y0 + side / 2, float(side)), meta)
