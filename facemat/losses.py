"""Losses for the teacher (Laplace NLL), the student (uncertainty-weighted KD) and matting.

All tensors are ``N x 1 x H x W`` float; alphas are in [0, 1]. Every function
returns a scalar tensor (the mean over batch and pixels unless stated).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def laplace_nll(
    alpha: torch.Tensor, b: torch.Tensor, target: torch.Tensor, beta: float = 0.5
) -> torch.Tensor:
    """Heteroscedastic Laplace negative log-likelihood, with a beta-NLL guard.

    Per pixel ``nll = |alpha - target| / b + log b`` (the constant ``log 2`` is
    dropped). For a fixed error ``e`` it is minimised at ``b = |e|``.

    Guard against uncertainty collapse: with the plain NLL the gradient that
    reaches ``alpha`` is ``sign(e) / b``, so a net can stop learning hard pixels
    by declaring them uncertain (``b`` grows, the pull on ``alpha`` vanishes).
    Following beta-NLL (Seitzer et al., ICLR 2022), each pixel's NLL is scaled
    by ``stop_grad(b) ** beta``: the gradient on ``alpha`` becomes
    ``sign(e) * b ** (beta - 1)`` (``beta = 1`` makes it plain L1), while the
    optimum of ``b`` stays at ``|e|`` because the weight is constant in ``b``.
    ``beta = 0`` is the plain NLL.

    Args:
        alpha: predicted alpha, ``N x 1 x H x W`` in [0, 1].
        b: predicted Laplace scale, ``N x 1 x H x W``, > 0.
        target: ground-truth alpha, ``N x 1 x H x W`` in [0, 1].
        beta: guard strength in [0, 1].

    Returns:
        Scalar mean weighted NLL.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    nll = (alpha - target).abs() / b + torch.log(b)
    if beta > 0:
        nll = nll * b.detach() ** beta
    return nll.mean()


def uncertainty_weight(b: torch.Tensor, lam: float) -> torch.Tensor:
    """Spatial KD weight ``w = 1 + lam * b / mean(b)`` from the teacher's scale.

    ``b`` is detached (the teacher is not trained by the student's loss) and
    ``mean(b)`` is taken per image, so the weight map has mean ``1 + lam`` in
    every image whatever the teacher's overall confidence on it.

    Args:
        b: teacher Laplace scale, ``N x 1 x H x W``, > 0.
        lam: weight strength, >= 0; ``0`` gives uniform weights.

    Returns:
        ``N x 1 x H x W`` weights >= 1, no gradient.
    """
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    b = b.detach()
    return 1.0 + lam * b / b.mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)


