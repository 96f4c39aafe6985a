"""Read a matting dataset folder from disk (layout: docs/design.md, "Data").

Layout::

    <root>/images/<id>.png     RGB composite
    <root>/alphas/<id>.png     ground-truth alpha, grey, 255 = face skin

Anything else under ``<root>`` (``fg/``, ``skin/``, ``occluders/``, ``meta.jsonl``,
``config.json``) is ignored. Only files ending in ``.png`` (lower case) whose name
does not start with a dot count as samples; a sample's id is its file stem.

Checks happen in two places. :func:`scan_folder` is cheap and runs up front:
the folder and both sub-folders exist, they hold PNGs, the stems match one to
one, and no file is empty. Decoding problems can only be seen by reading a file,
so :func:`check_pair` runs lazily, per sample, when it is loaded
(:meth:`MattingFolder.verify` runs it over the whole folder at once). Every
problem raises :class:`~facemat.errors.DataError` with a one-line message that
names the file or folder.

Accepted inputs and how they are converted:

``images/``
    * 8-bit RGB: divided by 255. OpenCV decodes BGR; channels are swapped to RGB.
    * 16-bit (any channel layout below): divided by 65535, kept in float32.
    * greyscale: replicated to the three RGB channels.
    * RGBA or grey + alpha: accepted only if the alpha channel is fully opaque
      (it is dropped); a transparent pixel has no defined colour, so anything
      else is a DataError (composite it over a background first).
    * palette PNGs: expanded by the decoder, then as above.

``alphas/``
    * 8-bit grey: divided by 255; 16-bit grey: divided by 65535.
    * 3 channels: accepted only if all three are identical (a grey matte saved as
      RGB); otherwise DataError.
    * RGBA or grey + alpha: DataError, because it is ambiguous which channel is
      the matte. Save the matte as a single grey channel.

Integrity
    * zero-byte files, files without the PNG signature, truncated PNGs (the
      chunk list ends before the ``IEND`` chunk) and files OpenCV cannot decode
      are DataErrors naming the file. The chunk walk matters because a decoder
      may return a partially decoded image for a cut-off file.
    * image and alpha must have the same height and width.

Size
    * ``size=None``: H and W must be multiples of 32 (the networks downsample by
      32); otherwise DataError naming the file and its size, suggesting ``--size``.
    * ``size=S`` (a multiple of 32): without augmentation image and alpha are
      resized to ``S x S`` (non-square inputs are stretched, both alike); with
      augmentation they are randomly scaled (aspect kept) and cropped to ``S x S``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TypedDict

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from facemat.data.augment import AugmentConfig, augment_pair, resize_pair
from facemat.errors import ConfigError, DataError
from facemat.safety import check_image_pixels, resolve_inside

__all__ = [
    "MattingFolder",
    "Sample",
    "check_pair",
    "read_alpha_file",
    "read_image_file",
    "read_raw",
    "scan_folder",
    "validate_size",
]

#: The networks downsample by this factor, so inputs must be multiples of it.
SIZE_MULTIPLE = 32

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SUFFIXES = (".jpg", ".jpeg")
# How many unmatched stems an error message lists per side; more would not fit
# on one line and do not help the user find the problem.
_MAX_LISTED = 5


class Sample(TypedDict):
    """One dataset item, the same format as the synthetic dataset's."""

    image: torch.Tensor  # 3 x H x W float32 RGB in [0, 1]
    alpha: torch.Tensor  # 1 x H x W float32 in [0, 1], 1 = visible face skin
    id: str


def validate_size(size: int | None, flag: str = "size") -> int | None:
    """Return ``size`` if it is ``None`` or a positive multiple of 32.

    Raises:
        ConfigError: naming ``flag`` and the bad value.
    """
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0 or size % SIZE_MULTIPLE:
        raise ConfigError(f"{flag} must be a positive multiple of {SIZE_MULTIPLE} (e.g. 256), got {size!r}")
    return int(size)


# --------------------------------------------------------------------------- scanning


