"""Tests for the dataset folder reader and the train-time augmentation."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facemat.data.augment import GEOMETRIC_ONLY, AugmentConfig, augment_pair
from facemat.data.folder import MattingFolder, check_pair, read_alpha_file, read_image_file, scan_folder
from facemat.errors import ConfigError, DataError


def _write(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (OpenCV channel order) as a PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def _make_folder(root: Path, n: int = 3, h: int = 64, w: int = 64, seed: int = 0) -> Path:
    """A valid dataset of ``n`` random 8-bit pairs."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        _write(root / "images" / f"s{i:02d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        _write(root / "alphas" / f"s{i:02d}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
    return root


def _png_bytes(width: int, height: int, colour_type: int, rows: list[bytes]) -> bytes:
    """Hand-built 8-bit PNG: OpenCV cannot write a grey + alpha PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- valid folders


def test_loads_valid_folder(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "ds", n=3, h=64, w=96)
    (root / "meta.jsonl").write_text("{}\n")  # extras are ignored
    (root / "fg").mkdir()
    ds = MattingFolder(root)
    assert len(ds) == 3
    assert ds.ids == ["s00", "s01", "s02"]
    item = ds[1]
    assert item["id"] == "s01"
    assert item["image"].shape == (3, 64, 96) and item["image"].dtype == torch.float32
    assert item["alpha"].shape == (1, 64, 96) and item["alpha"].dtype == torch.float32
    for key in ("image", "alpha"):
        assert 0.0 <= float(item[key].min()) and float(item[key].max()) <= 1.0
    alpha8 = cv2.imread(str(root / "alphas" / "s01.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(item["alpha"][0].numpy(), alpha8 / 255.0, atol=1e-6)
    assert ds[-1]["id"] == "s02"
    with pytest.raises(IndexError):
        ds[3]


def test_rgb_order_pure_red(tmp_path: Path) -> None:
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 2] = 255  # BGR for OpenCV
    _write(tmp_path / "images" / "a.png", red)
    _write(tmp_path / "alphas" / "a.png", np.full((32, 32), 255, np.uint8))
    image = MattingFolder(tmp_path)[0]["image"]
    assert torch.all(image[0] == 1.0) and torch.all(image[1:] == 0.0)


def test_size_resizes_to_square(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=2, h=50, w=70)  # not multiples of 32: fine with size
    item = MattingFolder(root, size=32)[0]
    assert item["image"].shape == (3, 32, 32) and item["alpha"].shape == (1, 32, 32)
    item = MattingFolder(root, size=64, augment=True)[0]
    assert item["image"].shape == (3, 64, 64) and item["alpha"].shape == (1, 64, 64)


# --------------------------------------------------------------------------- folder errors


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope does not exist"):
        MattingFolder(tmp_path / "nope")


@pytest.mark.parametrize("present", ["images", "alphas"])
def test_missing_subfolder(tmp_path: Path, present: str) -> None:
    (tmp_path / present).mkdir()
    other = "alphas" if present == "images" else "images"
    with pytest.raises(DataError, match=rf"has no {other}/ subfolder"):
        scan_folder(tmp_path)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "alphas").mkdir()
    (tmp_path / "images" / "x.jpg").write_bytes(b"jpg")
    with pytest.raises(DataError, match=r"is empty: no \.png files.*only \.png is read"):
        scan_folder(tmp_path)


def test_mismatched_stems(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=2)
    (root / "images" / "s00.png").rename(root / "images" / "lonely_image.png")
    _write(root / "alphas" / "lonely_alpha.png", np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError) as info:
        scan_folder(root)
    msg = str(info.value)
    assert "do not match" in msg and "\n" not in msg
    assert "1 in images/ without an alpha: lonely_image" in msg
    assert "2 in alphas/ without an image: lonely_alpha, s00" in msg


def test_mismatched_stems_lists_only_a_few(tmp_path: Path) -> None:
    (tmp_path / "alphas").mkdir()
    for i in range(9):
        _write(tmp_path / "images" / f"i{i}.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=r"9 in images/ without an alpha: i0, i1, i2, i3, i4, \.\.\. \(9 in all\)"):
        scan_folder(tmp_path)


def test_zero_byte_file(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=2)
    (root / "alphas" / "s01.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"alphas/s01\.png is an empty \(zero-byte\) file"):
        MattingFolder(root)
    with pytest.raises(DataError, match=r"is an empty \(zero-byte\) file"):
        check_pair(root, "s01")


def test_corrupt_bytes(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=2)
    path = root / "images" / "s00.png"
    data = bytearray(path.read_bytes())
    # Keep the chunk structure (so it is not "truncated") but garble the pixels.
    start = data.index(b"IDAT") + 4
    data[start : start + 64] = bytes(range(64))
    path.write_bytes(bytes(data))
    ds = MattingFolder(root)  # cheap scan cannot see it
    with pytest.raises(DataError, match=r"images/s00\.png is corrupt: OpenCV cannot decode it"):
        ds[0]


def test_not_a_png(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=1)
    (root / "images" / "s00.png").write_bytes(b"this is text, not an image")
    with pytest.raises(DataError, match=r"s00\.png is not a PNG file"):
        MattingFolder(root)[0]


def test_truncated_png(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=2)
    path = root / "alphas" / "s01.png"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 12])  # only the IEND chunk is missing
    ds = MattingFolder(root)
    ds[0]
    with pytest.raises(DataError, match=r"alphas/s01\.png is a truncated PNG"):
        ds[1]
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"alphas/s01\.png is a truncated PNG"):
        ds.verify()


def test_size_mismatch(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=1)
    _write(root / "alphas" / "s00.png", np.zeros((32, 64), np.uint8))
    with pytest.raises(DataError, match=r"s00\.png is 64x64 but its alpha .*s00\.png is 64x32"):
        MattingFolder(root)[0]


def test_not_multiple_of_32_without_size(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=1, h=64, w=70)
    with pytest.raises(DataError, match=r"images/s00\.png is 70x64, not a multiple of 32.*--size"):
        MattingFolder(root)[0]


@pytest.mark.parametrize("size", [0, 100, -32, 33])
def test_bad_size_config(tmp_path: Path, size: int) -> None:
    root = _make_folder(tmp_path, n=1)
    with pytest.raises(ConfigError, match=rf"size must be a positive multiple of 32.*got {size}"):
        MattingFolder(root, size=size)


# --------------------------------------------------------------------------- conversions


def test_grey_image_replicated(tmp_path: Path) -> None:
    grey = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8)
    path = _write(tmp_path / "g.png", grey)
    image = read_image_file(path)
    assert image.shape == (32, 32, 3)
    for c in range(3):
        np.testing.assert_allclose(image[..., c], grey / 255.0, atol=1e-6)


def test_rgba_image_opaque_dropped_else_error(tmp_path: Path) -> None:
    bgra = np.zeros((32, 32, 4), np.uint8)
    bgra[..., 1] = 200
    bgra[..., 3] = 255
    image = read_image_file(_write(tmp_path / "opaque.png", bgra))
    np.testing.assert_allclose(image[0, 0], [0.0, 200 / 255.0, 0.0], atol=1e-6)
    bgra[3, 3, 3] = 254
    with pytest.raises(DataError, match=r"transparent\.png has a transparent alpha channel"):
        read_image_file(_write(tmp_path / "transparent.png", bgra))


def test_grey_alpha_image_png(tmp_path: Path) -> None:
    path = tmp_path / "ga.png"
    path.write_bytes(_png_bytes(2, 2, 4, [bytes([10, 255, 20, 255])] * 2))
    np.testing.assert_allclose(read_image_file(path)[0, 1], [20 / 255.0] * 3, atol=1e-6)
    with pytest.raises(DataError, match=r"ga\.png is an RGBA/grey\+alpha PNG"):
        read_alpha_file(path)


def test_16bit_scaled(tmp_path: Path) -> None:
    rgb16 = np.zeros((32, 32, 3), np.uint16)
    rgb16[..., 0] = 65535
    rgb16[..., 1] = 32768
    image = read_image_file(_write(tmp_path / "img16.png", _rgb_to_bgr(rgb16)))
    np.testing.assert_allclose(image[0, 0], [1.0, 32768 / 65535.0, 0.0], atol=1e-6)
    alpha16 = np.full((32, 32), 16384, np.uint16)
    alpha = read_alpha_file(_write(tmp_path / "a16.png", alpha16))
    assert alpha.dtype == np.float32
    np.testing.assert_allclose(alpha, 16384 / 65535.0, atol=1e-6)


def test_alpha_three_equal_channels_ok_else_error(tmp_path: Path) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    alpha = read_alpha_file(_write(tmp_path / "a3.png", np.repeat(grey[..., None], 3, axis=2)))
    np.testing.assert_allclose(alpha, grey / 255.0, atol=1e-6)
    colour = np.repeat(grey[..., None], 3, axis=2)
    colour[0, 0, 1] ^= 1
    with pytest.raises(DataError, match=r"colour\.png is a colour image; an alpha matte must be grey"):
        read_alpha_file(_write(tmp_path / "colour.png", colour))


def test_alpha_rgba_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"a4\.png is an RGBA/grey\+alpha PNG"):
        read_alpha_file(_write(tmp_path / "a4.png", np.full((32, 32, 4), 255, np.uint8)))


# --------------------------------------------------------------------------- augmentation


def _aligned_folder(root: Path, h: int = 80, w: int = 96) -> Path:
    """Pairs whose alpha equals the image's red channel (a smooth, asymmetric pattern)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(4):
        # Brighter to the right, so a mirrored sample is recognisable.
        red = np.clip(0.1 + 0.7 * xx / w + 0.1 * np.sin(yy / (3.0 + i) + xx / 5.0), 0, 1)
        red8 = np.round(red * 255).astype(np.uint8)
        rgb = np.stack([red8, np.full_like(red8, 40), (255 - red8)], axis=2)
        _write(root / "images" / f"p{i}.png", _rgb_to_bgr(rgb))
        _write(root / "alphas" / f"p{i}.png", red8)
    return root


def test_geometric_augmentation_keeps_alignment(tmp_path: Path) -> None:
    root = _aligned_folder(tmp_path)
    config = AugmentConfig(flip_p=0.5, scale=(1.0, 1.8), blur_p=0.5, jitter_p=0.0, noise_p=0.0, jpeg_p=0.0)
    ds = MattingFolder(root, size=64, augment=True, augment_config=config)
    flipped = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            torch.testing.assert_close(item["alpha"][0], item["image"][0], atol=1e-5, rtol=0)
            flipped += int(float(item["alpha"][0, :, :8].mean()) > float(item["alpha"][0, :, -8:].mean()))
    assert flipped > 0  # the pattern is asymmetric: some samples really were mirrored


def test_photometric_augmentation_changes_image_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 3), dtype=np.float32)
    alpha = rng.random((64, 64), dtype=np.float32)
    config = AugmentConfig(flip_p=0.0, scale=(1.0, 1.0), blur_p=0.0, jitter_p=1.0, noise_p=1.0, jpeg_p=1.0)
    out_image, out_alpha = augment_pair(image, alpha, np.random.default_rng(1), (64, 64), config)
    np.testing.assert_array_equal(out_alpha, alpha)
    assert out_image.dtype == np.float32 and out_image.shape == (64, 64, 3)
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0
    assert np.abs(out_image - image).mean() > 0.01


