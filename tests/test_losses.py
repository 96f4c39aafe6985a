"""Losses: hand-worked values, the NLL optimum, the collapse guard, detachment."""

from __future__ import annotations

import math

import pytest
import torch

from facemat.losses import (
    gradient_l1,
    kd_objective,
    l1_loss,
    laplace_nll,
    laplacian_l1,
    laplacian_pyramid,
    matting_loss,
    uncertainty_weight,
    weighted_kd_l1,
)


def t(values) -> torch.Tensor:
    """A 1 x 1 x H x W tensor from nested lists."""
    return torch.tensor(values, dtype=torch.float64)[None, None]


def test_nll_hand_value():
    # |0.5 - 0| / 0.5 + log 0.5 = 1 - 0.693147 = 0.306853
    a, b, y = t([[0.5]]), t([[0.5]]), t([[0.0]])
    assert laplace_nll(a, b, y, beta=0.0).item() == pytest.approx(1 - math.log(2))
    # beta-NLL scales by b**0.5 = 0.707107: 0.306853 * 0.707107 = 0.216977
    assert laplace_nll(a, b, y, beta=0.5).item() == pytest.approx((1 - math.log(2)) * math.sqrt(0.5))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("err", [0.03, 0.2, 0.7])
def test_nll_is_minimised_at_b_equal_abs_error(beta, err):
    a, y = t([[0.9]]), t([[0.9 - err]])
    grid = torch.linspace(0.005, 1.5, 3000, dtype=torch.float64)
    # With beta > 0 the weight is detached, so minimise the per-b objective
    # the optimiser sees: d/db of the weighted loss at fixed weight.
    losses = torch.stack([laplace_nll(a, t([[float(b)]]), y, beta=0.0) for b in grid])
    best = grid[losses.argmin()].item()
    assert best == pytest.approx(err, abs=1e-3)
    b = t([[err]]).requires_grad_()
    laplace_nll(a, b, y, beta=beta).backward()
    assert b.grad.abs().item() < 1e-9  # stationary at b = |e| for every beta


def test_nll_guard_keeps_alpha_learning_when_b_is_large():
    y = t([[0.0]])
    grads = {}
    for beta in (0.0, 0.5):
        a = t([[0.6]]).requires_grad_()
        laplace_nll(a, t([[4.0]]), y, beta=beta).backward()
        grads[beta] = a.grad.item()
    # Plain NLL: d/da = 1/b = 0.25. beta=0.5: b**-0.5 = 0.5, twice the pull.
    assert grads[0.0] == pytest.approx(0.25)
    assert grads[0.5] == pytest.approx(0.5)


def test_nll_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        laplace_nll(t([[0.0]]), t([[1.0]]), t([[0.0]]), beta=2.0)


def test_uncertainty_weight_hand_value_and_detached():
    b = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]], requires_grad=True)  # 2 x 1 x 1 x 2
    w = uncertainty_weight(b, lam=1.0)
    # image 0: mean 2 -> 1 + [0.5, 1.5]; image 1: mean 2 -> 1 + [1, 1]
    assert torch.allclose(w, torch.tensor([[[[1.5, 2.5]]], [[[2.0, 2.0]]]]))
    assert not w.requires_grad
    assert torch.equal(uncertainty_weight(b, lam=0.0), torch.ones_like(b))
    with pytest.raises(ValueError, match="lambda"):
        uncertainty_weight(b, lam=-1.0)


def test_weighted_kd_l1_hand_value_and_teacher_detached():
    s = t([[0.2, 0.8]]).requires_grad_()
    teacher = t([[0.0, 1.0]]).requires_grad_()
    w = t([[1.0, 3.0]])
    # mean(1 * 0.2, 3 * 0.2) = 0.4
    loss = weighted_kd_l1(s, teacher, w)
    assert loss.item() == pytest.approx(0.4)
    assert weighted_kd_l1(s, teacher).item() == pytest.approx(0.2)
    loss.backward()
    assert teacher.grad is None
    assert s.grad is not None