def _png_stems(folder: Path) -> tuple[list[str], list[str]]:
    """Return (sorted stems of ``*.png`` files, names of other visible files) in ``folder``."""
    stems, others = [], []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(".") or not entry.is_file():
                continue  # hidden files include the atomic writers' temporaries
            if entry.name.endswith(".png"):
                stems.append(entry.name[: -len(".png")])
            else:
                others.append(entry.name)
    return sorted(stems), sorted(others)


def _listing(stems: list[str]) -> str:
    shown = ", ".join(stems[:_MAX_LISTED])
    return shown + (f", ... ({len(stems)} in all)" if len(stems) > _MAX_LISTED else "")


def scan_folder(root: str | os.PathLike[str]) -> list[str]:
    """Validate a dataset folder cheaply and return its sorted sample ids.

    Checks that ``root``, ``root/images`` and ``root/alphas`` exist, that they hold
    PNGs, that image and alpha stems match one to one and that no file is empty.
    File contents are not decoded (see :func:`check_pair`).

    Args:
        root: dataset folder in the layout of this module's docstring.

    Returns:
        Sorted list of ids (file stems), never empty.

    Raises:
        DataError: the first problem found, naming the folder or files.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset folder {root} is not a folder")
    subdirs = {name: root / name for name in ("images", "alphas")}
    for name, sub in subdirs.items():
        if not sub.is_dir():
            raise DataError(
                f"dataset folder {root} has no {name}/ subfolder "
                f"(expected {root}/images/<id>.png and {root}/alphas/<id>.png)"
            )
    image_stems, image_others = _png_stems(subdirs["images"])
    alpha_stems, _ = _png_stems(subdirs["alphas"])
    if not image_stems and not alpha_stems:
        hint = ""
        if image_others:
            hint = f" ({len(image_others)} other files in images/, e.g. {image_others[0]}; only .png is read)"
        raise DataError(f"dataset folder {root} is empty: no .png files in images/ or alphas/{hint}")
    image_set, alpha_set = set(image_stems), set(alpha_stems)
    only_images = [s for s in image_stems if s not in alpha_set]
    only_alphas = [s for s in alpha_stems if s not in image_set]
    if only_images or only_alphas:
        parts = []
        if only_images:
            parts.append(f"{len(only_images)} in images/ without an alpha: {_listing(only_images)}")
        if only_alphas:
            parts.append(f"{len(only_alphas)} in alphas/ without an image: {_listing(only_alphas)}")
        raise DataError(f"dataset folder {root}: image and alpha file names do not match; " + "; ".join(parts))
    for stem in image_stems:
        for sub in subdirs.values():
            path = sub / f"{stem}.png"
            if path.is_symlink():  # a link may not lead out of the dataset folder
                resolve_inside(root, f"{sub.name}/{stem}.png", f"dataset folder {root}", DataError)
            if path.stat().st_size == 0:
                raise DataError(f"{path} is an empty (zero-byte) file")
    return image_stems


# --------------------------------------------------------------------------- decoding


def _check_png_complete(path: Path, data: bytes) -> None:
    """Walk the PNG chunk list and fail unless it reaches ``IEND`` inside the file.

    Only chunk lengths are read (no CRCs, no decompression): cheap, and it catches
    a cut-off download or copy, which a decoder might otherwise half-decode.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise DataError(f"{path} is not a PNG file (bad signature); re-save it as PNG")
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length  # length, type, data, crc
        if end > len(data):
            break
        if ctype == b"IEND":
            return
        pos = end
    raise DataError(f"{path} is a truncated PNG (ends before its IEND chunk); re-copy or re-export it")


def _check_jpeg_complete(path: Path, data: bytes) -> None:
    """Fail unless the JPEG has an end-of-image marker after its last scan."""
    if not data.startswith(b"\xff\xd8"):
        raise DataError(f"{path} is not a JPEG file (bad signature); re-save it")
    # Inside entropy-coded data 0xFF is byte-stuffed, so the last start-of-scan
    # marker is real; an EXIF thumbnail's own EOI comes before it.
    last_sos = data.rfind(b"\xff\xda")
    if last_sos < 0 or data.find(b"\xff\xd9", last_sos) < 0:
        raise DataError(f"{path} is a truncated JPEG (no end-of-image marker); re-copy or re-export it")


