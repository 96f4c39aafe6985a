"""The README's example input: a real photograph with a generated hand over the face.

matplotlib's sample portrait of Grace Hopper (``grace_hopper.jpg``, a US Navy
photograph, generally public domain; fetched into the cache by
:mod:`facemat.pretrained.fetch`, 512x600) with one hand of the procedural
generator (:func:`facemat.data.synth_occluders.hand`) composited over her face,
exactly as :mod:`facemat.data.real` puts occluders on real faces: Face Mesh
locates the face, a generated scene lends what the hand needs (pose, light),
and the hand takes the photo's own skin colour (the hard case: skin that is not
face). The hand's seed is the first of :data:`SEEDS` whose hand covers
:data:`COVER` of the face. Hopper is a held-out face: the shipped models never
trained on her.

``python -m facemat.demo --example --out demo.jpg`` runs the demo on it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["COVER", "SEEDS", "example_picture"]

PHOTO = "grace_hopper.jpg"
FACE = "hopper"
SEEDS = range(100)
COVER = (0.25, 0.45)
"""Share of the face skin the hand covers, lowest and highest."""


def example_picture() -> tuple[np.ndarray, dict[str, Any]]:
    """The example picture, ``600 x 512 x 3`` uint8 RGB, and how it was made (photo, seed, hand cover).

    Raises:
        DataError: the photo or Face Mesh cannot be fetched, or no seed gives a hand in :data:`COVER`.
    """
    from facemat.data.real import EX, load_faces
    from facemat.data.synth import occlude, sample_rng
    from facemat.data.synth_face import Pose, render_face
    from facemat.data.synth_occluders import Occluder, hand
    from facemat.errors import DataError
    from facemat.pretrained.facemesh import fill_polygon

    face = next(f for f in load_faces("holdout") if f.spec.name == FACE)
    photo = face.image
    h, w = photo.shape[:2]
    size = max(h, w)  # the occluder code draws on a square canvas: the photo sits in it, centred
    ox, oy = (size - w) // 2, (size - h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[oy:oy + h, ox:ox + w] = photo
    shift = np.array([ox, oy], np.float32)
    skin = fill_polygon(face.oval + shift, size, size)
    eyes = face.eyes + shift
    eye = eyes[1] - eyes[0]
    mid = eyes.mean(0)
    pose = Pose(cx=float(mid[0]), cy=float(mid[1]), s=float(np.hypot(*eye)) / (2 * EX),
                roll=math.atan2(float(eye[1]), float(eye[0])), yaw=0.0, pitch=0.0)
    tone = (np.median(canvas[skin > 0.5], axis=0) / 255.0).astype(np.float32)
    for seed in SEEDS:
        rng = sample_rng(seed, 0, "example")
        lend = render_face(rng, size)  # lends light and hairline to the hand; its pixels are not used
        scene = dataclasses.replace(lend, rgb=canvas.copy(), skin=skin, pose=pose, tone=tone, parts={})
        layer = hand(rng, scene, size)
        cover = float((layer.full(size)[1] * skin).sum() / skin.sum())
        if COVER[0] <= cover <= COVER[1]:
            image, _, _ = occlude(scene, [Occluder("hand", layer)])
            meta = {"photo": PHOTO, "face": FACE, "hand_seed": seed, "hand_cover": round(cover, 3),
                    "size": [w, h]}
            return np.ascontiguousarray(image[oy:oy + h, ox:ox + w]), meta
    raise DataError(f"no hand seed in 0-{len(SEEDS) - 1} covers {COVER[0]:.0%}-{COVER[1]:.0%} of the face in {PHOTO}")