def test_l1_and_gradient_l1_hand_values():
    p = t([[0.0, 1.0], [0.0, 1.0]])
    y = t([[0.0, 0.0], [0.0, 0.0]])
    assert l1_loss(p, y).item() == pytest.approx(0.5)
    # dx(p) = [1, 1] vs 0 -> mean 1; dy(p) = [0, 0] -> 0. Total 1.
    assert gradient_l1(p, y).item() == pytest.approx(1.0)
    # A constant offset has no gradient difference.
    assert gradient_l1(y + 0.3, y).item() == pytest.approx(0.0)


def test_laplacian_pyramid_reconstructs_and_l1_hand_value():
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    pyr = laplacian_pyramid(x, 3)
    assert [p.shape[-1] for p in pyr] == [32, 16, 8]
    # A constant image has zero band-pass levels; only the residual differs, so
    # an offset of 0.1 costs 2**(levels-1) * 0.1 / levels = 4 * 0.1 / 3.
    y = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    assert laplacian_l1(y + 0.1, y, levels=3).item() == pytest.approx(0.4 / 3)
    assert laplacian_l1(x, x).item() == 0.0


def test_matting_loss_is_zero_only_for_a_perfect_match():
    y = torch.rand(2, 1, 32, 32)
    assert matting_loss(y, y).item() == 0.0
    assert matting_loss(y.flip(-1), y).item() > 0.01


def test_kd_objective_is_weighted_kd_plus_gamma_matte_in_float32():
    g = torch.Generator().manual_seed(0)
    a_s, a_t, gt = (torch.rand(2, 1, 64, 64, generator=g) for _ in range(3))
    b = torch.rand(2, 1, 64, 64, generator=g) + 0.05
    loss, parts = kd_objective(a_s, a_t, gt, b, lam=2.0, gamma=0.25)
    kd = weighted_kd_l1(a_s, a_t, uncertainty_weight(b, 2.0))
    assert loss.item() == pytest.approx((kd + 0.25 * matting_loss(a_s, gt)).item(), rel=1e-6)
    assert parts == pytest.approx({"kd": kd.item(), "matte": matting_loss(a_s, gt).item()})
    # No scale, or lambda 0: uniform weights.
    uniform = weighted_kd_l1(a_s, a_t).item()
    assert kd_objective(a_s, a_t, gt, None)[1]["kd"] == pytest.approx(uniform)
    assert kd_objective(a_s, a_t, gt, b, lam=0.0)[1]["kd"] == pytest.approx(uniform)
    # A bf16 forward (autocast) is scored in float32.
    low, _ = kd_objective(a_s.bfloat16(), a_t.bfloat16(), gt, b.bfloat16())
    assert low.dtype == torch.float32


def test_camera_shake_moves_maps_with_the_frame():
    from facemat.losses import camera_shake

    torch.manual_seed(0)
    img = torch.rand(2, 3, 32, 32)
    still, grid = camera_shake(img, max_shift=0.0, max_roll_deg=0.0, noise=0.0)
    assert torch.allclose(still, img, atol=1e-5)
    # The returned grid is the camera's move: sampling the frame with it gives the shaken frame.
    smooth = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 40, 40), 3, 1, 1)[..., 4:36, 4:36]
    shaken, grid = camera_shake(smooth, max_shift=3.0, max_roll_deg=0.0, noise=0.0)
    moved = torch.nn.functional.grid_sample(smooth, grid, padding_mode="border", align_corners=False)
    assert torch.allclose(shaken, moved, atol=1e-6)
    assert not torch.allclose(shaken, smooth, atol=1e-3)


def test_temporal_consistency_is_small_for_a_steady_model_and_large_for_a_jittery_one():
    from facemat.losses import temporal_consistency

    torch.manual_seed(0)
    img = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 64, 64), 5, 1, 2)

    def steady(x):
        return x[:, :1]

    def jittery(x):
        return torch.rand_like(x[:, :1])

    calm = temporal_consistency(steady, img, steady(img))
    assert calm < 0.02
    assert temporal_consistency(jittery, img, jittery(img)) > 10 * calm