def read_raw(path: str | os.PathLike[str], grey: bool = False) -> np.ndarray:
    """Read and decode an image file, checking it is complete.

    PNGs are decoded unchanged (bit depth and channels kept, BGR order). JPEGs are
    decoded to 8-bit BGR (or grey if ``grey``) with their EXIF orientation applied,
    as a viewer shows them.

    Args:
        path: a ``.png``, ``.jpg`` or ``.jpeg`` file.
        grey: decode a JPEG as single-channel grey.

    Returns:
        ``H x W`` or ``H x W x C`` (C in 3, 4) uint8 or uint16 array, BGR(A) order.

    Raises:
        DataError: missing, empty, truncated or undecodable file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not data:
        raise DataError(f"{path} is an empty (zero-byte) file")
    if path.suffix.lower() in _JPEG_SUFFIXES:
        _check_jpeg_complete(path, data)
        flags = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    else:
        _check_png_complete(path, data)
        flags = cv2.IMREAD_UNCHANGED
    check_image_pixels(path, data)  # from the header, before decoding
    array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if array is None:
        raise DataError(f"{path} is corrupt: OpenCV cannot decode it")
    if array.dtype not in (np.uint8, np.uint16):
        raise DataError(f"{path} has sample type {array.dtype}; only 8-bit and 16-bit images are supported")
    return array


def _to_float(array: np.ndarray) -> np.ndarray:
    """uint8 -> /255, uint16 -> /65535, as float32 in [0, 1]."""
    scale = 65535.0 if array.dtype == np.uint16 else 255.0
    return array.astype(np.float32) / np.float32(scale)


def _is_opaque(channel: np.ndarray) -> bool:
    return bool((channel == np.iinfo(channel.dtype).max).all())


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as float RGB, applying the conversions of the module docstring.

    Returns:
        ``H x W x 3`` float32 RGB in [0, 1].

    Raises:
        DataError: unreadable file, or an image with real transparency.
    """
    raw = read_raw(path)
    if raw.ndim == 2:
        raw = np.repeat(raw[:, :, None], 3, axis=2)
    elif raw.shape[2] == 4:
        if not _is_opaque(raw[:, :, 3]):
            raise DataError(
                f"{path} has a transparent alpha channel; images must be opaque "
                "(flatten it over a background; a matte belongs in alphas/)"
            )
        raw = raw[:, :, :3]
    elif raw.shape[2] != 3:
        raise DataError(f"{path} has {raw.shape[2]} channels; expected grey, RGB or opaque RGBA")
    rgb = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)  # OpenCV decodes BGR
    return _to_float(rgb)


def read_alpha_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a grey matte, applying the conversions of the module docstring.

    Returns:
        ``H x W`` float32 in [0, 1], 1 = face skin.

    Raises:
        DataError: unreadable file, colour or RGBA matte.
    """
    raw = read_raw(path, grey=True)
    if raw.ndim == 3:
        if raw.shape[2] == 4:
            raise DataError(
                f"{path} is an RGBA/grey+alpha PNG; an alpha matte must be a single grey channel "
                "(255 = face skin); re-save it as greyscale"
            )
        if raw.shape[2] != 3 or not (
            np.array_equal(raw[:, :, 0], raw[:, :, 1]) and np.array_equal(raw[:, :, 0], raw[:, :, 2])
        ):
            raise DataError(
                f"{path} is a colour image; an alpha matte must be grey (255 = face skin); re-save it as greyscale"
            )
        raw = raw[:, :, 0]
    return _to_float(raw)


def check_pair(root: str | os.PathLike[str], sample_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Read, convert and cross-check one image/alpha pair.

    Args:
        root: dataset folder.
        sample_id: file stem, as returned by :func:`scan_folder`.

    Returns:
        ``(image, alpha)``: ``H x W x 3`` float32 RGB and ``H x W`` float32, both
        in [0, 1], at the files' own resolution.

    Raises:
        DataError: a file is unreadable or the sizes differ.
    """
    root = Path(root)
    image_path = root / "images" / f"{sample_id}.png"
    alpha_path = root / "alphas" / f"{sample_id}.png"
    image = read_image_file(image_path)
    alpha = read_alpha_file(alpha_path)
    if image.shape[:2] != alpha.shape:
        (ih, iw), (ah, aw) = image.shape[:2], alpha.shape
        raise DataError(
            f"{image_path} is {iw}x{ih} but its alpha {alpha_path} is {aw}x{ah}; image and alpha must be the same size"
        )
    return image, alpha


