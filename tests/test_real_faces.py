"""Real-image inputs: the package fetcher, Face Mesh and the mesh-oval baseline, real faces with occluders."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from facemat.errors import ConfigError, DataError
from facemat.pretrained import fetch as fetch_mod
from facemat.pretrained.fetch import ASSETS, fetch, mediapipe_model


@pytest.fixture(scope="module")
def mesh():
    from facemat.pretrained.facemesh import FaceMesh

    return FaceMesh()


# ----------------------------------------------------------------------------- fetch


def test_fetch_caches_checked_files_with_their_sources(tmp_path: Path):
    # Reuse the session cache's copy when present: the point here is the cache's bookkeeping.
    got = fetch(["face_landmark.tflite"], cache=tmp_path)
    path = got["face_landmark.tflite"]
    assert path == tmp_path / "mediapipe" / "face_landmark.tflite"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ASSETS["face_landmark.tflite"].sha256
    sources = json.loads((tmp_path / "SOURCES.json").read_text())
    row = next(r for r in sources["assets"] if r["file"] == "mediapipe/face_landmark.tflite")
    assert row["package"] == "mediapipe==0.10.21" and row["package_licence"] == "Apache-2.0"
    assert "Apache License" in (tmp_path / "licences" / "mediapipe.txt").read_text()
    # A damaged cached file is fetched again, not used.
    path.write_bytes(b"not a model")
    again = fetch(["face_landmark.tflite"], cache=tmp_path)["face_landmark.tflite"]
    assert hashlib.sha256(again.read_bytes()).hexdigest() == ASSETS["face_landmark.tflite"].sha256


def test_fetch_refuses_a_member_with_another_hash(tmp_path: Path, monkeypatch):
    wheel = tmp_path / "dl" / "mediapipe-0.10.21-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(ASSETS["face_landmark.tflite"].member, b"tampered bytes")
        z.writestr("mediapipe-0.10.21.dist-info/LICENSE", "Apache License")
    monkeypatch.setattr(fetch_mod, "_download", lambda package, into: wheel)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="expected .*refusing it"):
        fetch(["face_landmark.tflite"], cache=cache)
    assert not (cache / "mediapipe" / "face_landmark.tflite").exists()


def test_source_archives_come_from_the_index_and_are_checked(tmp_path: Path, monkeypatch):
    import io
    import tarfile

    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/data/face.jpg")
        info.size = 5
        t.addfile(info, io.BytesIO(b"bytes"))
    blob = payload.getvalue()
    files = [{"filename": "pkg-0.9.tar.gz", "url": "https://x/pkg-0.9.tar.gz", "hashes": {"sha256": "0"}},
             {"filename": "pkg-1.0-py3-none-any.whl", "url": "https://x/w", "hashes": {"sha256": "0"}},
             {"filename": "pkg-1.0.tar.gz", "url": "https://x/pkg-1.0.tar.gz",
              "hashes": {"sha256": hashlib.sha256(blob).hexdigest()}}]
    asked = []

    def urlopen(request, timeout):
        url = getattr(request, "full_url", request)
        asked.append(url)
        body = json.dumps({"files": files}).encode() if url.endswith("/pkg/") else blob
        return io.BytesIO(body)

    monkeypatch.setattr(fetch_mod.urllib.request, "urlopen", urlopen)
    package = fetch_mod.Package("pkg==1.0", "sdist", "pkg-1.0/LICENSE", "MIT")
    archive = fetch_mod._download(package, tmp_path)
    assert archive.name == "pkg-1.0.tar.gz" and archive.read_bytes() == blob
    assert asked == ["https://pypi.org/simple/pkg/", "https://x/pkg-1.0.tar.gz"]
    assert fetch_mod._read_members(archive, ["pkg-1.0/data/face.jpg"]) == {"pkg-1.0/data/face.jpg": b"bytes"}
    # An archive that does not match the index's hash is refused and not written.
    files[2]["hashes"]["sha256"] = "f" * 64
    (tmp_path / "again").mkdir()
    with pytest.raises(DataError, match="does not match the sha256"):
        fetch_mod._download(package, tmp_path / "again")
    assert not list((tmp_path / "again").iterdir())
    # A release without a source archive is named.
    with pytest.raises(DataError, match="no source archive for pkg==2.0"):
        fetch_mod._download(fetch_mod.Package("pkg==2.0", "sdist", "x", "MIT"), tmp_path)


def test_fetch_errors_are_one_line(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown asset 'nope.tflite'"):
        fetch(["nope.tflite"], cache=tmp_path)
    proc = subprocess.run([sys.executable, "-m", "facemat.pretrained.fetch", "--what", "everything"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1


# ---------------------------------------------------------------- Face Mesh, mesh-oval


def test_fill_polygon_covers_the_polygons_area():
    from facemat.pretrained.facemesh import fill_polygon

    # Pixel centres at integers: a square from -0.5 to 9.5 covers pixels 0..9.
    cov = fill_polygon(np.array([[-0.5, -0.5], [9.5, -0.5], [9.5, 9.5], [-0.5, 9.5]]), 16, 16)
    assert cov[:10, :10].min() == pytest.approx(1.0)
    assert cov[11:, :].max() == 0.0 and cov[:, 11:].max() == 0.0
    # The supersampled fill is exact up to a quarter pixel row per edge (OpenCV fills both end points).
    assert abs(cov.sum() - 100.0) <= 10 * 0.25 * 2 + 0.1
    cov = fill_polygon(np.array([[1.5, 1.5], [4.0, 1.5], [4.0, 5.5], [1.5, 5.5]]), 8, 8)
    assert 0.25 <= cov[3, 4] <= 0.75 and abs(cov.sum() - 2.5 * 4) <= (2.5 + 4) * 0.25 + 0.1


def test_face_mesh_finds_a_real_face(mesh):
    from facemat.pretrained.facemesh import FACE_OVAL, fill_polygon
    from facemat.pretrained.fetch import face_photo

    rgb = cv2.imread(str(face_photo("grace_hopper.jpg")))[..., ::-1]
    crop = np.ascontiguousarray(rgb[60:420, 80:440])  # her head, about centred
    lm, presence = mesh(crop)
    assert presence > 0.9
    oval = lm[list(FACE_OVAL), :2]
    assert (oval.min(0) > 0).all() and (oval.max(0) < 360).all()
    area = fill_polygon(oval, 360, 360).sum() / 360**2
    assert 0.15 < area < 0.6
    # A blank picture holds no face.
    _, none = mesh(np.full((192, 192, 3), 127, np.uint8))
    assert none < 0.5


def test_mesh_oval_beats_chance_on_unoccluded_real_faces_and_loses_to_occluders(mesh):
    from facemat.data.real import render_real
    from facemat.metrics import iou

    clear, hidden = [], []
    for i in range(40):
        s = render_real(5, i, 256, "t", "holdout")
        score = iou(mesh.oval(s.image), s.alpha / 255.0)
        (hidden if s.meta["occluded_fraction"] >= 0.2 else clear if s.meta["occluded_fraction"] < 0.01 else []).append(score)
    assert clear and hidden
    # The face oval is the skin region of unoccluded real faces (up to framing), not of occluded ones.
    assert np.mean(clear) > 0.75 and np.mean(hidden) < np.mean(clear) - 0.15


# ------------------------------------------------------------------- real faces + occluders


def test_real_samples_are_deterministic_and_exact():
    from facemat.data.real import render_real

    a, b = render_real(3, 7, 128, "x", "train"), render_real(3, 7, 128, "x", "train")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.alpha, b.alpha) and a.meta == b.meta
    assert a.image.shape == (128, 128, 3) and a.alpha.dtype == np.uint8
    other = render_real(3, 8, 128, "x", "train")
    assert not np.array_equal(a.image, other.image)


def test_training_streams_never_draw_held_out_faces():
    from facemat.data.real import FACES, render_mix, render_real

    held = {f.name for f in FACES if f.group == "holdout"}
    train = {f.name for f in FACES if f.group == "train"}
    assert held and train and not held & train
    photos_held = {f.photo for f in FACES if f.group == "holdout"}
    assert not photos_held & {f.photo for f in FACES if f.group == "train"}
    seen = {render_real(0, i, 64, "train", "train").meta["face"] for i in range(30)}
    seen |= {render_mix(0, i, 64, "train").meta.get("face") for i in range(30)} - {None}
    assert seen <= train and len(seen) >= 3
    assert {render_real(0, i, 64, "gen", "holdout").meta["face"] for i in range(30)} <= held


def test_real_source_cli_writes_the_layout_with_occlusion(tmp_path: Path):
    out = tmp_path / "gen"
    proc = subprocess.run([sys.executable, "-m", "facemat.data.synth", "--source", "real-holdout", "--count", "6",
                           "--size", "128", "--split", "gen", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "meta.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["source"] == "real-holdout" for r in rows)
    assert all(0.0 <= r["occluded_fraction"] <= 1.0 for r in rows)
    assert json.loads((out / "config.json").read_text())["source"] == "real-holdout"
    for r in rows:
        alpha = cv2.imread(str(out / "alphas" / f"{r['id']}.png"), cv2.IMREAD_UNCHANGED)
        assert alpha.shape == (128, 128) and alpha.max() > 0
    bad = subprocess.run([sys.executable, "-m", "facemat.data.synth", "--source", "celeb", "--count", "1",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "--source" in bad.stderr and not (tmp_path / "x").exists()


# ------------------------------------------------------------------------ evaluation


def test_evaluate_reports_the_baseline_and_the_occlusion_split(tmp_path: Path):
    import torch

    from facemat.checkpoint import save_checkpoint
    from facemat.data.synth import SynthSettings, generate
    from facemat.models import build_model
    from training.evaluate import EvaluateSettings, evaluate, format_table

    data = generate(SynthSettings(out=tmp_path / "gen", count=6, size=128, split="gen", source="real-holdout"))
    torch.manual_seed(0)
    model = build_model("student", size=128)
    ckpt = tmp_path / "s.pt"
    save_checkpoint(ckpt, model)
    report = evaluate(EvaluateSettings(checkpoint=str(ckpt), data=str(data), batch=3, also=(str(data),)))
    rows = [json.loads(line) for line in (data / "meta.jsonl").read_text().splitlines()]
    n_occ = sum(r["occluded_fraction"] >= 0.01 for r in rows)
    splits = report["splits"]
    assert set(splits) == {"model", "mesh-oval"} and report["occlusion_split"]
    assert splits["model"]["all"]["images"] == 6
    assert splits["model"].get("occluded", {}).get("images", 0) == n_occ
    assert splits["mesh-oval"].get("unoccluded", {}).get("images", 0) == 6 - n_occ
    assert splits["model"]["all"]["sad"] == pytest.approx(report["bands"]["overall"]["sad"], rel=1e-6)
    assert len(report["also"]) == 1 and report["also"][0]["splits"]["mesh-oval"] == splits["mesh-oval"]
    text = format_table(report)
    assert text.count("mesh-oval") >= 2 and "IoU gain" in text
    # By occluder kind and by face: counts from meta.jsonl; the faces partition the images.
    groups = report["groups"]
    kinds = {k for r in rows for k in r["occluders"]}
    expected = {k: sum(k in r["occluders"] for r in rows) for k in kinds}
    expected.update({f"face {f}": sum(r["face"] == f for r in rows) for f in {r["face"] for r in rows}})
    if any(not r["occluders"] for r in rows):
        expected["no occluder"] = sum(not r["occluders"] for r in rows)
    for name in ("model", "mesh-oval"):
        assert {g: v["images"] for g, v in groups[name].items()} == expected
        faces = [v for g, v in groups[name].items() if g.startswith("face ")]
        mean_iou = sum(v["iou"] * v["images"] for v in faces) / 6
        assert mean_iou == pytest.approx(splits[name]["all"]["iou"], rel=1e-6)
    assert "by group" in text and all(g in text for g in expected)


def test_read_groups_needs_every_row_with_its_occluders(tmp_path: Path):
    from facemat.evaluation import read_groups

    assert read_groups(str(tmp_path), ["a"]) is None  # a user's folder: no meta.jsonl
    rows = [{"id": "a", "occluders": ["hand", "cup", "hand"], "face": "hopper"}, {"id": "b", "occluders": []},
            "torn {"]
    (tmp_path / "meta.jsonl").write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    assert read_groups(str(tmp_path), ["a", "b"]) == {"a": ["hand", "cup", "face hopper"], "b": ["no occluder"]}
    assert read_groups(str(tmp_path), ["a", "c"]) is None  # an id the meta does not cover
    (tmp_path / "meta.jsonl").write_text(json.dumps({"id": "a", "occluders": "hand"}))
    assert read_groups(str(tmp_path), ["a"]) is None  # not a list
