"""facemat.safety and the fault handling of issue 18 that the subprocess catalogue cannot show cheaply."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from facemat.errors import CheckpointError, DataError
from facemat.io import read_jsonl, write_json_atomic
from facemat.safety import check_image_pixels, check_pt2_archive
from tests.hostile import Payload, png_declaring, rewrite_pt2


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(scope="module")
def pt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt2") / "model.pt2"
    torch.export.save(torch.export.export(_Tiny(), (torch.rand(1, 3, 8, 8),)), str(path))
    return path


def test_pt2_written_by_torch_export_save_passes_and_loads(pt2):
    check_pt2_archive(pt2)
    assert torch.export.load(str(pt2)).module()(torch.rand(1, 3, 8, 8)).shape == (1, 2, 6, 6)


def test_pt2_payload_in_sample_inputs_refused_before_torch_runs_it(pt2, tmp_path):
    marker = tmp_path / "PWNED"
    buf = __import__("io").BytesIO()
    torch.save(Payload(str(marker)), buf)
    bad = rewrite_pt2(pt2, tmp_path / "bad.pt2", lambda items: items.update({"data/sample_inputs/model.pt": buf.getvalue()}))
    with pytest.raises(CheckpointError, match="sample inputs are not plain tensors"):
        check_pt2_archive(bad)
    assert not marker.exists()


def test_metrics_log_survives_a_torn_last_line(tmp_path):
    from facemat.io import MetricsLog

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')
    MetricsLog(log, enabled=True, keep_until=2)({"step": 3, "loss": 0.3})
    assert [r["step"] for r in read_jsonl(log)] == [1, 2, 3]


def test_damaged_middle_line_of_a_log_is_an_error(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(DataError, match="line 2"):
        read_jsonl(log)


def test_every_json_written_is_valid_json(tmp_path):
    write_json_atomic(tmp_path / "r.json", {"sad": math.nan, "rows": [math.inf, 1.5, -math.inf]})
    text = (tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} token")) == {
        "rows": [None, 1.5, None], "sad": None}


def test_parity_never_passes_on_nan():
    from targets.parity import check, compare

    ref = np.zeros((1, 4, 4), np.float32)
    out = np.full((1, 4, 4), np.nan, np.float32)
    from targets.common import ExportError

    with pytest.raises(ExportError, match="parity failed"):
        check("fp32", compare(out, ref), None, "onnx-fp32")


def test_pixel_limit_read_from_the_header_only(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(30000, 30000))  # 900 MP declared in a few hundred bytes
    with pytest.raises(DataError, match="30000 x 30000"):
        check_image_pixels(bomb)
    check_image_pixels(tmp_path / "bomb.png", png_declaring(640, 480))  # under the limit: no error