def test_augmentation_deterministic_per_seed_and_index(tmp_path: Path) -> None:
    root = _make_folder(tmp_path, n=3, h=64, w=64)
    a = MattingFolder(root, size=32, augment=True, seed=7)
    b = MattingFolder(root, size=32, augment=True, seed=7)
    # Reading order must not matter: item 2 first in one dataset, last in the other.
    first_b = b[2]
    for i in range(3):
        a[i]
    torch.testing.assert_close(a[2]["image"], first_b["image"], atol=0, rtol=0)
    torch.testing.assert_close(a[2]["alpha"], first_b["alpha"], atol=0, rtol=0)
    other_seed = MattingFolder(root, size=32, augment=True, seed=8)[2]
    assert not torch.equal(other_seed["image"], first_b["image"])
    b.set_epoch(1)
    assert not torch.equal(b[2]["image"], first_b["image"])
    b.set_epoch(0)
    assert torch.equal(b[2]["image"], first_b["image"])


def test_augment_config_validated() -> None:
    with pytest.raises(ConfigError, match=r"flip_p must be a probability"):
        AugmentConfig(flip_p=1.5)
    with pytest.raises(ConfigError, match=r"scale must be a range"):
        AugmentConfig(scale=(0.5, 1.0))
    assert GEOMETRIC_ONLY.jpeg_p == 0.0
