"""Short video clips with exact per-frame ground truth: how stable a matte is over time.

A phone films a person holding still: the camera shakes by a pixel or so, the
sensor adds noise, the encoder adds JPEG artefacts. A matte that shimmers from
frame to frame under that is worse for a filter than a slightly soft one. These
clips measure it.

Each clip starts from one generated sample (a procedural face, or a real photo
from :mod:`facemat.data.real`, with the generator's occluders) and films it for
``frames`` frames:

* **still** clips: nothing moves but the camera. Every frame is the same scene
  warped by that frame's camera transform (shake up to ``shake_px`` pixels and
  ``roll_deg`` degrees of roll about the image centre), so alphas can be warped
  back onto frame 0 exactly (:func:`align_to_first`) and their per-pixel spread
  is flicker (:func:`facemat.metrics.flicker`).
* **moving** clips: the head turns and shifts slightly and the occluders move on
  their own: a hand sweeps in and out along its arm, hair sways about its root,
  a cup rises to the mouth, a phone or microphone drifts, smoke rises. Glasses
  and masks move with the head. These are scored with dtSSD
  (:func:`facemat.metrics.dtssd`).

The scene is composited per frame with the same layered alpha as the still
samples (ground truth = face skin x prod(1 - occluder alpha)), then the camera
warps image and ground truth alike, and only the image gets the per-clip tone
curve, per-frame Gaussian noise (``noise`` in 8-bit units) and JPEG at
``jpeg`` quality.

On disk (``python -m facemat.data.synth --frames 8 ...``)::

    <root>/clips/<id>/images/<t>.png    RGB frame t (t = 000, 001, ...)
    <root>/clips/<id>/alphas/<t>.png    its ground-truth alpha, 255 = face skin
    <root>/clips/<id>/meta.json         motion, camera transforms, occluders, ...
    <root>/meta.jsonl, config.json      one record per clip; the settings

Each clip folder is itself a folder of the image layout (:mod:`facemat.data.folder`)
and is checked with the same one-line errors; frame names must be the numbers
0..T-1. ``meta.json`` is optional for clips made elsewhere: without it a clip
counts as moving (dtSSD only), since nothing says how to align its frames.

A clip depends only on ``(source, seed, split, index, size, frames, motion,
camera)``: the scene draws from the sample's own generator (the same face and
occluders as ``render_source`` gives the still sample of that index), the
motion from ``sample_rng(seed, index, "<split>/clip")``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facemat.data.synth import (
    _check_seed,
    _check_size,
    _check_split,
    _colour_lut,
    _encode_png,
    occlude,
    sample_id,
    sample_rng,
)
from facemat.data.synth_face import Scene, render_face
from facemat.data.synth_occluders import Occluder, sample_occluders
from facemat.errors import ConfigError, DataError

__all__ = [
    "CAMERA",
    "Camera",
    "Clip",
    "ClipData",
    "MOTIONS",
    "align_to_first",
    "clip_files",
    "clip_motion",
    "generate_clips",
    "load_clips",
    "read_clip",
    "read_clip_folder",
    "render_clip",
    "scan_clips",
]

CLIP_GENERATOR = "facemat.data.clips/1"
"""Name and version of the clip generator; bump it when the same settings start giving other pixels."""

MOTIONS = ("still", "moving", "both")
"""``both``: even indices still, odd indices moving."""

MAX_FRAMES = 64
_ATTACHED = ("glasses", "mask")  # move with the head
_HAIR = ("fringe", "strands")  # move with the head and sway about their root


@dataclass(frozen=True)
class Camera:
    """How the simulated phone films a clip. The defaults are the outside check's.

    Attributes:
        frames: frames per clip (>= 2).
        shake_px: largest shift of a frame, pixels at 256 x 256 (scaled with the size).
        roll_deg: largest roll of a frame about the image centre, degrees.
        noise: standard deviation of the Gaussian sensor noise, 8-bit units.
        jpeg: JPEG quality of every frame (1..100), or 0 for none.
    """

    frames: int = 8
    shake_px: float = 1.5
    roll_deg: float = 1.0
    noise: float = 2.0
    jpeg: int = 85

    def __post_init__(self) -> None:
        if not isinstance(self.frames, (int, np.integer)) or isinstance(self.frames, bool) \
                or not 2 <= self.frames <= MAX_FRAMES:
            raise ConfigError(f"--frames must be an integer from 2 to {MAX_FRAMES}, got {self.frames!r}")
        for name, v, hi in (("shake_px", self.shake_px, 16.0), ("roll_deg", self.roll_deg, 10.0),
                            ("noise", self.noise, 64.0)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= hi):
                raise ConfigError(f"camera {name} must be a number from 0 to {hi}, got {v!r}")
        if not isinstance(self.jpeg, (int, np.integer)) or not 0 <= self.jpeg <= 100:
            raise ConfigError(f"camera jpeg must be a quality from 1 to 100, or 0 for none, got {self.jpeg!r}")


CAMERA = Camera()


@dataclass
class Clip:
    """One generated clip.

    Attributes:
        images: ``T x H x W x 3`` uint8 RGB frames.
        alphas: ``T x H x W`` uint8 ground truth, 255 = visible face skin.
        meta: the clip's ``meta.json`` record; ``cameras`` holds each frame's
            ``2 x 3`` camera transform (scene pixels -> frame pixels).
    """

    images: np.ndarray
    alphas: np.ndarray
    meta: dict[str, Any]


def clip_motion(motion: str, index: int) -> str:
    """``still`` or ``moving`` for clip ``index`` of a set asked for with ``motion`` (one of :data:`MOTIONS`)."""
    if motion not in MOTIONS:
        raise ConfigError(f"--motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    if motion == "both":
        return "still" if index % 2 == 0 else "moving"
    return motion


# --------------------------------------------------------------------------- transforms


def _affine(angle: float, centre: tuple[float, float], shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``2 x 3``: rotate by ``angle`` (radians, image coordinates) about ``centre``, then shift."""
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = centre
    return np.array([[c, -s, cx - c * cx + s * cy + shift[0]], [s, c, cy - s * cx - c * cy + shift[1]]])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` after ``b`` (both ``2 x 3``)."""
    return (_h(a) @ _h(b))[:2]


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(m, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def to_first(cameras: np.ndarray) -> np.ndarray:
    """Per frame, the ``2 x 3`` map from frame-0 pixels to frame-t pixels: ``W_t W_0^-1``.

    Args:
        cameras: ``T x 2 x 3`` scene -> frame transforms (pixel centres at integer coordinates).
    """
    first = np.linalg.inv(_h(cameras[0]))
    return np.stack([(_h(c) @ first)[:2] for c in cameras])


def align_to_first(seq: np.ndarray, cameras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warp every frame's alpha back onto frame 0 (bilinear), and the pixels all frames see.

    Args:
        seq: ``T x H x W`` float alphas, frame t filmed with ``cameras[t]``.
        cameras: ``T x 2 x 3`` scene -> frame transforms (a clip's ``meta["cameras"]``).

    Returns:
        ``(aligned T x H x W float32, valid H x W bool)``: ``aligned[t](p) = seq[t](M_t p)``
        with ``M_t`` from :func:`to_first`; ``valid`` marks the frame-0 pixels whose
        every ``M_t p`` lies inside its frame (no border guessing).
    """
    seq = np.asarray(seq, np.float32)
    t_len, h, w = seq.shape
    cams = np.asarray(cameras, np.float64)
    if cams.shape != (t_len, 2, 3):
        raise DataError(f"{t_len} frames need {t_len} camera transforms of 2 x 3, got an array of shape {cams.shape}")
    maps = to_first(cams)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    valid = np.ones((h, w), bool)
    out = np.empty_like(seq)
    for t in range(t_len):
        m = maps[t]
        qx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
        qy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
        valid &= (qx >= 0) & (qx <= w - 1) & (qy >= 0) & (qy <= h - 1)
        out[t] = cv2.warpAffine(seq[t], m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return out, valid


def _camera_shake(rng: np.random.Generator, camera: Camera, size: int) -> np.ndarray:
    """``T x 2 x 3``: an independent shake per frame about the image centre."""
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    cams = []
    for _ in range(camera.frames):
        r = camera.shake_px * size / 256.0 * math.sqrt(rng.random())  # uniform over the disc
        beta = rng.uniform(0.0, 2 * math.pi)
        roll = math.radians(rng.uniform(-camera.roll_deg, camera.roll_deg))
        cams.append(_affine(roll, centre, (r * math.cos(beta), r * math.sin(beta))))
    return np.stack(cams)


def _wave(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """A smooth random oscillation over the clip: ``amplitude * sin(2 pi f t / T + phase)``, 0.3..1 cycles."""
    f = rng.uniform(0.3, 1.0)
    phase = rng.uniform(0.0, 2 * math.pi)
    t = np.arange(frames)
    return amplitude * np.sin(2 * math.pi * f * t / frames + phase)


def _head_motion(rng: np.random.Generator, scene: Scene, frames: int, size: int) -> np.ndarray:
    """``T x 2 x 3`` slight head motion about the face centre: up to 3 degrees and 4 px (at 256)."""
    u = size / 256.0
    angle = _wave(rng, frames, math.radians(rng.uniform(0.5, 3.0)))
    dx = _wave(rng, frames, rng.uniform(0.5, 4.0) * u)
    dy = _wave(rng, frames, rng.uniform(0.5, 4.0) * u)
    centre = (float(scene.pose.cx), float(scene.pose.cy))
    return np.stack([_affine(float(a), centre, (float(x), float(y))) for a, x, y in zip(angle, dx, dy)])


def _centroid(alpha: np.ndarray, y0: int, x0: int) -> np.ndarray:
    total = float(alpha.sum())
    if total <= 0:
        return np.array([x0 + alpha.shape[1] / 2.0, y0 + alpha.shape[0] / 2.0])
    ys, xs = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
    return np.array([x0 + float((xs * alpha).sum()) / total, y0 + float((ys * alpha).sum()) / total])


def _occluder_motion(rng: np.random.Generator, occ: Occluder, scene: Scene, head: np.ndarray, size: int
                     ) -> tuple[np.ndarray, str]:
    """``T x 2 x 3`` transforms of one occluder over the clip, and a word for what it does."""
    frames = len(head)
    u = size / 256.0
    t = np.arange(frames) / (frames - 1)
    layer = occ.layer
    if occ.kind in _ATTACHED:
        return head.copy(), "with the head"
    if occ.kind in _HAIR:
        # Sway about the root: the top centre of the hair's box.
        pivot = (layer.x0 + layer.alpha.shape[1] / 2.0, float(layer.y0))
        sway = _wave(rng, frames, math.radians(rng.uniform(1.0, 4.0)))
        return np.stack([_compose(head[i], _affine(float(a), pivot)) for i, a in enumerate(sway)]), "sways"
    if occ.kind == "hand":
        # Out along the arm at the ends of the clip, at rest in the middle.
        out = _centroid(layer.alpha, layer.y0, layer.x0) - np.array([scene.pose.cx, scene.pose.cy])
        norm = float(np.hypot(*out))
        direction = out / norm if norm > 1e-3 else np.array([0.0, 1.0])
        reach = rng.uniform(0.25, 0.7) * size
        away = reach * (1.0 - np.sin(math.pi * t))
        return np.stack([_affine(0.0, (0, 0), tuple(direction * a)) for a in away]), "sweeps in and out"
    if occ.kind == "cup":
        rise = rng.uniform(0.1, 0.3) * size * (1.0 - t)
        return np.stack([_affine(0.0, (0, 0), (0.0, float(d))) for d in rise]), "rises"
    if occ.kind in ("smoke", "fire"):
        step = rng.uniform(1.0, 3.0) * u
        drift = rng.uniform(-1.0, 1.0) * u
        return np.stack([_affine(0.0, (0, 0), (drift * i, -step * i)) for i in range(frames)]), "rises"
    # phone, microphone: a slow drift
    angle = rng.uniform(0.0, 2 * math.pi)
    dist = rng.uniform(4.0, 16.0) * u * t
    return np.stack([_affine(0.0, (0, 0), (d * math.cos(angle), d * math.sin(angle))) for d in dist]), "drifts"


# --------------------------------------------------------------------------- the scene


def _scene(source: str, seed: int, index: int, size: int, split: str
           ) -> tuple[Scene, list[Occluder], dict[str, Any], bool, bool]:
    """The still sample's scene and occluders: ``(scene, occluders, meta, grey, mirror)``."""
    from facemat.data.real import FACE_FREE_SOURCES, MIX_REAL_P, SOURCES, real_scene

    allowed = [s for s in SOURCES if s not in FACE_FREE_SOURCES]
    if source not in allowed:
        raise ConfigError(f"clip source must be one of {', '.join(allowed)} (a clip follows a face), got {source!r}")
    if source == "mix":
        source = "real" if sample_rng(seed, index, f"mix-{split}").random() < MIX_REAL_P else "synth"
    if source == "synth":
        rng = sample_rng(seed, index, split)
        scene = render_face(rng, size)
        return scene, sample_occluders(rng, scene, size), {"source": "synth"}, False, False
    rng, face, scene, occluders, _, _ = real_scene(seed, index, size, split,
                                                   "train" if source == "real" else "holdout")
    # render_real draws its mirror after the occluders: the same face, framing, occluders and mirror.
    mirror = bool(rng.random() < 0.5)
    return scene, occluders, {"source": source, "face": face.spec.name, "photo": face.spec.photo}, face.grey, mirror


def _warp(img: np.ndarray, m: np.ndarray, size: int, border: int) -> np.ndarray:
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


def _world_frame(scene: Scene, kept: list[Occluder], head: np.ndarray, moves: list[np.ndarray], size: int
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """One frame of a moving scene before the camera: ``(uint8 image, float gt, occluded fraction)``.

    The layers are warped premultiplied (colour x alpha, then alpha), so their
    soft edges composite exactly as in :func:`facemat.data.synth.occlude`.
    """
    reflect = cv2.BORDER_REFLECT101
    image = _warp(scene.rgb, head, size, reflect).astype(np.float32) * np.float32(1.0 / 255.0)
    skin = np.clip(_warp(scene.skin, head, size, reflect), 0.0, 1.0)
    gt = skin.copy()
    for occ, m in zip(kept, moves):
        if occ.shadow is not None:  # darkens the image, not the ground truth
            _, sa = occ.shadow.full(size)
            image *= 1.0 - np.clip(_warp(sa, m, size, cv2.BORDER_REPLICATE), 0.0, 1.0)[..., None]
        rgb, a = occ.layer.full(size)
        pre = np.concatenate([rgb * a[..., None], a[..., None]], axis=2)
        pre = _warp(pre, m, size, cv2.BORDER_REPLICATE)  # an arm goes on beyond the frame
        a = np.clip(pre[..., 3], 0.0, 1.0)
        image = pre[..., :3] + image * (1.0 - a[..., None])
        gt *= 1.0 - a
    total = float(skin.sum())
    hidden = 1.0 - float(gt.sum()) / total if total > 0 else 0.0
    return cv2.convertScaleAbs(np.clip(image, 0.0, 1.0), alpha=255.0), gt, min(max(hidden, 0.0), 1.0)


def render_clip(source: str, seed: int, index: int, size: int = 256, split: str = "test", motion: str = "still",
                camera: Camera = CAMERA) -> Clip:
    """Clip ``index`` of ``(source, seed, split)``: a pure function of its arguments.

    Args:
        source: one of :data:`facemat.data.real.SOURCES`.
        seed, index, size, split: as for a still sample (:func:`facemat.data.real.render_source`).
        motion: ``still`` (only the camera moves) or ``moving`` (head and occluders move too).
        camera: frames, shake, noise and JPEG (:class:`Camera`).

    Returns:
        The :class:`Clip`: frames, ground-truth alphas and the ``meta.json`` record.
    """
    _check_seed(seed)
    _check_size(size)
    _check_split(split)
    if motion not in MOTIONS[:2]:
        raise ConfigError(f"motion must be still or moving, got {motion!r}")
    scene, occluders, about, grey, mirror = _scene(source, seed, index, size, split)
    rest = dataclasses.replace(scene, rgb=scene.rgb.copy())
    rest_image, rest_gt, kept = occlude(rest, occluders)  # decides which occluders stay, as the still sample does
    rng = sample_rng(seed, index, f"{split}/clip")
    cams = _camera_shake(rng, camera, size)
    lut = _colour_lut(rng)
    sat = rng.uniform(0.75, 1.3)
    t_len = camera.frames
    if motion == "moving":
        head = _head_motion(rng, scene, t_len, size)
        moves, what = zip(*[_occluder_motion(rng, occ, scene, head, size) for occ in kept]) if kept else ((), ())
    skin_area = float(scene.skin.sum())
    rest_hidden = 1.0 - float(rest_gt.sum()) / skin_area if skin_area > 0 else 0.0
    images, alphas, hidden = [], [], []
    for t in range(t_len):
        if motion == "still":
            world, gt, frac = rest_image, rest_gt, min(max(rest_hidden, 0.0), 1.0)
        else:
            world, gt, frac = _world_frame(scene, kept, head[t], [m[t] for m in moves], size)
        if grey:  # as render_real: a grey photo keeps grey occluders
            world = cv2.cvtColor(cv2.cvtColor(world, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        if mirror:
            world, gt = world[:, ::-1], gt[:, ::-1]
        reflect = cv2.BORDER_REFLECT101
        frame = _warp(np.ascontiguousarray(world), cams[t], size, reflect)
        alpha = np.clip(_warp(np.ascontiguousarray(gt, np.float32), cams[t], size, reflect), 0.0, 1.0)
        images.append(_film(rng, frame, lut, sat, camera))
        alphas.append(cv2.convertScaleAbs(alpha, alpha=255.0))
        hidden.append(round(frac, 5))
    kinds = [o.kind for o in kept]
    meta: dict[str, Any] = {
        "id": sample_id(split, index),
        "split": split,
        "index": int(index),
        "seed": int(seed),
        "size": int(size),
        **about,
        "frames": t_len,
        "motion": motion,
        "occluders": kinds,
        "occluder_motion": dict(zip(kinds, what)) if motion == "moving" else {},
        "hand": "hand" in kinds,
        "grey": bool(grey),
        "mirror": bool(mirror),
        "occluded_fraction": hidden,
        "camera": dataclasses.asdict(camera),
        # Exact float64 values (JSON keeps every digit of a Python float): alphas warp back exactly.
        "cameras": [[[float(v) for v in row] for row in m] for m in cams],
    }
    return Clip(np.stack(images), np.stack(alphas), meta)


def _film(rng: np.random.Generator, frame: np.ndarray, lut: np.ndarray, sat: float, camera: Camera) -> np.ndarray:
    """The camera's tone curve (fixed per clip), then fresh sensor noise and JPEG for this frame."""
    img = cv2.LUT(frame, lut)
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    img = cv2.addWeighted(img, sat, grey, 1.0 - sat, 0.0)
    if camera.noise > 0:
        noisy = img.astype(np.float32) + rng.normal(0.0, camera.noise, img.shape).astype(np.float32)
        img = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    if camera.jpeg:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, camera.jpeg])
        assert ok
        img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return img


# --------------------------------------------------------------------------- to disk


def frame_name(t: int) -> str:
    """File stem of frame ``t``: ``000``, ``001``, ..."""
    return f"{t:03d}"


def clip_files(settings) -> list[Path]:
    """Every frame file a finished clip folder of ``settings`` holds (for the is-it-done check)."""
    clips = Path(settings.out) / "clips"
    return [clips / sample_id(settings.split, i) / sub / f"{frame_name(t)}.png"
            for i in range(settings.count) for sub in ("images", "alphas") for t in range(settings.frames)]


def generate_clips(settings) -> Path:
    """Write ``settings.count`` clips (a :class:`facemat.data.synth.SynthSettings` with ``frames`` set).

    Layout of this module's docstring; files are written atomically and
    ``config.json`` last, so a finished folder is left as it is and an
    interrupted one is written again. ``settings.preview`` gets the frames of
    the first clips as a contact sheet.
    """
    from tqdm import tqdm

    from facemat.data.synth import PREVIEW_MAX, Sample, _is_complete, contact_sheet
    from facemat.io import write_bytes_atomic, write_json_atomic, write_text_atomic

    camera = dataclasses.replace(CAMERA, frames=settings.frames)
    out = settings.out
    n_preview = -(-PREVIEW_MAX // camera.frames) if settings.preview else 0
    done = _is_complete(settings)  # also refuses a folder that holds another dataset
    if done:
        print(f"{out}: already complete ({settings.count} clips), nothing to do", file=sys.stderr)
    lines = []
    counts = {"still": 0, "moving": 0}
    preview: list[Sample] = []
    todo = range(min(n_preview, settings.count)) if done else range(settings.count)
    for i in tqdm(todo, desc=f"{settings.source} {settings.split} clips", unit="clip", dynamic_ncols=True,
                  disable=done):
        motion = clip_motion(settings.motion, i)
        clip = render_clip(settings.source, settings.seed, i, settings.size, settings.split, motion, camera)
        if i < n_preview:
            preview += [Sample(clip.images[t], clip.alphas[t],
                               {"id": f"{clip.meta['id']}/{t}", "occluders": [motion[:4]] + clip.meta["occluders"]})
                        for t in range(camera.frames)]
        if done:
            continue
        folder = out / "clips" / clip.meta["id"]
        for sub in ("images", "alphas"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for t in range(camera.frames):
            write_bytes_atomic(folder / "images" / f"{frame_name(t)}.png", _encode_png(clip.images[t]))
            write_bytes_atomic(folder / "alphas" / f"{frame_name(t)}.png", _encode_png(clip.alphas[t]))
        write_json_atomic(folder / "meta.json", clip.meta)
        lines.append(json.dumps(clip.meta, sort_keys=True))
        counts[motion] += 1
    if not done:
        write_text_atomic(out / "meta.jsonl", "\n".join(lines) + "\n")
        config = {
            **settings.data_key(),
            "preview": str(settings.preview) if settings.preview else None,
            "layout": {"images": "clips/<id>/images/<t>.png", "alphas": "clips/<id>/alphas/<t>.png",
                       "meta": "clips/<id>/meta.json"},
            "summary": counts,
        }
        write_json_atomic(out / "config.json", config)
    if settings.preview and preview:
        write_bytes_atomic(settings.preview, _encode_png(contact_sheet(preview, cols=camera.frames)))
    return out


# --------------------------------------------------------------------------- reading


@dataclass
class ClipData:
    """One clip as read from disk.

    Attributes:
        id: the clip folder's name.
        images: ``T x H x W x 3`` float32 RGB in [0, 1].
        alphas: ``T x H x W`` float32 in [0, 1].
        motion: ``still`` or ``moving`` (``moving`` when the clip has no meta.json).
        cameras: ``T x 2 x 3`` scene -> frame transforms, or None without meta.json.
        meta: the clip's meta.json record (empty without one).
    """

    id: str
    images: np.ndarray
    alphas: np.ndarray
    motion: str
    cameras: np.ndarray | None
    meta: dict[str, Any]


def scan_clips(root: str | os.PathLike[str]) -> list[str]:
    """Validate a clip folder cheaply and return its sorted clip ids.

    Checks ``root/clips/`` exists and holds clip folders, each a valid image
    folder (:func:`facemat.data.folder.scan_folder`, same errors) whose frame
    names are the numbers 0..T-1 with T >= 2. Files are not decoded
    (:func:`read_clip` does that).

    Raises:
        DataError: the first problem found, naming the folder or files.
    """
    from facemat.data.folder import scan_folder

    root = Path(root)
    if not root.exists():
        raise DataError(f"clip folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"clip folder {root} is not a folder")
    clips = root / "clips"
    if not clips.is_dir():
        raise DataError(f"clip folder {root} has no clips/ subfolder (expected {root}/clips/<id>/images/<t>.png "
                        f"and {root}/clips/<id>/alphas/<t>.png; python -m facemat.data.synth --frames 8 writes one)")
    ids = sorted(e.name for e in os.scandir(clips) if e.is_dir() and not e.name.startswith("."))
    if not ids:
        raise DataError(f"clip folder {root} has no clips: {clips} holds no clip folders")
    for cid in ids:
        frames = scan_folder(clips / cid)
        _frame_numbers(clips / cid, frames)
    return ids


def _frame_numbers(folder: Path, stems: list[str]) -> list[str]:
    """The frame stems in time order; DataError unless they are the numbers 0..T-1, T >= 2."""
    bad = [s for s in stems if not s.isdigit()]
    if bad:
        raise DataError(f"clip {folder}: frame names must be frame numbers (000.png, 001.png, ...), "
                        f"got {bad[0]}.png")
    order = sorted(stems, key=int)
    numbers = [int(s) for s in order]
    if numbers != list(range(len(numbers))):
        missing = sorted(set(range(max(numbers) + 1)) - set(numbers))
        what = f"frame {missing[0]} is missing" if missing else "a frame number appears twice"
        raise DataError(f"clip {folder}: frames must be numbered 0..T-1 without gaps; {what}")
    if len(order) < 2:
        raise DataError(f"clip {folder}: has {len(order)} frame; a clip needs at least 2")
    return order


def _read_meta(folder: Path, frames: int) -> tuple[str, np.ndarray | None, dict[str, Any]]:
    path = folder / "meta.json"
    if not path.is_file():
        return "moving", None, {}
    from facemat.io import read_json

    meta = read_json(path, "re-generate the clip or delete its meta.json")
    if not isinstance(meta, dict):
        raise DataError(f"{path}: must hold a JSON object")
    motion = meta.get("motion", "moving")
    if motion not in MOTIONS[:2]:
        raise DataError(f"{path}: motion must be still or moving, got {motion!r}")
    cams = meta.get("cameras")
    if cams is None:
        if motion == "still":
            raise DataError(f"{path}: a still clip needs 'cameras' (one 2 x 3 transform per frame) to align frames")
        return motion, None, meta
    try:
        arr = np.asarray(cams, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (frames, 2, 3) or not np.isfinite(arr).all():
        raise DataError(f"{path}: 'cameras' must be {frames} finite 2 x 3 transforms (one per frame), "
                        f"got shape {arr.shape}")
    if abs(np.linalg.det(arr[:, :, :2])).min() < 1e-6:
        raise DataError(f"{path}: a camera transform is not invertible")
    return motion, arr, meta


def read_clip(root: str | os.PathLike[str], clip_id: str) -> ClipData:
    """Read and check clip ``clip_id`` of a clip folder (``root/clips/<id>``); see :func:`read_clip_folder`."""
    return read_clip_folder(Path(root) / "clips" / clip_id)


def read_clip_folder(folder: str | os.PathLike[str]) -> ClipData:
    """Read and check one clip's own folder (``images/``, ``alphas/``, optional ``meta.json``).

    Every frame pair is decoded, all frames must be one size and meta.json is checked.

    Raises:
        DataError: a bad file, frames of different sizes, or a bad meta.json.
    """
    from facemat.data.folder import check_pair, scan_folder

    folder = Path(folder)
    clip_id = folder.name
    order = _frame_numbers(folder, scan_folder(folder))
    images, alphas = [], []
    for stem in order:
        image, alpha = check_pair(folder, stem)
        if images and image.shape != images[0].shape:
            (h0, w0), (h, w) = images[0].shape[:2], image.shape[:2]
            raise DataError(f"clip {folder}: frame {stem} is {w}x{h} but frame {order[0]} is {w0}x{h0}; "
                            "all frames of a clip must be the same size")
        images.append(image)
        alphas.append(alpha)
    motion, cams, meta = _read_meta(folder, len(order))
    return ClipData(clip_id, np.stack(images), np.stack(alphas), motion, cams, meta)


def load_clips(root: str | os.PathLike[str], limit: int | None = None) -> list[ClipData]:
    """The first ``limit`` clips of a clip folder (all when None), checked and read.

    Raises:
        DataError: the folder fails :func:`scan_clips`, or a clip fails :func:`read_clip`.
    """
    ids = scan_clips(root)
    return [read_clip(root, cid) for cid in (ids if limit is None else ids[:limit])]
