"""Models started from MediaPipe's selfie segmenter: pretrained start, checkpoints, config limits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facemat.errors import CheckpointError, ConfigError
from facemat.models import build_model, model_kind


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_model("teacher-selfie").eval()


def _portrait(size: int = 256) -> torch.Tensor:
    from facemat.pretrained.fetch import face_photo

    rgb = cv2.imread(str(face_photo("grace_hopper.jpg")))[..., ::-1]
    rgb = cv2.resize(np.ascontiguousarray(rgb[44:556, 0:512]), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0


def test_teacher_starts_as_mediapipes_person_mask(teacher):
    assert model_kind("teacher-selfie") == "teacher" and model_kind("student-selfie") == "student"
    x = _portrait()
    with torch.no_grad():
        alpha, b = teacher(x)
        logit = teacher.backbone(x)[1]
    # The correction head starts at zero: alpha is the segmenter's own person probability.
    torch.testing.assert_close(alpha, torch.sigmoid(logit), atol=1e-6, rtol=0)
    assert (b > 0).all()
    a = alpha[0, 0].numpy()
    assert a[100:160, 100:160].mean() > 0.8  # her face is a person
    assert a[:30, :30].mean() < 0.3  # the flag behind her is not
    src = teacher.config.source
    assert src["package"] == "mediapipe==0.10.21" and src["licence"] == "Apache-2.0" and len(src["sha256"]) == 64


def test_selfie_checkpoint_loads_without_the_tflite_file(tmp_path: Path, teacher, monkeypatch):
    from facemat.checkpoint import load_checkpoint, save_checkpoint
    from facemat.pretrained import fetch

    with torch.no_grad():
        teacher.up.bias.add_(0.3)  # not MediaPipe's weights any more
    path = tmp_path / "t.pt"
    save_checkpoint(path, teacher)

    def no_network(*args, **kwargs):
        raise AssertionError("a checkpoint must not need the cached .tflite")

    monkeypatch.setattr(fetch, "mediapipe_model", no_network)
    loaded, ckpt = load_checkpoint(path, expect="teacher")
    x = _portrait(128)
    with torch.no_grad():
        for got, want in zip(loaded(x), teacher(x)):
            torch.testing.assert_close(got, want)
    assert ckpt["model"]["arch"] == "teacher-selfie"


def test_student_selfie_runs_at_half_resolution():
    student = build_model("student-selfie").eval()
    assert student.input_multiple == 64 and student.input_spec().shape == (1, 3, 256, 256)
    with torch.no_grad():
        alpha = student(_portrait())
    assert alpha.shape == (1, 1, 256, 256) and 0 <= float(alpha.min()) and float(alpha.max()) <= 1
    assert alpha[0, 0, 100:160, 100:160].mean() > 0.7


def test_selfie_config_limits():
    from facemat.models.selfie import MAX_OPS, SelfieConfig

    with pytest.raises(ConfigError, match="multiple of 64"):
        SelfieConfig(size=96, low_res=2)
    with pytest.raises(ConfigError, match="hidden"):
        SelfieConfig(hidden=100000)
    with pytest.raises(ConfigError, match=f"between 1 and {MAX_OPS} ops"):
        SelfieConfig(graph={"ops": [{}] * (MAX_OPS + 1)})
    with pytest.raises(ConfigError, match="unknown fields"):
        build_model("teacher-selfie", {"size": 256, "widths": [1]})