# --------------------------------------------------------------------------- dataset


class MattingFolder(Dataset):
    """Dataset over a folder in the on-disk layout, optionally with augmentation.

    Each item is a :class:`Sample`: ``image`` 3 x H x W float32 RGB in [0, 1],
    ``alpha`` 1 x H x W float32 in [0, 1], ``id`` the file stem. Items come in
    sorted id order.

    Augmentation is deterministic: item ``i`` draws from an RNG seeded by
    ``(seed, epoch, i)``, so the same index, seed and epoch always give the same
    sample (training can resume exactly) and epochs differ via :meth:`set_epoch`.

    Args:
        root: dataset folder.
        size: output side in pixels, a multiple of 32, or ``None`` to keep each
            file's size (which then must be a multiple of 32).
        augment: apply train-time augmentation (:func:`~facemat.data.augment.augment_pair`).
        seed: non-negative base seed for augmentation.
        augment_config: augmentation settings; the defaults if ``None``.

    Raises:
        ConfigError: bad ``size`` or ``seed``.
        DataError: the folder fails :func:`scan_folder`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: int | None = None,
        augment: bool = False,
        seed: int = 0,
        *,
        augment_config: AugmentConfig | None = None,
    ) -> None:
        self.root = Path(root)
        self.size = validate_size(size)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.augment = bool(augment)
        self.augment_config = augment_config or AugmentConfig()
        self.epoch = 0
        self.ids = scan_folder(self.root)

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Mix ``epoch`` (>= 0) into the augmentation seed.

        Call it before creating the epoch's DataLoader iterator: workers copy the
        dataset when the iterator starts, so with ``persistent_workers=True`` a later
        call does not reach them.
        """
        if epoch < 0:
            raise ConfigError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """Return the augmentation RNG of item ``index`` for the current epoch."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))

    def verify(self) -> None:
        """Decode every pair now (slow) instead of failing mid-training.

        Raises:
            DataError: the first bad file.
        """
        for sample_id in self.ids:
            image, _ = check_pair(self.root, sample_id)
            self._check_native_size(sample_id, image.shape[:2])

    def _check_native_size(self, sample_id: str, hw: tuple[int, int]) -> None:
        if self.size is None and (hw[0] % SIZE_MULTIPLE or hw[1] % SIZE_MULTIPLE):
            path = self.root / "images" / f"{sample_id}.png"
            raise DataError(
                f"{path} is {hw[1]}x{hw[0]}, not a multiple of {SIZE_MULTIPLE} in both sides; "
                f"pass --size (e.g. --size 256) to resize"
            )

    def __getitem__(self, index: int) -> Sample:
        n = len(self.ids)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n  # negative indices must map to the same RNG as their positive twin
        sample_id = self.ids[index]
        image, alpha = check_pair(self.root, sample_id)
        self._check_native_size(sample_id, image.shape[:2])
        out_hw = image.shape[:2] if self.size is None else (self.size, self.size)
        if self.augment:
            image, alpha = augment_pair(image, alpha, self.rng(index), out_hw, self.augment_config)
        elif tuple(out_hw) != image.shape[:2]:
            image, alpha = resize_pair(image, alpha, out_hw)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)),  # HWC -> CHW
            "alpha": torch.from_numpy(np.ascontiguousarray(alpha[None], dtype=np.float32)),  # HW -> 1HW
            "id": sample_id,
        }
