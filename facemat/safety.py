"""Guards for files the tool is handed: nothing in them is trusted (docs/design.md, "Inputs are not trusted").

* model files are data: :func:`check_pt2_archive` refuses a ``.pt2`` whose
  entries differ from what ``torch.export.save`` writes, before torch reads it;
* paths a file names stay inside its folder (:func:`resolve_inside`);
* a command never writes over one of its own inputs (:func:`refuse_overwrite`);
* inputs have a cost limit checked before the work (:data:`MAX_IMAGE_PIXELS`,
  read from an image's header by :func:`check_image_pixels`);
* non-finite numbers are refused where they enter (:func:`finite_float`,
  :func:`check_finite_weights`).

Every refusal is a ``FaceMatError`` subclass naming the file or flag, so a
command prints one ``error:`` line and exits 2.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

from facemat.errors import CheckpointError, ConfigError, DataError, FaceMatError

# An image or video frame may hold at most this many pixels (64 MP: a 12000 x 5333 panorama,
# ~190 MB as 8-bit RGB, ~770 MB as float32). Checked from the header before decoding.
MAX_IMAGE_PIXELS = 64_000_000

# A checkpoint's model config may ask for at most these sizes (the teacher uses 160 channels,
# depth 3, expansion 4, size 512 at most); the weights it holds must also add up to what the
# config builds, checked on the meta device before any memory is allocated.
MAX_CHANNELS = 1024
MAX_DEPTH = 16
MAX_EXPAND = 16
MAX_SIZE = 2048

LIMITS_HELP = (
    f"limits: images and video frames up to {MAX_IMAGE_PIXELS // 1_000_000} megapixels (checked from the header "
    f"before decoding); checkpoint model configs up to {MAX_CHANNELS} channels per layer, {MAX_DEPTH} blocks "
    f"per stage, expansion {MAX_EXPAND}, input size {MAX_SIZE}; .pt2 files only as torch.export.save writes them "
    "(no pickled objects); non-finite numbers (nan, inf) refused in flags and weights"
)

# ---------------------------------------------------------------- .pt2 archives

# What torch.export.save writes for one program named "model" (torch 2.6 .. 2.13), relative to the
# archive's single top folder. Every other entry (extra pickles, AOTInductor shared libraries,
# legacy whole-state-dict pickles, custom or opaque objects) is refused.
_PT2_FIXED = {
    "archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id",
    "models/model.json", "data/sample_inputs/model.pt",
    "data/weights/model_weights_config.json", "data/constants/model_constants_config.json",
}
_PT2_PAYLOAD = re.compile(r"^data/(weights/weight|constants/tensor)_\d+$")


def _pt2_refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: refused to load: {why}; only .pt2 files written by torch.export.save "
                           "(python -m quantize.qat / quantize.ptq) are accepted, re-create it")


def check_pt2_archive(path: str | os.PathLike[str]) -> None:
    """Refuse a ``.pt2`` that ``torch.export.load`` could not load without unpickling arbitrary objects.

    Checked before torch opens the file: the zip holds exactly the entries
    ``torch.export.save`` writes (stored, not compressed); every weight and
    constant is raw bytes (``use_pickle`` false, no custom or opaque objects);
    the one pickle torch writes, the sample inputs, loads with
    ``torch.load(weights_only=True)`` (else torch would retry it with
    ``weights_only=False``).

    Raises:
        CheckpointError: the file is not such an archive, naming it and the entry.
    """
    p = Path(path)
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{p}: not a readable exported program (truncated or corrupt?): {exc}") from None
    with zf:
        infos = zf.infolist()
        tops = {i.filename.split("/", 1)[0] for i in infos}
        if len(tops) != 1 or any("/" not in i.filename for i in infos):
            raise _pt2_refuse(p, "its entries are not under one top folder")
        top = tops.pop() + "/"
        names: dict[str, zipfile.ZipInfo] = {i.filename[len(top):]: i for i in infos}
        for name, info in names.items():
            if name not in _PT2_FIXED and not _PT2_PAYLOAD.match(name):
                raise _pt2_refuse(p, f"unexpected entry {name!r}")
            if info.compress_type != zipfile.ZIP_STORED:
                raise _pt2_refuse(p, f"entry {name!r} is compressed")
        for name in ("archive_format", "models/model.json", "data/weights/model_weights_config.json",
                     "data/constants/model_constants_config.json", "data/sample_inputs/model.pt"):
            if name not in names:
                raise _pt2_refuse(p, f"entry {name!r} is missing")
        for kind, prefix in (("weights", "weight_"), ("constants", "tensor_")):
            entry = f"data/{kind}/model_{kind}_config.json"
            try:
                config = json.loads(zf.read(top + entry))["config"]
                metas = list(config.items())
            except (ValueError, KeyError, TypeError, AttributeError):
                raise _pt2_refuse(p, f"entry {entry!r} is not a payload table") from None
            for fqn, meta in metas:
                if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                    raise _pt2_refuse(p, f"{kind[:-1]} {fqn!r} is stored as a pickle")
                if not re.fullmatch(prefix + r"\d+", str(meta.get("path_name"))):
                    raise _pt2_refuse(p, f"{kind[:-1]} {fqn!r} names payload {meta.get('path_name')!r}")
        sample = zf.read(top + "data/sample_inputs/model.pt")
    import torch

    try:
        torch.load(io.BytesIO(sample), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any failure here would make torch retry with weights_only=False
        raise _pt2_refuse(p, "its sample inputs are not plain tensors") from None


# ---------------------------------------------------------------- paths


def resolve_inside(root: str | os.PathLike[str], rel: Any, what: str,
                   error: type[FaceMatError] = CheckpointError) -> Path:
    """The path ``rel`` (as a file names it) resolved inside folder ``root``.

    Refuses an absolute path, one that climbs out with ``..``, and one that
    leaves ``root`` through a symlink (also any symlink inside a folder artifact
    that points outside ``root``).

    Args:
        root: the folder holding the file that names ``rel``.
        rel: the relative path as stored (must be a non-empty string).
        what: what names it, for the message (e.g. ``"manifest.json entry 'onnx-fp32'"``).
        error: the exception class to raise.

    Raises:
        CheckpointError (or ``error``): the path is not a relative path that stays inside ``root``.
    """
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise error(f"{what}: path {rel!r} is not a relative file name")
    if os.path.isabs(rel) or Path(rel).is_absolute():
        raise error(f"{what}: path {rel!r} is absolute; only paths inside {str(root)!r} are accepted")
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise error(f"{what}: path {rel!r} leaves {str(base)!r} (through '..' or a symlink); refused")
    if target.is_dir():
        for dirpath, dirnames, filenames in os.walk(target):
            for name in dirnames + filenames:
                inner = Path(dirpath) / name
                if inner.is_symlink() and not inner.resolve().is_relative_to(base):
                    raise error(f"{what}: {str(inner.relative_to(target))!r} inside {rel!r} is a "
                                          f"symlink leaving {str(base)!r}; refused")
    return target


def refuse_overwrite(outputs: Mapping[str, Any], inputs: Mapping[str, Any]) -> None:
    """Refuse when an output file is one of the command's input files (same path, symlink or hard link).

    Args:
        outputs: flag -> output file, or a list of the files a folder output will
            hold (None entries are skipped).
        inputs: flag -> input file or list of files (None entries are skipped).

    Raises:
        ConfigError: naming both flags.
    """
    def files(value: Any) -> list[Path]:
        if value is None:
            return []
        return [Path(v) for v in ([value] if isinstance(value, (str, os.PathLike)) else value)]

    for out_flag, out in outputs.items():
        for o in files(out):
            for in_flag, src in inputs.items():
                for i in files(src):
                    same = o.resolve() == i.resolve() or (o.exists() and i.exists() and os.path.samefile(o, i))
                    if same:
                        raise ConfigError(f"{out_flag} {str(o)!r} would overwrite the input {in_flag} {str(i)!r}; "
                                          f"choose another {out_flag}")


# ---------------------------------------------------------------- images


def check_image_pixels(path: str | os.PathLike[str], data: bytes | None = None, what: str | None = None) -> None:
    """Refuse an image whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels; decodes nothing.

    Args:
        path: the image file (read for its header when ``data`` is None).
        data: the file's bytes, when already read.
        what: how to name it in the message (default: the path).

    Raises:
        DataError: the header declares too many pixels. A header Pillow cannot
            parse passes: the decoder that follows reports it.
    """
    from PIL import Image

    name = what or str(path)
    src: Any = io.BytesIO(data) if data is not None else path
    bomb_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # ours is the limit that counts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(src) as im:  # lazy: parses the header only
                width, height = im.size
    except Exception:  # noqa: BLE001 - not an image Pillow parses; the real decoder reports it
        return
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit
    check_frame_pixels(width, height, name)


def check_frame_pixels(width: int, height: int, what: str) -> None:
    """Refuse ``width x height`` above :data:`MAX_IMAGE_PIXELS` (image header or video stream size)."""
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{what}: {width} x {height} pixels is above the limit of {MAX_IMAGE_PIXELS:,} "
                        "pixels per image or frame; downscale it first")


# ---------------------------------------------------------------- numbers


def finite_float(text: str) -> float:
    """``argparse`` type: a float that is not nan or +-inf."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def check_finite_weights(state: Mapping[str, Any], where: str | os.PathLike[str]) -> None:
    """Refuse a state dict holding a NaN or infinite floating-point value, naming the first such tensor.

    Raises:
        CheckpointError: naming ``where`` and the tensor.
    """
    import torch

    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: weight {key!r} holds NaN or infinite values; the model is broken "
                                  "(diverged training?): use an earlier checkpoint")
