"""Domain randomization of training samples: photographs behind and on the scene, and relighting.

A model that sees one renderer learns that renderer. Training samples
(split ``train`` only) therefore also get, each with its own probability:

* **a photographed background**: a crop of a face-free photograph that a
  package ships (:data:`facemat.pretrained.fetch.ASSETS`, group ``textures``),
  rotated, mirrored, tinted and defocused. Procedural heads are drawn over it;
  real photos keep their person (the selfie segmenter's mask) over it;
* **photographed occluder surfaces**: cups, phones, microphones, masks and
  glasses frames take the shading of their drawing and the texture of a photo;
* **relighting**: a smooth directional light gradient with a colour cast over
  the whole frame (image only: light does not move the face).

Only the image changes: the ground truth is the same skin and occluders. Every
draw comes from :func:`domain_rng`, a generator of its own keyed by the sample,
so the main sample stream, and every other split (validation, test, the
generalization set), renders exactly as without randomization.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import cv2
import numpy as np

from facemat.data.synth_draw import Layer
from facemat.data.synth_occluders import Occluder
from facemat.errors import DataError

__all__ = ["P_BACKGROUND", "P_RELIGHT", "P_SURFACE", "SURFACE_KINDS", "TEXTURES", "domain_rng", "load_textures",
           "photo_background", "photo_patch", "relight", "texture_surfaces"]

TEXTURES = ("coffee.png", "chelsea.png", "rocket.jpg", "gravel.png", "grass.png", "brick.png")
"""The face-free photographs cut into backgrounds and surfaces (the fetch list's other ``textures`` are
never trained on: :data:`facemat.data.empty.HOLDOUT_PHOTOS`)."""

P_BACKGROUND = 0.5
P_SURFACE = 0.5
P_RELIGHT = 0.4
SURFACE_KINDS = ("mask", "phone", "cup", "microphone", "glasses")
"""Occluders with solid surfaces that may take a photographed texture (hands keep skin, hair keeps hair)."""

_DOMAIN_KEY = 0xD0
_MAX_SIDE = 512


def domain_rng(seed: int, index: int, split: str, stream: str) -> np.random.Generator | None:
    """The randomization generator of one training sample, or None outside the ``train`` split.

    ``stream`` names the renderer (``synth``, ``real``), so the two never share draws.
    """
    if split != "train":
        return None
    return np.random.default_rng([seed, index, _DOMAIN_KEY, sum(map(ord, stream))])


@functools.lru_cache(maxsize=None)
def load_textures() -> tuple[np.ndarray, ...]:
    """The texture photographs as ``H x W x 3`` uint8 RGB (longest side at most 512), cached per process.

    Raises:
        DataError: a photo cannot be fetched or decoded.
    """
    return tuple(_read_texture(name) for name in TEXTURES)


def _read_texture(name: str) -> np.ndarray:
    """A face-free photograph of the fetch list's ``textures`` group, uint8 RGB, longest side at most 512."""
    from facemat.pretrained.fetch import texture_photo

    path = texture_photo(name)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grey PNGs come back as three equal channels
    if bgr is None:
        raise DataError(f"{path}: cannot be decoded as an image; delete it and run "
                        "python -m facemat.pretrained.fetch --what textures")
    scale = _MAX_SIDE / max(bgr.shape[:2])
    if scale < 1:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[..., ::-1])


def photo_patch(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random ``height x width x 3`` uint8 cut of a texture photo: any scale, quarter-turn, mirror and tint."""
    photos = load_textures()
    photo = photos[int(rng.integers(len(photos)))]
    photo = np.rot90(photo, int(rng.integers(4)))
    if rng.random() < 0.5:
        photo = photo[:, ::-1]
    ph, pw = photo.shape[:2]
    aspect = width / height
    ch = min(ph, pw / aspect) * rng.uniform(0.25, 1.0)
    cw = ch * aspect
    y0, x0 = rng.uniform(0, ph - ch), rng.uniform(0, pw - cw)
    patch = np.ascontiguousarray(photo[int(y0):int(y0 + ch) + 1, int(x0):int(x0 + cw) + 1])
    shrink = patch.shape[0] > height
    patch = cv2.resize(patch, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    # A colour tint (the grey textures become coloured ones) and a brightness change.
    gain = rng.uniform(0.55, 1.25, 3) * rng.uniform(0.7, 1.2)
    return cv2.convertScaleAbs(patch.astype(np.float32) * gain.astype(np.float32)[None, None], alpha=1.0)


def photo_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size x size x 3`` uint8 background cut from a texture photo, defocused half of the time."""
    bg = photo_patch(rng, size, size)
    if rng.random() < 0.5:
        bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.5, 4.0) * size / 256)
    return bg


def texture_surfaces(rng: np.random.Generator, occluders: list[Occluder]) -> list[Occluder]:
    """Occluders with some solid surfaces re-coloured by a photo texture, keeping their shading.

    The drawing's luminance (its shading and edges) modulates the photo, so the
    object keeps its shape; its alpha, and so the ground truth, is unchanged.
    """
    out = []
    for occ in occluders:
        if occ.kind in SURFACE_KINDS and rng.random() < P_SURFACE and not occ.layer.empty():
            layer = occ.layer
            h, w = layer.alpha.shape
            tex = photo_patch(rng, h, w).astype(np.float32) / 255.0
            lum = layer.rgb @ np.array([0.299, 0.587, 0.114], np.float32)
            solid = lum[layer.alpha > 0.5]
            shade = lum / max(float(solid.mean()) if solid.size else 1.0, 1e-3)
            mix = np.float32(rng.uniform(0.5, 1.0))
            rgb = (1 - mix) * layer.rgb + mix * np.clip(tex * np.clip(shade, 0.0, 2.0)[..., None], 0.0, 1.0)
            layer = Layer(np.ascontiguousarray(rgb, dtype=np.float32), layer.alpha, layer.y0, layer.x0)
            occ = dataclasses.replace(occ, layer=layer)
        out.append(occ)
    return out


def relight(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A directional light gradient with a colour cast over ``H x W x 3`` uint8 RGB (a new array)."""
    h, w = image.shape[:2]
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / w - 0.5) * math.cos(a) + (yy / h - 0.5) * math.sin(a)) * 2.0  # -1 .. 1 across the frame
    strength = rng.uniform(0.15, 0.5)
    cast = 1.0 + rng.uniform(-0.12, 0.12, 3).astype(np.float32)
    gain = (1.0 + strength * ramp)[..., None] * cast[None, None]
    return cv2.convertScaleAbs(image.astype(np.float32) * gain, alpha=1.0)
