"""The model family: contracts, registry, budget, exportability."""

from __future__ import annotations

import json
import operator
import subprocess
import sys

import pytest
import torch

from facemat.errors import ConfigError
from facemat.models import MatteNetConfig, build_model, check_input, list_models, model_kind
from facemat.models.cost import count_macs


def test_registry_has_student_and_teacher():
    assert {"student", "teacher"} <= set(list_models())
    assert model_kind("student") == "student"
    assert model_kind("teacher") == "teacher"


@pytest.mark.parametrize("name, multiple", [("student", 64), ("student-guided", 64), ("student-full", 32)])
def test_student_returns_alpha_in_unit_range(name: str, multiple: int):
    torch.manual_seed(0)
    model = build_model(name).eval()
    assert model.input_multiple == multiple
    x = torch.rand(2, 3, multiple, 3 * multiple)  # non-square: H and W are handled apart
    with torch.no_grad():
        alpha = model(x)
    assert alpha.shape == (2, 1, multiple, 3 * multiple)
    assert alpha.min() >= 0 and alpha.max() <= 1


def test_low_res_heads_need_their_size_multiple():
    with pytest.raises(ConfigError, match="size must be a multiple of 64 with low_res 2, got 96"):
        MatteNetConfig(head="upsample", low_res=2, size=96)
    with pytest.raises(ConfigError, match="low_res 2 needs head='guided' or 'upsample'"):
        MatteNetConfig(low_res=2)
    with pytest.raises(ConfigError, match="head must be 'refine', 'guided' or 'upsample'"):
        MatteNetConfig(head="dgf")


def test_teacher_returns_alpha_and_positive_scale():
    model = build_model("teacher").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        alpha, b = model(x)
    assert alpha.shape == b.shape == (1, 1, 64, 64)
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert b.min() > 0


def test_spec_declared_in_one_place():
    model = build_model("student", size=128)
    spec = model.input_spec()
    assert spec.shape == (1, 3, 128, 128) and spec.layout == "NCHW" and spec.color == "RGB"
    assert spec.value_range == (0.0, 1.0)
    assert model.example_input().shape == spec.shape
    assert [o.name for o in model.output_spec()] == ["alpha"]
    assert [o.name for o in build_model("teacher").output_spec()] == ["alpha", "b"]


def test_normalisation_happens_inside_forward():
    # A constant-colour image is handled by the model itself: the first conv sees
    # (x - 0.5) / 0.25, so a mid-grey input reaches it as zeros.
    model = build_model("student").eval()
    seen = {}
    model.encoder.stem.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    with torch.no_grad():
        model(torch.full((1, 3, 64, 64), 0.5))
    assert torch.allclose(seen["x"], torch.zeros_like(seen["x"]))


def test_student_budget_and_teacher_larger():
    student = build_model("student").eval()
    teacher = build_model("teacher").eval()
    x = torch.rand(1, 3, 256, 256)
    s_macs = count_macs(student, x)
    t_macs = count_macs(teacher, x)
    assert s_macs <= 200e6
    assert t_macs >= 5 * s_macs


def test_mac_counter_counts_a_known_conv():
    # 1x1 conv 3 -> 4 on 8x8: 8*8*3*4 = 768 MACs.
    conv = torch.nn.Conv2d(3, 4, 1, bias=False)
    assert count_macs(conv, torch.rand(1, 3, 8, 8)) == 768


ALLOWED_OPS = {
    "aten.convolution.default", "aten.conv2d.default", "aten._native_batch_norm_legit_no_training.default",
    "aten.batch_norm.default", "aten.relu.default", "aten.add.Tensor", "aten.cat.default",
    "aten.upsample_bilinear2d.vec", "aten.upsample_bilinear2d.default", "aten.sigmoid.default",
    "aten.sub.Tensor", "aten.div.Tensor", "aten.slice.Tensor", "aten.mul.Tensor", "aten.softplus.default",
    "aten.avg_pool2d.default",
}


@pytest.mark.parametrize("name", ["student", "student-guided", "student-full"])
def test_student_exports_strict_with_mobile_friendly_ops(name: str):
    model = build_model(name).eval()
    ep = torch.export.export(model, (model.example_input(),), strict=True)
    nodes = ep.run_decompositions({}).graph.nodes
    ops = {str(n.target) for n in nodes if n.op == "call_function" and n.target is not operator.getitem}
    assert ops <= ALLOWED_OPS, f"ops outside the mobile-friendly set: {sorted(ops - ALLOWED_OPS)}"
    assert not any("hardswish" in o or "instance_norm" in o for o in ops)
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.allclose(ep.module()(x), model(x), atol=1e-6)


def test_no_align_corners_true():
    model = build_model("student").eval()
    ep = torch.export.export(model, (model.example_input(),), strict=True)
    for node in ep.graph.nodes:
        if "upsample_bilinear2d" in str(node.target):
            assert node.args[2] is False


def test_config_validation_names_the_problem():
    with pytest.raises(ConfigError, match="multiple of 32"):
        MatteNetConfig(size=100)
    with pytest.raises(ConfigError, match="4 entries"):
        MatteNetConfig(widths=(8, 16))
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model("nope")
    with pytest.raises(ConfigError, match="unknown config fields"):
        build_model("student", width=3)


def test_config_roundtrips_through_dict():
    cfg = build_model("teacher").config
    assert MatteNetConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_check_input():
    check_input(torch.zeros(1, 3, 64, 32))
    with pytest.raises(ConfigError, match="multiples of 32"):
        check_input(torch.zeros(1, 3, 60, 64))
    with pytest.raises(ConfigError, match="N x 3 x H x W"):
        check_input(torch.zeros(1, 4, 64, 64))


def test_cost_cli_json():
    out = subprocess.run(
        [sys.executable, "-m", "facemat.models", "--json", "--size", "128", "--runs", "2"],
        capture_output=True, text=True, check=True,
    )
    data = json.loads(out.stdout)
    assert set(data) >= {"student", "teacher"}
    assert data["student"]["params"] == sum(p.numel() for p in build_model("student").parameters())
    assert 0 < data["student"]["macs"] < data["teacher"]["macs"]
    assert data["student"]["latency_ms_median"] > 0


def test_cost_cli_rejects_bad_size():
    out = subprocess.run([sys.executable, "-m", "facemat.models", "--size", "100"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: --size must be a positive multiple of 32, got 100"
