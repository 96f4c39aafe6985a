"""Build a CelebAMat-style dataset from real faces, skin masks and occluder cut-outs.

Usage::

    python -m facemat.data.compose --faces DIR --skin-masks DIR --occluders DIR \\
        --out DIR --count N --seed S [--size 256] [--max-occluders 3] [--debug]

Inputs:

* ``--faces``: face photos, any size, ``.png``/``.jpg``/``.jpeg`` (grey is
  replicated to RGB, 16-bit PNGs are scaled by 1/65535, see :mod:`facemat.data.folder`).
* ``--skin-masks``: one grey mask per face with the same stem (CelebAMask-HQ
  style), 255 = face region as docs/design.md ("The task") defines it. A mask may have another
  resolution than its photo (it is resized to the photo) but not another aspect
  ratio (that means a wrong pairing).
* ``--occluders``: cut-outs as RGBA PNGs (hands, cups, glasses...). Their alpha is
  the occluder's coverage; a file without an alpha channel is an error.

Each sample: a face (cycling through all faces in a seeded random order per
round) is scaled and cropped to ``size x size`` with its mask, then 0 to
``max_occluders`` occluders are placed with random scale, rotation, mirror,
position (mostly over the face) and colour jitter, and composited with
:func:`~facemat.data.composite.composite_layers`. Ground truth is the mask times
the product of ``(1 - occluder alpha)``.

Outputs (the on-disk layout of docs/design.md plus extras readers ignore)::

    <out>/images/<id>.png      RGB composite, 8-bit
    <out>/alphas/<id>.png      ground-truth alpha, 8-bit grey
    <out>/skin/<id>.png        the face-skin mask before occlusion (after crop)
    <out>/occluders/<id>.png   union coverage of all occluders, 1 - prod(1 - a_k)
    <out>/meta.jsonl           one row per sample, written last: marks completion
    <out>/config.json          the resolved settings

Every file is written atomically. Sample ``i`` draws from an RNG seeded by
``(seed, i)``, so reruns are byte-identical and a larger ``--count`` extends a
smaller one. Rerunning a finished build with the same settings does nothing; an
interrupted build resumes (samples already on disk are not rewritten).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from facemat.cli import add_debug_flag, run_main
from facemat.data.augment import color_jitter, random_scale_crop
from facemat.data.composite import composite_layers
from facemat.data.folder import SIZE_MULTIPLE, read_alpha_file, read_image_file, read_raw
from facemat.errors import ConfigError, DataError
from facemat.io import write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = ["ComposeSettings", "compose", "main"]

FORMAT = "facemat-compose/1"
_PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
_MASK_SUFFIXES = (".png", ".jpg", ".jpeg")
# Aspect ratios of a photo and its mask may differ this much (relative) from
# rounding when the mask was saved at another resolution; more means a wrong pair.
_ASPECT_TOLERANCE = 0.02
# Occluder size: its longer side spans this fraction of the output side.
_OCC_SPAN = (0.3, 0.9)
_OCC_MAX_ROTATION_DEG = 45.0
# Probability that an occluder is centred on a face pixel rather than anywhere;
# occluders beside the face teach nothing about occlusion.
_OCC_ON_FACE_P = 0.8
_FACE_ZOOM = (1.0, 1.15)


@dataclass
class ComposeSettings:
    """Settings of one ``compose`` run; validated on construction.

    Attributes:
        faces: folder of face photos.
        skin_masks: folder of grey skin masks, same stems as the photos.
        occluders: folder of RGBA PNG cut-outs.
        out: output dataset folder.
        count: number of samples, >= 1.
        seed: non-negative seed; same seed, same bytes.
        size: output side in pixels, a positive multiple of 32.
        max_occluders: each sample gets 0..max_occluders occluders (>= 0).
    """

    faces: Path
    skin_masks: Path
    occluders: Path
    out: Path
    count: int
    seed: int = 0
    size: int = 256
    max_occluders: int = 3

    def __post_init__(self) -> None:
        for name in ("faces", "skin_masks", "occluders", "out"):
            setattr(self, name, Path(getattr(self, name)))
        flags = {"count": "--count", "seed": "--seed", "size": "--size", "max_occluders": "--max-occluders"}
        for name, flag in flags.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{flag} must be an integer, got {value!r}")
            setattr(self, name, int(value))  # numpy integers would not serialise to config.json
        if self.count < 1:
            raise ConfigError(f"--count must be a positive integer, got {self.count}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed}")
        if self.size < SIZE_MULTIPLE or self.size % SIZE_MULTIPLE:
            raise ConfigError(f"--size must be a positive multiple of {SIZE_MULTIPLE} (e.g. 256), got {self.size}")
        if self.max_occluders < 0:
            raise ConfigError(f"--max-occluders must be >= 0, got {self.max_occluders}")

    def resolved(self) -> dict[str, object]:
        """The settings as saved in ``config.json``: absolute source paths, no ``out``.

        ``out`` is left out so that two builds with the same sources and seed are
        byte-identical wherever they are written.
        """
        d = asdict(self)
        del d["out"]
        for name in ("faces", "skin_masks", "occluders"):
            d[name] = str(Path(d[name]).resolve())
        return {"format": FORMAT, **d}


@dataclass
class _Sources:
    """Validated input files, sorted by stem for determinism."""

    faces: list[Path]
    masks: list[Path]  # masks[i] belongs to faces[i]
    occluders: list[Path] = field(default_factory=list)


def _image_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes),
        key=lambda p: (p.stem, p.name),
    )


def _require_folder(path: Path, flag: str) -> None:
    if not path.exists():
        raise DataError(f"{flag} folder {path} does not exist")
    if not path.is_dir():
        raise DataError(f"{flag} {path} is not a folder")


def _png_colour_type(data: bytes) -> int | None:
    """PNG IHDR colour type (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA), or None if not a PNG."""
    if len(data) < 26 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    return data[25]


def _scan_sources(settings: ComposeSettings) -> _Sources:
    """Check the three input folders up front (cheap: names and PNG headers only)."""
    _require_folder(settings.faces, "--faces")
    _require_folder(settings.skin_masks, "--skin-masks")
    _require_folder(settings.occluders, "--occluders")

    faces = _image_files(settings.faces, _PHOTO_SUFFIXES)
    if not faces:
        raise DataError(f"--faces folder {settings.faces} holds no face photos (.png, .jpg, .jpeg)")
    stems = [p.stem for p in faces]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise DataError(
            f"--faces folder {settings.faces} has several photos with the stem {dupes[0]!r}; stems must be unique"
        )

    mask_by_stem: dict[str, Path] = {}
    for p in _image_files(settings.skin_masks, _MASK_SUFFIXES):
        mask_by_stem.setdefault(p.stem, p)  # sorted: .jpeg < .jpg < .png on a tie
    masks = []
    for face in faces:
        mask = mask_by_stem.get(face.stem)
        if mask is None:
            raise DataError(
                f"face photo {face} has no skin mask in {settings.skin_masks} "
                f"(expected {face.stem}.png or {face.stem}.jpg)"
            )
        masks.append(mask)

    occluders = _image_files(settings.occluders, (".png", ".jpg", ".jpeg", ".webp", ".bmp"))
    if not occluders:
        raise DataError(f"--occluders folder {settings.occluders} holds no RGBA PNG cut-outs")
    for occ in occluders:
        if occ.suffix.lower() != ".png":
            raise DataError(
                f"occluder {occ} has no alpha channel ({occ.suffix} files cannot store one); export it as an RGBA PNG"
            )
        with open(occ, "rb") as f:
            header = f.read(26)
        ctype = _png_colour_type(header)
        if ctype is None:
            raise DataError(f"occluder {occ} is not a valid PNG file")
        # A palette PNG may carry transparency in a tRNS chunk; that is checked
        # when the file is decoded.
        if ctype in (0, 2):
            raise DataError(f"occluder {occ} has no alpha channel; export it as an RGBA PNG (transparent background)")
    return _Sources(faces=faces, masks=masks, occluders=occluders)


def _load_face(photo: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Photo ``H x W x 3`` RGB and its mask resized to ``H x W``, float32 in [0, 1]."""
    rgb = read_image_file(photo)
    mask = read_alpha_file(mask_path)
    (ph, pw), (mh, mw) = rgb.shape[:2], mask.shape
    if abs((pw / ph) / (mw / mh) - 1.0) > _ASPECT_TOLERANCE:
        raise DataError(
            f"skin mask {mask_path} is {mw}x{mh} but face photo {photo} is {pw}x{ph}: "
            "different aspect ratios, so the mask cannot belong to the photo"
        )
    if (mh, mw) != (ph, pw):
        mask = np.clip(cv2.resize(mask, (pw, ph), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    return rgb, mask


# Few cut-outs are reused across many samples; decoding them once saves most of
# the per-sample time. Arrays are returned read-only because they are shared.
@functools.lru_cache(maxsize=64)
def _load_occluder(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Occluder cut-out as (RGB ``h x w x 3``, alpha ``h x w``), float32 in [0, 1], read-only."""
    raw = read_raw(path)
    if raw.ndim != 3 or raw.shape[2] != 4:
        raise DataError(f"occluder {path} has no alpha channel; export it as an RGBA PNG (transparent background)")
    scale = np.float32(65535.0 if raw.dtype == np.uint16 else 255.0)
    rgba = raw.astype(np.float32) / scale
    rgb = np.ascontiguousarray(rgba[:, :, 2::-1])  # BGRA -> RGB
    alpha = np.ascontiguousarray(rgba[:, :, 3])
    if not alpha.any():
        raise DataError(f"occluder {path} is fully transparent")
    rgb.setflags(write=False)
    alpha.setflags(write=False)
    return rgb, alpha


def _place_occluder(
    rgb: np.ndarray, alpha: np.ndarray, skin: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Jitter, scale, rotate, mirror and place one cut-out on a ``size x size`` canvas.

    Colour and alpha are warped premultiplied: interpolating straight colour would
    mix in the arbitrary colour stored under transparent pixels (often black) and
    leave a dark fringe around the cut-out.

    Returns:
        ``(rgb size x size x 3, alpha size x size)``, float32 in [0, 1], straight
        (not premultiplied) colour as :func:`composite_layers` expects.
    """
    rgb = color_jitter(rgb, rng, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    h, w = alpha.shape
    span = rng.uniform(*_OCC_SPAN) * size
    factor = span / max(h, w)
    angle = rng.uniform(-_OCC_MAX_ROTATION_DEG, _OCC_MAX_ROTATION_DEG)
    ys, xs = np.nonzero(skin > 0.5)
    if rng.random() < _OCC_ON_FACE_P and len(ys):
        k = int(rng.integers(len(ys)))
        cy, cx = float(ys[k]), float(xs[k])
    else:
        cy, cx = rng.uniform(0, size), rng.uniform(0, size)

    premult = np.concatenate([rgb * alpha[:, :, None], alpha[:, :, None]], axis=2).astype(np.float32)
    # Shrink with area averaging first: warpAffine's bilinear sampling aliases
    # when it minifies by more than ~2x. The warp then only rotates and moves.
    new_h, new_w = max(1, round(h * factor)), max(1, round(w * factor))
    premult = cv2.resize(
        premult, (new_w, new_h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    )
    m = cv2.getRotationMatrix2D(((new_w - 1) / 2.0, (new_h - 1) / 2.0), angle, 1.0)
    m[0, 2] += cx - (new_w - 1) / 2.0
    m[1, 2] += cy - (new_h - 1) / 2.0
    warped = cv2.warpAffine(
        premult, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    a = np.clip(warped[:, :, 3], 0.0, 1.0)
    # Unpremultiply; where alpha is ~0 the colour does not matter.
    out_rgb = np.where(a[:, :, None] > 1e-6, warped[:, :, :3] / np.maximum(a, 1e-6)[:, :, None], 0.0)
    return np.clip(out_rgb, 0.0, 1.0).astype(np.float32), a.astype(np.float32)


def _face_order(seed: int, n_faces: int, index: int, cache: dict[int, np.ndarray]) -> int:
    """Face index of sample ``index``: every face once per round, in a seeded order per round."""
    rnd = index // n_faces
    if rnd not in cache:
        # Round permutations come from their own stream, keyed by round, so the
        # choice for sample i does not depend on which samples ran before.
        cache[rnd] = np.random.default_rng(np.random.SeedSequence([seed, 1, rnd])).permutation(n_faces)
    return int(cache[rnd][index % n_faces])


def _render(
    settings: ComposeSettings, sources: _Sources, index: int, perms: dict[int, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Render sample ``index``: float arrays by output folder, and its meta row."""
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0, index]))
    fi = _face_order(settings.seed, len(sources.faces), index, perms)
    photo, mask = _load_face(sources.faces[fi], sources.masks[fi])
    size = settings.size
    base, skin = random_scale_crop(photo, mask, rng, (size, size), _FACE_ZOOM)

    n_occ = int(rng.integers(0, settings.max_occluders + 1))
    layers, stems = [], []
    for _ in range(n_occ):
        oi = int(rng.integers(len(sources.occluders)))
        occ_rgb, occ_alpha = _load_occluder(sources.occluders[oi])
        layers.append(_place_occluder(occ_rgb, occ_alpha, skin, size, rng))
        stems.append(sources.occluders[oi].stem)

    image, gt = composite_layers(base, skin, layers)
    clear = np.ones((size, size), np.float32)
    for _, a in layers:
        clear *= 1.0 - a
    skin_sum = float(skin.sum())
    fraction = 1.0 - float(gt.sum()) / skin_sum if skin_sum > 0 else 0.0
    meta = {
        "id": _sample_id(index),
        "seed": settings.seed,
        "index": index,
        "face": sources.faces[fi].stem,
        "occluders": stems,
        "occluded_fraction": round(max(0.0, fraction), 6),
    }
    return {"images": image, "alphas": gt, "skin": skin, "occluders": 1.0 - clear}, meta


def _sample_id(index: int) -> str:
    return f"{index:06d}"


def _encode_png(array: np.ndarray) -> bytes:
    """Float ``H x W`` grey or ``H x W x 3`` RGB in [0, 1] -> 8-bit PNG bytes."""
    q = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if q.ndim == 3:
        q = cv2.cvtColor(q, cv2.COLOR_RGB2BGR)  # OpenCV encodes BGR
    ok, buf = cv2.imencode(".png", q)
    assert ok, "OpenCV failed to encode a PNG"
    return buf.tobytes()


def _prepare_out(settings: ComposeSettings, config: dict[str, object]) -> bool:
    """Check ``out`` is free or holds this same build; return True if it is already complete."""
    out = settings.out
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} exists and is not a folder")
    config_path = out / "config.json"
    if config_path.exists():
        try:
            existing = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{config_path} is unreadable ({exc}); delete {out} or choose another --out") from None
        if existing != config:
            diff = sorted(k for k in set(existing) | set(config) if existing.get(k) != config.get(k))
            raise ConfigError(
                f"--out {out} holds a build with other settings (differs in: {', '.join(diff)}); "
                "choose another --out or delete it"
            )
        return (out / "meta.jsonl").exists()
    if out.exists() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise DataError(f"--out {out} is not empty and holds no config.json; choose an empty or new folder")
    return False


def compose(settings: ComposeSettings) -> Path:
    """Build the dataset described by ``settings``.

    Args:
        settings: validated settings.

    Returns:
        The output folder ``settings.out``.

    Raises:
        DataError: missing folders, no faces, a face without a mask, an occluder
            without alpha, unreadable inputs, or an ``out`` that is in use.
        ConfigError: ``out`` holds a build with other settings.
    """
    sources = _scan_sources(settings)
    config = settings.resolved()
    if _prepare_out(settings, config):
        return settings.out  # finished earlier with the same settings: no-op
    out = settings.out
    for sub in ("images", "alphas", "skin", "occluders"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    # Written first: it claims the folder for these settings, so an interrupted
    # run is recognised and resumed rather than refused.
    write_json_atomic(out / "config.json", config)

    perms: dict[int, np.ndarray] = {}
    rows = []
    for index in tqdm(range(settings.count), desc="compose", unit="img", dynamic_ncols=True):
        arrays, meta = _render(settings, sources, index, perms)
        for sub, array in arrays.items():
            path = out / sub / f"{meta['id']}.png"
            # Rendering is deterministic, so a file from an interrupted run is
            # already the right one: skip the encode and write.
            if not path.exists():
                write_bytes_atomic(path, _encode_png(array))
        rows.append(json.dumps(meta, sort_keys=True))
    write_text_atomic(out / "meta.jsonl", "\n".join(rows) + "\n")
    return out


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors become one-line ConfigErrors (exit 2 via run_main)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run :func:`compose`."""
    parser = _Parser(
        prog="python -m facemat.data.compose",
        description="Build a CelebAMat-style matting set from face photos, skin masks and RGBA occluder cut-outs.",
    )
    parser.add_argument("--faces", type=Path, required=True, help="folder of face photos (.png/.jpg)")
    parser.add_argument(
        "--skin-masks", type=Path, required=True, help="folder of grey skin masks, same stems as the faces"
    )
    parser.add_argument("--occluders", type=Path, required=True, help="folder of RGBA PNG occluder cut-outs")
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--count", type=int, required=True, help="number of samples to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=256, help="output side in pixels, multiple of 32 (default 256)")
    parser.add_argument(
        "--max-occluders", type=int, default=3, help="at most this many occluders per sample (default 3)"
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    settings = ComposeSettings(
        faces=args.faces,
        skin_masks=args.skin_masks,
        occluders=args.occluders,
        out=args.out,
        count=args.count,
        seed=args.seed,
        size=args.size,
        max_occluders=args.max_occluders,
    )
    out = compose(settings)
    print(f"wrote {settings.count} samples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