def weighted_kd_l1(student: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Knowledge-distillation L1, ``mean(w * |a_S - a_T|)``, teacher detached.

    Args:
        student: student alpha ``N x 1 x H x W``.
        teacher: teacher alpha ``N x 1 x H x W`` (detached here).
        weight: ``N x 1 x H x W`` weights, or None for uniform (w = 1).
    """
    err = (student - teacher.detach()).abs()
    return (err * weight).mean() if weight is not None else err.mean()


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


def gradient_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between finite-difference gradients of ``pred`` and ``target``.

    ``mean|dx(p) - dx(t)| + mean|dy(p) - dy(t)|`` with forward differences
    (``dx`` is ``N x 1 x H x (W-1)``, ``dy`` is ``N x 1 x (H-1) x W``).
    """
    dxp, dxt = pred[..., :, 1:] - pred[..., :, :-1], target[..., :, 1:] - target[..., :, :-1]
    dyp, dyt = pred[..., 1:, :] - pred[..., :-1, :], target[..., 1:, :] - target[..., :-1, :]
    return (dxp - dxt).abs().mean() + (dyp - dyt).abs().mean()


def _gauss_kernel(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype, device=device) / 16.0
    return (k1[:, None] * k1[None, :])[None, None]  # 1 x 1 x 5 x 5


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel.expand(c, 1, 5, 5), groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Laplacian pyramid: ``levels - 1`` band-pass images then the low-pass residual.

    Level ``i`` is ``N x C x H/2^i x W/2^i``. H and W must be divisible by
    ``2 ** (levels - 1)``.
    """
    kernel = _gauss_kernel(x.dtype, x.device)
    pyramid = []
    current = x
    for _ in range(levels - 1):
        down = _blur(current, kernel)[..., ::2, ::2]
        up = F.interpolate(down, size=current.shape[-2:], mode="bilinear", align_corners=False)
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def laplacian_l1(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Laplacian-pyramid L1: ``sum_i 2^i * mean|L_i(p) - L_i(t)| / levels``.

    The ``2^i`` weight compensates for coarse levels having fewer pixels, as in
    the matting literature (e.g. RVM, MODNet's successors).
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    loss = pred.new_zeros(())
    for i, (lp, lt) in enumerate(zip(laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels))):
        loss = loss + (2**i) * (lp - lt).abs().mean()
    return loss / levels


def matting_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The ground-truth matting terms: L1 + Laplacian-pyramid L1 + gradient L1."""
    return l1_loss(pred, target) + laplacian_l1(pred, target) + gradient_l1(pred, target)


def kd_objective(
    student: torch.Tensor,
    target: torch.Tensor,
    gt: torch.Tensor,
    b: torch.Tensor | None = None,
    lam: float = 1.0,
    gamma: float = 0.5,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's objective, in distillation and in QAT alike.

    ``L = mean(w * |a_S - a_KD|) + gamma * matting_loss(a_S, a)`` with
    ``w = 1 + lam * b / mean(b)`` (:func:`uncertainty_weight`), or ``w = 1``
    when ``b`` is None or ``lam`` is 0. Every term is computed in float32, so a
    bf16 forward under autocast gives the same loss as a float32 one would.

    Args:
        student: the alpha being trained, ``N x 1 x H x W`` in [0, 1].
        target: the distillation target ``a_KD`` (teacher's or FP32 student's
            alpha), ``N x 1 x H x W``; detached here.
        gt: ground-truth alpha ``N x 1 x H x W`` in [0, 1].
        b: the teacher's Laplace scale ``N x 1 x H x W`` (> 0), or None.
        lam: strength of the uncertainty weight, >= 0.
        gamma: weight of the ground-truth matting terms, >= 0.

    Returns:
        ``(scalar loss, {"kd": float, "matte": float})`` for the log.
    """
    a = student.float()
    matte = matting_loss(a, gt)
    w = uncertainty_weight(b.float(), lam) if b is not None and lam > 0 else None
    kd = weighted_kd_l1(a, target.float(), w)
    return kd + gamma * matte, {"kd": kd.item(), "matte": matte.item()}


def camera_shake(
    image: torch.Tensor, max_shift: float = 1.5, max_roll_deg: float = 1.0, noise: float = 2.0 / 255.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next frame of a phone held still: each image moved by a random sub-pixel shift and roll, plus noise.

    Args:
        image: ``N x 3 x H x W`` in [0, 1].
        max_shift: largest shift in pixels, along each axis.
        max_roll_deg: largest roll in degrees (about the image centre).
        noise: standard deviation of the added Gaussian sensor noise.

    Returns:
        ``(shaken image, grid)``: the grid (``N x H x W x 2``, for ``F.grid_sample``)
        moves any map of the original frame onto the shaken one.
    """
    n, _, h, w = image.shape
    dev = image.device
    roll = (torch.rand(n, device=dev) * 2 - 1) * (max_roll_deg * torch.pi / 180)
    shift = (torch.rand(n, 2, device=dev) * 2 - 1) * max_shift * 2 / torch.tensor([w, h], device=dev)
    cos, sin = torch.cos(roll), torch.sin(roll)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    shaken = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (shaken + noise * torch.randn_like(shaken)).clamp(0.0, 1.0), grid


def temporal_consistency(model, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """L1 between the alpha of a camera-shaken frame and the first frame's alpha moved the same way.

    A still face filmed by a shaking camera should give the same matte, moved
    with the camera: the term penalises alpha that reacts to sub-pixel shifts and
    sensor noise (flicker). Gradients reach both frames' predictions.

    Args:
        model: the network being trained (``image -> alpha``).
        image: the batch, ``N x 3 x H x W``.
        alpha: ``model(image)``, ``N x 1 x H x W``.
    """
    shaken, grid = camera_shake(image)
    moved = F.grid_sample(alpha.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (model(shaken).float() - moved).abs().mean()
