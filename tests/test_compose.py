"""Tests for the real-data compositor ``facemat.data.compose``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemat.data.compose import ComposeSettings, compose, main
from facemat.data.folder import MattingFolder, scan_folder
from facemat.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, array: np.ndarray, ext_params: list[int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array, ext_params or [])


def _make_sources(root: Path) -> dict[str, Path]:
    """3 faces (PNG, JPG, grey PNG) with masks at other resolutions, and 2 RGBA occluders."""
    rng = np.random.default_rng(0)
    faces, masks, occs = root / "faces", root / "masks", root / "occ"
    for i, (h, w, ext) in enumerate([(96, 96, ".png"), (120, 100, ".jpg"), (80, 80, ".png")]):
        photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i == 2:
            photo = photo[..., 0]  # greyscale photo
        _write(faces / f"face{i}{ext}", photo)
        mask = np.zeros((h // 2, w // 2), np.uint8)  # half resolution: resized to the photo
        cv2.ellipse(mask, (w // 4, h // 4), (w // 6, h // 5), 0, 0, 360, 255, -1)
        _write(masks / f"face{i}.png", mask)
    for j, (h, w) in enumerate([(40, 30), (24, 50)]):
        bgra = np.zeros((h, w, 4), np.uint8)
        bgra[..., :3] = rng.integers(0, 256, 3, dtype=np.uint8)
        bgra[2:-2, 2:-2, 3] = 255  # opaque core, transparent rim
        _write(occs / f"occ{j}.png", bgra)
    return {"faces": faces, "skin_masks": masks, "occluders": occs}


def _settings(src: dict[str, Path], out: Path, **kw: object) -> ComposeSettings:
    defaults: dict[str, object] = {"count": 8, "seed": 3, "size": 64}
    return ComposeSettings(out=out, **src, **{**defaults, **kw})  # type: ignore[arg-type]


def _read(path: Path) -> np.ndarray:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert array is not None, path
    return array


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_compose_layout_and_ground_truth(tmp_path: Path) -> None:
    src = _make_sources(tmp_path)
    out = compose(_settings(src, tmp_path / "out", max_occluders=3))
    ids = scan_folder(out)
    assert ids == [f"{i:06d}" for i in range(8)]
    rows = [json.loads(line) for line in (out / "meta.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ids
    for r in rows:
        assert set(r) >= {"id", "seed", "face", "occluders", "occluded_fraction"}
        assert r["seed"] == 3 and r["face"] in {"face0", "face1", "face2"}
        assert all(o in {"occ0", "occ1"} for o in r["occluders"]) and len(r["occluders"]) <= 3
        assert 0.0 <= r["occluded_fraction"] <= 1.0
    # Faces cycle: the first 3 samples use each face once.
    assert sorted(r["face"] for r in rows[:3]) == ["face0", "face1", "face2"]
    config = json.loads((out / "config.json").read_text())
    assert config["count"] == 8 and config["size"] == 64 and config["seed"] == 3

    occluded_pixels = 0
    for sample_id in ids:
        image = _read(out / "images" / f"{sample_id}.png")
        gt = _read(out / "alphas" / f"{sample_id}.png")
        skin = _read(out / "skin" / f"{sample_id}.png")
        occ = _read(out / "occluders" / f"{sample_id}.png")
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert gt.shape == skin.shape == occ.shape == (64, 64) and gt.dtype == np.uint8
        assert np.all(gt <= skin)
        assert np.all(gt[occ == 255] == 0)
        occluded_pixels += int(np.count_nonzero((occ == 255) & (skin == 255)))
    assert occluded_pixels > 0  # some occluder really covered some face
    item = MattingFolder(out)[0]
    assert tuple(item["image"].shape) == (3, 64, 64)


def test_compose_deterministic_and_rerun_noop(tmp_path: Path) -> None:
    src = _make_sources(tmp_path)
    a = compose(_settings(src, tmp_path / "a"))
    b = compose(_settings(src, tmp_path / "b"))
    assert _tree_bytes(a) == _tree_bytes(b)
    c = compose(_settings(src, tmp_path / "c", seed=4))
    images = lambda root: {k: v for k, v in _tree_bytes(root).items() if k.startswith("images/")}  # noqa: E731
    assert images(c) != images(a)
    # A finished build with the same settings is left alone.
    mtime = (a / "meta.jsonl").stat().st_mtime_ns
    compose(_settings(src, a))
    assert (a / "meta.jsonl").stat().st_mtime_ns == mtime
    # An interrupted build (files missing, no meta.jsonl) resumes to the same bytes.
    (a / "meta.jsonl").unlink()
    (a / "images" / "000005.png").unlink()
    compose(_settings(src, a))
    assert _tree_bytes(a) == _tree_bytes(b)
    with pytest.raises(ConfigError, match=r"holds a build with other settings \(differs in: count\)"):
        compose(_settings(src, a, count=9))


def test_compose_cli_subprocess(tmp_path: Path) -> None:
    src = _make_sources(tmp_path)
    out = tmp_path / "cli_out"
    cmd = [
        sys.executable, "-m", "facemat.data.compose",
        "--faces", str(src["faces"]), "--skin-masks", str(src["skin_masks"]), "--occluders", str(src["occluders"]),
        "--out", str(out), "--count", "8", "--seed", "3", "--size", "64",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ref = compose(_settings(src, tmp_path / "ref"))
    assert _tree_bytes(out) == _tree_bytes(ref)

    bad = cmd[:-2] + ["--size", "100"]
    proc = subprocess.run(bad, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --size must be a positive multiple of 32 (e.g. 256), got 100"


def test_face_without_mask(tmp_path: Path) -> None:
    src = _make_sources(tmp_path)
    (src["skin_masks"] / "face1.png").unlink()
    with pytest.raises(DataError, match=r"face photo .*face1\.jpg has no skin mask in .*masks"):
        compose(_settings(src, tmp_path / "out"))


def test_occluder_without_alpha(tmp_path: Path) -> None:
    src = _make_sources(tmp_path)
    _write(src["occluders"] / "flat.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match=r"occluder .*flat\.png has no alpha channel"):
        compose(_settings(src, tmp_path / "out"))


def test_occluder_jpeg_rejected(tmp_path: Path) -> None:
    src = _make_sources(tmp_path)
    _write(src["occluders"] / "hand.jpg", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match=r"occluder .*hand\.jpg has no alpha channel"):
        compose(_settings(src, tmp_path / "out"))


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    src = _make_sources(tmp_path)
    with pytest.raises(DataError, match=r"--faces folder .*nowhere does not exist"):
        compose(_settings({**src, "faces": tmp_path / "nowhere"}, tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"--faces folder .*empty holds no face photos"):
        compose(_settings({**src, "faces": tmp_path / "empty"}, tmp_path / "out"))


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--size", "100", "--size must be a positive multiple of 32 (e.g. 256), got 100"),
        ("--size", "0", "--size must be a positive multiple of 32 (e.g. 256), got 0"),
        ("--count", "0", "--count must be a positive integer, got 0"),
        ("--count", "x", "argument --count: invalid int value: 'x' (see --help)"),
    ],
)
def test_cli_bad_flags_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    from facemat.cli import run_main

    argv = ["--faces", "f", "--skin-masks", "m", "--occluders", "o", "--out", str(tmp_path / "o"), "--count", "2"]
    argv += [flag, value]
    assert run_main(main, argv) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_cli_face_without_mask_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from facemat.cli import run_main

    src = _make_sources(tmp_path)
    (src["skin_masks"] / "face0.png").unlink()
    argv = ["--faces", str(src["faces"]), "--skin-masks", str(src["skin_masks"]), "--occluders", str(src["occluders"])]
    argv += ["--out", str(tmp_path / "out"), "--count", "2"]
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: face photo ") and "face0.png has no skin mask" in err and err.count("\n") == 1
