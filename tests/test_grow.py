"""Growing a trained net into a wider or deeper one (facemat.models.grow, --init across variants)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facemat.checkpoint import save_checkpoint
from facemat.errors import ConfigError
from facemat.models import build_model
from facemat.models.grow import grow

WIDE = dict(stem=12, widths=(24, 32, 48, 80), depths=(1, 2, 3, 3), expand=4, decoder=(48, 32, 16, 12))


def _trained_like(name: str, **cfg) -> torch.nn.Module:
    """A net whose BatchNorms carry non-trivial statistics, as after training."""
    torch.manual_seed(0)
    model = build_model(name, **cfg)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("name,big", [("student", WIDE), ("student-full", dict(refine=16, decoder=(48, 32, 16, 12))),
                                      ("teacher", dict(widths=(32, 64, 96, 160), depths=(2, 3, 4, 3)))])
def test_grown_net_computes_the_small_nets_outputs(name: str, big: dict):
    small = _trained_like(name)
    wide = grow(small, build_model(name, **big)).eval()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    a, b = small(x), wide(x)
    for s, w in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.allclose(s, w, atol=1e-5), (s - w).abs().max()
    # ...and it is not the same net: it has more weights, and the new ones are not all zero.
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in small.parameters())


def test_new_channels_get_gradients_from_the_first_step():
    wide = grow(_trained_like("student"), build_model("student", **WIDE)).train()
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    wide(x).mean().backward()
    fuse = wide.decoder.ups[0].fuse[0].weight  # its old outputs' weights from new inputs start at zero
    old_out = build_model("student").decoder.ups[0].fuse[0].weight.shape[0]
    assert fuse.grad[:old_out, 64:96].abs().sum() > 0  # new 1/32 channels (64..80) reaching old outputs
    new_block = wide.encoder.stages[3][2].block[2][1]  # an added block: its last BN scale starts at zero
    assert torch.all(new_block.weight == 0) and new_block.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("small,big,message", [
    ("student", dict(widths=(8, 24, 40, 64)), "widths .* larger than the target"),
    ("student", dict(expand=2), "expand 3 is larger"),
    ("student-full", dict(head="upsample", low_res=2), "head differs"),
])
def test_grow_refuses_a_smaller_or_different_target(small: str, big: dict, message: str):
    base = build_model(small)
    target = build_model(small, **big)
    with pytest.raises(ConfigError, match=message):
        grow(base, target)


def test_grow_refuses_another_family():
    with pytest.raises(ConfigError, match="cannot grow a FaceMatStudent into a FaceMatTeacher"):
        grow(build_model("student"), build_model("teacher"))


def test_distill_init_grows_the_student_into_student_wide(tmp_path: Path):
    from training.common import initial_model
    from training.distill import DistillSettings

    small = _trained_like("student")
    save_checkpoint(tmp_path / "student.pt", small)
    s = DistillSettings(data="synth", out=str(tmp_path / "run"), kd="none", arch="student-wide",
                        init=str(tmp_path / "student.pt"))
    extra: dict = {}
    model = initial_model(s, "student", extra).eval()
    assert model.arch == "student-wide" and extra["init_grown_from"] == "student" and len(extra["init_sha256"]) == 64
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(model(x), small(x), atol=1e-5)
    # A student cannot start a variant of another family.
    bad = DistillSettings(data="synth", out=str(tmp_path / "run2"), kd="none", arch="student-selfie",
                          init=str(tmp_path / "student.pt"))
    with pytest.raises(ConfigError, match="does not grow into"):
        initial_model(bad, "student", {})
