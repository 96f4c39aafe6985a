"""Tests of the procedural face generator (facemat.data.synth)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facemat.cli import run_main
from facemat.data.synth import (
    SynthDataset,
    SynthSettings,
    generate,
    main,
    render_sample,
    sample_id,
    semi_transparent_fraction,
    split_key,
)
from facemat.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
META_KEYS = {"id", "seed", "occluders", "occluded_fraction", "semi_transparent"}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- CLI and files


def test_cli_writes_layout_meta_config_and_preview(tmp_path):
    out, preview = tmp_path / "ds", tmp_path / "sheet.png"
    rc = run_main(
        main,
        ["--out", str(out), "--count", "5", "--seed", "3", "--size", "64", "--split", "val", "--preview", str(preview)],
    )
    assert rc == 0
    ids = [sample_id("val", i) for i in range(5)]
    for i in ids:
        img = cv2.imread(str(out / "images" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        alpha = cv2.imread(str(out / "alphas" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert alpha.shape == (64, 64) and alpha.dtype == np.uint8
        assert alpha.max() == 255  # some face skin is visible in every sample
    lines = (out / "meta.jsonl").read_text().splitlines()
    assert len(lines) == 5
    metas = [json.loads(line) for line in lines]
    assert [m["id"] for m in metas] == ids
    for m in metas:
        assert META_KEYS <= set(m)
        assert m["seed"] == 3 and isinstance(m["occluders"], list) and isinstance(m["semi_transparent"], bool)
        assert 0.0 <= m["occluded_fraction"] <= 1.0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["count"], cfg["seed"], cfg["size"], cfg["split"]) == (5, 3, 64, "val")
    sheet = cv2.imread(str(preview), cv2.IMREAD_COLOR)
    assert sheet is not None and sheet.shape[0] >= 64 and sheet.shape[1] >= 3 * 64
    assert not list(out.rglob("*.tmp"))  # atomic writes leave no temporaries behind


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    generate(SynthSettings(out=a, count=4, seed=7, size=64))
    generate(SynthSettings(out=b, count=4, seed=7, size=64))
    generate(SynthSettings(out=c, count=4, seed=8, size=64))
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    assert fa.keys() == fc.keys()
    assert fa["images/train-000000.png"] != fc["images/train-000000.png"]
    assert fa["meta.jsonl"] != fc["meta.jsonl"]


def test_rerun_is_a_no_op_and_other_settings_are_refused(tmp_path):
    out = tmp_path / "ds"
    generate(SynthSettings(out=out, count=3, seed=1, size=64))
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    generate(SynthSettings(out=out, count=3, seed=1, size=64))
    assert stamp == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="other settings"):
        generate(SynthSettings(out=out, count=3, seed=2, size=64))


def test_bad_size_exits_2_with_one_line_naming_the_flag(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "facemat.data.synth", "--out", str(tmp_path / "x"), "--count", "2", "--size", "100"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--size" in lines[0] and "32" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--count", "0"], "--count"),
        (["--count", "2", "--size", "0"], "--size"),
        (["--count", "2", "--seed", "-1"], "--seed"),
        (["--count", "2", "--split", "a/b"], "--split"),
        (["--count", "2", "--preview", "x.jpg"], "--preview"),
    ],
)
def test_bad_settings_name_their_flag(tmp_path, capsys, args, flag):
    assert run_main(main, ["--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and flag in err[0]


# --------------------------------------------------------------------------- samples and dataset


def test_render_sample_is_a_pure_function_of_its_arguments():
    a, b = render_sample(11, 4, 64), render_sample(11, 4, 64)
    assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
    assert a.alpha.dtype == np.uint8 and a.alpha.shape == (64, 64)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.alpha, b.alpha) and a.meta == b.meta
    assert not np.array_equal(a.image, render_sample(11, 5, 64).image)
    assert not np.array_equal(a.image, render_sample(11, 4, 64, split="val").image)
    with pytest.raises(ConfigError, match="size"):
        render_sample(0, 0, 100)


def test_split_key_is_a_constant():
    # sha256 of the name, not Python's hash() (salted per process): every worker and
    # every run must draw the same samples. Changing it changes every dataset.
    assert split_key("train") == 15782024995084201745
    assert split_key("val") != split_key("train")


def test_dataset_is_deterministic_typed_and_in_range():
    ds = SynthDataset(length=6, seed=5, size=64, split="train")
    assert len(ds) == 6
    forward = [ds[i] for i in range(6)]
    backward = [SynthDataset(6, 5, 64, "train")[i] for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward):
        assert x["id"] == y["id"]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["alpha"], y["alpha"])
    item = forward[2]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["alpha"].shape == (1, 64, 64) and item["alpha"].dtype == torch.float32
    for t in (item["image"], item["alpha"]):
        assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert item["id"] == "train-000002"
    assert torch.equal(ds[-1]["image"], forward[5]["image"])
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(ConfigError, match="size"):
        SynthDataset(4, size=100)


def test_dataloader_workers_give_the_same_batches():
    ds = SynthDataset(length=4, seed=2, size=64)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    got = torch.cat([b["image"] for b in loader])
    want = torch.stack([ds[i]["image"] for i in range(4)])
    assert torch.equal(got, want)


def test_disk_and_dataset_agree(tmp_path):
    out = generate(SynthSettings(out=tmp_path / "ds", count=3, seed=9, size=64, split="test"))
    ds = SynthDataset(length=3, seed=9, size=64, split="test")
    for i in range(3):
        item = ds[i]
        disk_alpha = cv2.imread(str(out / "alphas" / f"{item['id']}.png"), cv2.IMREAD_UNCHANGED)
        disk_image = _read_rgb(out / "images" / f"{item['id']}.png")
        assert torch.equal(item["alpha"][0], torch.from_numpy(disk_alpha).float() / 255.0)
        assert torch.equal(item["image"], torch.from_numpy(disk_image).permute(2, 0, 1).float() / 255.0)


# --------------------------------------------------------------------------- content


def test_hands_and_semi_transparency_are_common():
    metas = [render_sample(0, i, 256).meta for i in range(200)]
    hands = np.mean([m["hand"] for m in metas])
    semi = np.mean([m["semi_transparent"] for m in metas])
    semi_strict = np.mean([m["semi_fraction_no_edges"] >= 0.01 for m in metas])
    assert hands > 0.20, hands
    assert semi > 0.15, semi
    assert semi_strict > 0.15, semi_strict  # not only anti-aliased outlines
    n_occ = [len(m["occluders"]) for m in metas]
    assert 0 in n_occ and max(n_occ) >= 2  # some clean faces, some with several occluders
    kinds = {k for m in metas for k in m["occluders"]}
    assert {"hand", "strands", "fringe", "glasses", "mask", "smoke", "cup", "phone", "microphone"} <= kinds


def test_ground_truth_is_face_skin_times_occluder_transmission():
    seen_opaque = seen_hand = seen_ears = seen_neck = 0
    for i in range(40):
        s = render_sample(4, i, 128, layers=True)
        L = s.layers
        gt = s.alpha.astype(np.float32) / 255.0
        # Ground truth = face skin x prod(1 - alpha_k), up to 8-bit rounding.
        assert np.abs(gt - L["skin"] * (1.0 - L["occluders"])).max() <= 0.5 / 255 + 1e-4
        opaque = L["opaque"] > 0
        assert not s.alpha[opaque].any()  # under an opaque occluder: no face
        seen_opaque += opaque.sum()
        hand = L["hand"] >= 1.0
        assert not s.alpha[hand].any()  # a hand is skin, not face
        seen_hand += hand.sum()
        for part in ("ears", "neck"):  # skin-coloured, never face
            visible = L[part] >= 1.0  # fully covered by ear / neck, nothing of the face in front
            assert not s.alpha[visible].any()
        seen_ears += (L["ears"] >= 1.0).sum()
        seen_neck += (L["neck"] >= 1.0).sum()
        if not s.meta["occluders"]:
            assert np.array_equal(s.alpha, cv2.convertScaleAbs(L["skin"], alpha=255.0))
            assert s.meta["occluded_fraction"] == 0.0
            assert s.meta["semi_fraction_no_edges"] < 0.01  # a bare face's soft edge is an outline
        skin = float(L["skin"].sum())
        assert abs(s.meta["occluded_fraction"] - (1.0 - gt.sum() / skin)) < 0.01
    assert seen_opaque and seen_hand and seen_ears and seen_neck


def test_face_edge_is_soft_but_thin():
    s = render_sample(0, 0, 256, layers=True)
    skin = s.layers["skin"]
    frac = (skin > 0.02) & (skin < 0.98)
    assert frac.any()  # anti-aliased, not a binary mask
    assert semi_transparent_fraction(cv2.convertScaleAbs(skin, alpha=255.0)) < 0.01  # about one pixel wide
