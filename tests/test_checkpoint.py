"""Checkpoints: round trip, atomic save, and a clear error for every bad file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from facemat.checkpoint import FORMAT, load_checkpoint, read_checkpoint, save_checkpoint, unwrap
from facemat.errors import CheckpointError
from facemat.models import build_model


@pytest.fixture()
def student_ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "student.pt", build_model("student", size=64), meta={"steps": 3})


def test_roundtrip_same_outputs_and_meta(student_ckpt: Path):
    torch.manual_seed(0)
    original = build_model("student", size=64).eval()
    model, ckpt = load_checkpoint(student_ckpt, expect="student")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
    assert ckpt["format"] == FORMAT
    assert ckpt["model"]["arch"] == "student" and ckpt["model"]["config"]["size"] == 64
    assert ckpt["meta"]["steps"] == 3
    assert {"created", "code_version", "torch"} <= set(ckpt["meta"])
    assert not model.training


def test_save_is_atomic_and_leaves_no_temp(tmp_path: Path, monkeypatch):
    model = build_model("student", size=64)
    path = save_checkpoint(tmp_path / "a.pt", model)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_unwrap_strips_wrapper_prefixes(tmp_path: Path):
    inner = build_model("student", size=64)

    class Compiled(nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

    assert unwrap(Compiled(inner)) is inner
    path = save_checkpoint(tmp_path / "c.pt", Compiled(inner))
    keys = read_checkpoint(path)["state_dict"].keys()
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in keys)


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_zero_byte_file(tmp_path: Path):
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: file is empty"):
        load_checkpoint(p)


def test_not_a_checkpoint(tmp_path: Path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, I am a text file\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a checkpoint: not a PyTorch file \(it starts with b.hello, I.\)"):
        load_checkpoint(p)


def test_torch_file_that_is_not_ours(tmp_path: Path):
    p = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, p)
    with pytest.raises(CheckpointError, match=r"plain\.pt: not a FaceMat checkpoint"):
        load_checkpoint(p)


def test_truncated(student_ckpt: Path):
    data = student_ckpt.read_bytes()
    student_ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"student\.pt: not a readable checkpoint \(truncated or corrupt\?\)"):
        load_checkpoint(student_ckpt)


class _Payload:
    """Unpickling this runs ``os.system``: weights_only loading must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# The hostile file is pickled with protocol 5 on purpose; torch.load says so before refusing it.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol 5 in the checkpoint")
def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": {}, "state_dict": {}, "meta": _Payload(marker)}, p,
               pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load"):
        load_checkpoint(p)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it.
    torch.load(p, weights_only=False)
    assert marker.exists()


def test_weights_of_another_architecture(tmp_path: Path):
    ckpt = read_checkpoint(save_checkpoint(tmp_path / "t.pt", build_model("teacher", size=64)))
    ckpt["model"]["arch"] = "student"  # teacher weights claiming to be a student
    torch.save(ckpt, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"mixed\.pt: weights do not match architecture 'student'"):
        load_checkpoint(tmp_path / "mixed.pt")


def test_wrong_kind_for_the_command(student_ckpt: Path):
    with pytest.raises(CheckpointError, match=r"holds a student \('student'\), but a teacher checkpoint is needed"):
        load_checkpoint(student_ckpt, expect="teacher")


def test_unknown_architecture(tmp_path: Path, student_ckpt: Path):
    ckpt = read_checkpoint(student_ckpt)
    ckpt["model"]["arch"] = "resnet9000"
    torch.save(ckpt, tmp_path / "u.pt")
    with pytest.raises(CheckpointError, match="unknown architecture 'resnet9000'"):
        load_checkpoint(tmp_path / "u.pt")
