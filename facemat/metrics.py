"""Alpha-matting metrics: SAD, MSE, Grad, Conn, IoU, dtSSD, flicker, and evaluation bands.

Pure NumPy (+ ``scipy.ndimage``); no torch, so the bench harness and reports can
use it without loading a framework. Definitions follow the Deep Image Matting
(DIM, Xu et al. 2017) evaluation code, which implements Rhemann et al.'s
alphamatting.com metrics and is what MODNet, RVM and ViTMatte report.

Conventions, in one place:

- Inputs are float alpha mattes, HxW, nominally in [0, 1]. Nothing is clipped.
  uint8 (0..255) and other non-float arrays are rejected: divide by 255 first.
- ``mask`` (bool HxW, optional) selects the pixels that are *counted*. Filters
  and connected components are always computed on the whole image, as DIM does
  with its trimap: the mask only restricts the final sum (DIM's
  ``trimap == 128``). ``mask=None`` counts every pixel.
- SAD, Grad and Conn are divided by 1000 (the matting-literature convention);
  MSE and dtSSD are returned raw (papers often print MSE x 1e3, dtSSD x 1e2);
  flicker is multiplied by 1000 (as the figures it is compared with were given).
- Foreground tests use ``>=`` everywhere (IoU: ``alpha >= threshold``; Conn:
  ``alpha >= t``), matching DIM's ``pred >= thresh``.
- Conn uses 4-connectivity, as DIM's ``bwconncomp(..., 4)``.
- Grad uses DIM's ``gaussgradient``: a (2h+1)x(2h+1) kernel
  ``G(row) * dG/dx(col)`` normalised to unit L2 norm, true convolution with
  replicated borders; h = 4 at sigma = 1.4.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

__all__ = [
    "boundary_band",
    "conn_error",
    "dtssd",
    "flicker",
    "grad_error",
    "iou",
    "matting_metrics",
    "mse",
    "reference_metrics",
    "sad",
    "uncertainty_band",
]


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #


def _as_float(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """Return ``x`` as a float64 array after checking dtype and rank."""
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        raise ValueError(
            f"{name} has dtype uint8 (0..255); metrics take float alpha in [0, 1]: "
            f"pass {name}.astype(np.float32) / 255"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{name} has dtype {arr.dtype}; metrics take float alpha in [0, 1]: "
            f"convert it to float32 (dividing by the maximum code, e.g. 255, if it is integer)"
        )
    if arr.ndim != ndim:
        want = "HxW" if ndim == 2 else "TxHxW"
        raise ValueError(f"{name} must be {ndim}-D ({want}); got shape {arr.shape}")
    # float64 so sums over large images do not lose precision in float16/32.
    return arr.astype(np.float64, copy=False)


def _check_pair(
    pred: np.ndarray, gt: np.ndarray, names: tuple[str, str] = ("pred", "gt"), ndim: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two same-shape float arrays of rank ``ndim``."""
    a, b = np.asarray(pred), np.asarray(gt)
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; "
            f"got {names[0]} {a.shape} and {names[1]} {b.shape}"
        )
    return _as_float(a, names[0], ndim), _as_float(b, names[1], ndim)


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """Return a bool mask of ``shape`` (all True when ``mask`` is None)."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask)
    # A 0/1 integer array used as an index would gather rows 0 and 1 instead of
    # selecting pixels, silently giving wrong numbers: insist on bool.
    if m.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array; got dtype {m.dtype} (use mask.astype(bool))")
    if m.shape != shape:
        raise ValueError(f"mask must have the image shape; got mask {m.shape} and image {shape}")
    return m


# --------------------------------------------------------------------------- #
# Pixel-wise errors
# --------------------------------------------------------------------------- #


def sad(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Sum of absolute differences, divided by 1000.

    Args:
        pred: Predicted alpha, float HxW, values nominally in [0, 1].
        gt: Ground-truth alpha, float HxW, same shape.
        mask: Optional bool HxW; only True pixels are counted.

    Returns:
        ``sum(|pred - gt|[mask]) / 1000`` (>= 0). Empty mask gives 0.0.
    """
    p, g = _check_pair(pred, gt)
    m = _check_mask(mask, p.shape)
    return float(np.abs(p - g)[m].sum() / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared error over the counted pixels (raw, not scaled by 1e3).

    Args:
        pred: Predicted alpha, float HxW, values nominally in [0, 1].
        gt: Ground-truth alpha, float HxW, same shape.
        mask: Optional bool HxW; only True pixels are counted.

    Returns:
        ``mean((pred - gt)[mask] ** 2)`` in [0, 1] for inputs in [0, 1];
        0.0 when the mask selects no pixel.
    """
    p, g = _check_pair(pred, gt)
    m = _check_mask(mask, p.shape)
    n = int(m.sum())
    if n == 0:
        return 0.0
    return float(((p - g)[m] ** 2).sum() / n)


# --------------------------------------------------------------------------- #
# Gradient error (Rhemann et al.; DIM compute_gradient_loss.m)
# --------------------------------------------------------------------------- #


@functools.lru_cache(maxsize=8)
def _gauss_deriv_kernel(sigma: float) -> np.ndarray:
    """DIM's ``gaussgradient`` x-kernel: hx[i, j] = g(i - h) * g'(j - h), unit L2 norm.

    h = ceil(sigma * sqrt(-2 * ln(sqrt(2 pi) * sigma * 1e-2))) is where the
    normalised Gaussian density g falls to the original's epsilon = 1e-2; for
    sigma = 1.4 this is h = 4, a 9x9 kernel. The kernel is read-only because
    it is cached.
    """
    eps = 1e-2
    half = int(math.ceil(sigma * math.sqrt(-2.0 * math.log(math.sqrt(2.0 * math.pi) * sigma * eps))))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(u**2) / (2.0 * sigma**2)) / (sigma * math.sqrt(2.0 * math.pi))
    dg = -u * g / sigma**2
    hx = np.outer(g, dg)  # rows: Gaussian smoothing, columns: derivative -> d/dx
    hx /= math.sqrt(float((hx**2).sum()))
    hx.setflags(write=False)
    return hx


def _gauss_grad_magnitude(alpha: np.ndarray, sigma: float) -> np.ndarray:
    """|grad alpha| with DIM's Gaussian-derivative filters, HxW float64."""
    hx = _gauss_deriv_kernel(float(sigma))
    # mode="nearest" is MATLAB imfilter(..., 'replicate', 'conv'); convolve
    # (not correlate) flips the kernel like 'conv'.
    gx = ndimage.convolve(alpha, hx, mode="nearest")
    gy = ndimage.convolve(alpha, hx.T, mode="nearest")
    return np.sqrt(gx**2 + gy**2)


def grad_error(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, sigma: float = 1.4
) -> float:
    """Gradient error (Rhemann et al.), as in the DIM evaluation code, divided by 1000.

    Both mattes are filtered over the whole image with DIM's ``gaussgradient``:
    the x-kernel is ``hx[i, j] = G(i - h) * G'(j - h)`` for i, j in 0..2h, with
    ``G`` the normalised 1-D Gaussian of std ``sigma``, ``G'(u) = -u G(u) / sigma^2``
    and ``h = ceil(sigma * sqrt(-2 ln(sqrt(2 pi) sigma * 0.01)))`` (h = 4 for
    sigma = 1.4); ``hx`` is then scaled to unit L2 norm and ``hy = hx.T``. The
    filters are applied by true convolution with replicated borders. Then
    ``sum((|grad pred| - |grad gt|)^2 over mask) / 1000``.

    Unlike DIM's MATLAB code, no ``mat2gray`` min-max stretch is applied: the
    inputs are used as given (the Python ports that divide by 255 do the same).

    Args:
        pred: Predicted alpha, float HxW, values nominally in [0, 1].
        gt: Ground-truth alpha, float HxW, same shape.
        mask: Optional bool HxW; only True pixels are summed.
        sigma: Gaussian std in pixels (> 0); 1.4 in the literature.

    Returns:
        Gradient error / 1000 (>= 0).
    """
    p, g = _check_pair(pred, gt)
    m = _check_mask(mask, p.shape)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    diff = _gauss_grad_magnitude(p, sigma) - _gauss_grad_magnitude(g, sigma)
    return float((diff**2)[m].sum() / 1000.0)


# --------------------------------------------------------------------------- #
# Connectivity error (Rhemann et al.; DIM compute_connectivity_error.m)
# --------------------------------------------------------------------------- #

# 4-connectivity, as DIM's bwconncomp(..., 4).
_CONN4 = ndimage.generate_binary_structure(2, 1)


def _largest_component(binary: np.ndarray) -> np.ndarray:
    """Bool map of the largest 4-connected component of ``binary`` (all False if none).

    Ties in size go to the component whose first pixel comes first in
    row-major order, as MATLAB's ``max`` over ``bwconncomp`` sizes and the
    Python ports' ``argmax(bincount(label))`` do.
    """
    labels, n = ndimage.label(binary, structure=_CONN4)
    if n == 0:
        return np.zeros_like(binary, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # background
    return labels == int(np.argmax(sizes))


def conn_error(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, step: float = 0.1
) -> float:
    """Connectivity error (Rhemann et al.), as in the DIM evaluation code, divided by 1000.

    For thresholds ``t_k = k * step``, k = 0..K with K = floor(1 / step), each
    ``t_k`` rounded to 10 decimals so that 0.3 is 0.3 and not 0.30000000000000004
    (a deliberate deviation from the ports' float ``arange``; it only matters for
    alphas lying exactly on a threshold): for k >= 1, omega_k is the largest
    4-connected component of ``(pred >= t_k) & (gt >= t_k)``, computed on the
    whole image. ``l(i) = t_{k-1}`` for the first k at which pixel i is not in
    omega_k (the last level before it drops out), and ``l(i) = 1`` if it never
    drops out. Then ``d = alpha - l``, ``phi = 1 - d * (d >= 0.15)``, and the
    error is ``sum(|phi_pred - phi_gt| over mask) / 1000``.

    Args:
        pred: Predicted alpha, float HxW, values nominally in [0, 1].
        gt: Ground-truth alpha, float HxW, same shape.
        mask: Optional bool HxW; only True pixels are summed.
        step: Threshold step in (0, 1]; 0.1 in the literature.

    Returns:
        Connectivity error / 1000 (>= 0).
    """
    p, g = _check_pair(pred, gt)
    m = _check_mask(mask, p.shape)
    if not 0.0 < step <= 1.0:
        raise ValueError(f"step must be in (0, 1]; got {step}")
    n_steps = int(math.floor(1.0 / step + 1e-9))
    thresholds = [round(k * step, 10) for k in range(n_steps + 1)]

    l_map = np.full(p.shape, -1.0)
    for k in range(1, len(thresholds)):
        omega = _largest_component((p >= thresholds[k]) & (g >= thresholds[k]))
        dropped = (l_map == -1.0) & ~omega
        l_map[dropped] = thresholds[k - 1]
    l_map[l_map == -1.0] = 1.0

    d_pred = p - l_map
    d_gt = g - l_map
    # Only pixels well above their connectivity level (d >= 0.15) are penalised.
    phi_pred = 1.0 - d_pred * (d_pred >= 0.15)
    phi_gt = 1.0 - d_gt * (d_gt >= 0.15)
    return float(np.abs(phi_pred - phi_gt)[m].sum() / 1000.0)


# --------------------------------------------------------------------------- #
# IoU
# --------------------------------------------------------------------------- #


def iou(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, threshold: float = 0.5
) -> float:
    """Intersection over union of the thresholded mattes.

    Foreground is ``alpha >= threshold`` (so 0.5 counts as face at the default).

    Args:
        pred: Predicted alpha, float HxW, values nominally in [0, 1].
        gt: Ground-truth alpha, float HxW, same shape.
        mask: Optional bool HxW; only True pixels are counted.
        threshold: Foreground threshold.

    Returns:
        IoU in [0, 1]; 1.0 when both foregrounds are empty in the counted region
        (nothing to find, nothing found).
    """
    p, g = _check_pair(pred, gt)
    m = _check_mask(mask, p.shape)
    pb = (p >= threshold) & m
    gb = (g >= threshold) & m
    union = int((pb | gb).sum())
    if union == 0:
        return 1.0
    return float((pb & gb).sum() / union)


# --------------------------------------------------------------------------- #
# Video temporal stability
# --------------------------------------------------------------------------- #


def dtssd(pred_seq: np.ndarray, gt_seq: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Temporal-gradient SSD (dtSSD) as defined in RVM's evaluation code, unscaled.

    For t = 1..T-1::

        e_t = sqrt( sum_px ((pred_t - pred_{t-1}) - (gt_t - gt_{t-1}))^2 / N_t )

    with N_t the number of counted pixels (H*W without a mask), and the result
    is ``mean_t e_t``. RVM and MODNet print this value x 1e2; this function
    returns it raw (no scaling).

    Args:
        pred_seq: Predicted alphas, float TxHxW, values nominally in [0, 1].
        gt_seq: Ground-truth alphas, float TxHxW, same shape.
        mask: Optional bool, HxW (same pixels for every frame pair) or TxHxW
            (pair (t-1, t) counts the pixels of ``mask[t]``).

    Returns:
        Mean per-pair dtSSD (>= 0). A pair whose mask is empty contributes 0.0.

    Raises:
        ValueError: Fewer than 2 frames, shape mismatch, non-float or non-3-D input.
    """
    p, g = _check_pair(pred_seq, gt_seq, names=("pred_seq", "gt_seq"), ndim=3)
    t_len = p.shape[0]
    if t_len < 2:
        raise ValueError(f"dtssd needs at least 2 frames to form a temporal difference; got T={t_len}")
    if mask is not None and np.asarray(mask).ndim == 3:
        m = _check_mask(mask, p.shape)
    else:
        m = np.broadcast_to(_check_mask(mask, p.shape[1:]), p.shape)

    # (T-1, H, W): difference of the temporal derivatives.
    diff = np.diff(p, axis=0) - np.diff(g, axis=0)
    errors = []
    for t in range(1, t_len):
        mt = m[t]
        n = int(mt.sum())
        errors.append(math.sqrt(float((diff[t - 1][mt] ** 2).sum()) / n) if n else 0.0)
    return float(np.mean(errors))


def flicker(aligned_seq: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Flicker of a still scene: the mean over pixels of each pixel's spread over time, x 1000.

    The frames must already be aligned (the same scene point at the same pixel
    in every frame; see ``facemat.data.clips.align_to_first``), so that what
    is left is the matte changing where the scene did not::

        flicker = 1000 * mean_px std_t(alpha_t(px))

    with the population standard deviation (divided by T) over the T frames.
    Identical frames give 0; a pixel alternating between 0 and 1 gives 0.5 there.

    Args:
        aligned_seq: Aligned alphas, float TxHxW, values nominally in [0, 1].
        mask: Optional bool HxW: the pixels counted (e.g. those every frame sees).

    Returns:
        Flicker x 1000 (>= 0); NaN when the mask is empty.

    Raises:
        ValueError: Fewer than 2 frames, non-float or non-3-D input, bad mask.
    """
    a = _as_float(aligned_seq, "aligned_seq", 3)
    if a.shape[0] < 2:
        raise ValueError(f"flicker needs at least 2 frames; got T={a.shape[0]}")
    m = _check_mask(mask, a.shape[1:])
    if not m.any():
        return float("nan")
    return float(1000.0 * a.std(axis=0)[m].mean())


# --------------------------------------------------------------------------- #
# Evaluation bands
# --------------------------------------------------------------------------- #


def boundary_band(gt: np.ndarray, width: int = 8, lo: float = 0.01, hi: float = 0.99) -> np.ndarray:
    """Pixels near the matte's transition: the band where matting is hard.

    Seeds are (a) soft pixels, ``lo < gt < hi``, and (b) both pixels of every
    4-neighbour pair that straddles the 0.5 level (one ``>= 0.5``, the other
    ``< 0.5``), so a hard 0/1 matte still gets a band along its edge. The seeds
    are dilated with a square (2*width+1) x (2*width+1) kernel, i.e. a pixel is
    in the band iff some seed lies within Chebyshev distance ``width``.

    Args:
        gt: Ground-truth alpha, float HxW, values nominally in [0, 1].
        width: Dilation radius in pixels (>= 0); 0 returns the seeds.
        lo: Lower bound (exclusive) of "soft" alpha.
        hi: Upper bound (exclusive) of "soft" alpha.

    Returns:
        Bool HxW band mask (all False for a constant matte).
    """
    a = _as_float(gt, "gt", 2)
    if int(width) != width or width < 0:
        raise ValueError(f"width must be a non-negative integer; got {width}")
    seeds = (a > lo) & (a < hi)
    fg = a >= 0.5
    vert = fg[1:, :] != fg[:-1, :]  # (H-1, W): edge between rows r and r+1
    horz = fg[:, 1:] != fg[:, :-1]  # (H, W-1): edge between columns c and c+1
    seeds[1:, :] |= vert
    seeds[:-1, :] |= vert
    seeds[:, 1:] |= horz
    seeds[:, :-1] |= horz
    if width == 0:
        return seeds
    # Square kernel: the band is the same width diagonally and axis-aligned in
    # the Chebyshev sense, and the dilation is separable (cheap at width 8).
    return ndimage.maximum_filter(seeds, size=2 * int(width) + 1, mode="constant", cval=False)


def uncertainty_band(b: np.ndarray, top: float = 0.10) -> np.ndarray:
    """Pixels whose teacher Laplace scale ``b`` is among the top ``top`` fraction.

    With N = b.size and k = ceil(top * N) (at least 1), the threshold is the
    k-th largest value of ``b`` and the band is ``b >= threshold``. Ties at the
    threshold are all included, so the band holds exactly k pixels when values
    are distinct and can hold more when they tie (never fewer).

    Args:
        b: Teacher uncertainty (Laplace scale, > 0), float HxW.
        top: Fraction in (0, 1]; 0.10 is the project's high-uncertainty band.

    Returns:
        Bool HxW band mask.
    """
    a = _as_float(b, "b", 2)
    if not 0.0 < top <= 1.0:
        raise ValueError(f"top must be in (0, 1]; got {top}")
    if a.size == 0:
        return np.zeros(a.shape, dtype=bool)
    # The epsilon keeps float products like 0.07 * 100 = 7.000000000000001
    # from rounding up to 8.
    k = max(1, int(math.ceil(top * a.size - 1e-9)))
    flat = a.ravel()
    threshold = np.partition(flat, a.size - k)[a.size - k]
    return a >= threshold


# --------------------------------------------------------------------------- #
# Bundles used by the bench harness
# --------------------------------------------------------------------------- #


def matting_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """All accuracy metrics against ground truth, with the defaults above.

    Args:
        pred: Predicted alpha, float HxW, values nominally in [0, 1].
        gt: Ground-truth alpha, float HxW, same shape.
        mask: Optional bool HxW restricting the counted pixels.

    Returns:
        ``{"sad", "mse", "grad", "conn", "iou"}``: SAD/1000, raw MSE, Grad/1000,
        Conn/1000, IoU at ``>= 0.5``.
    """
    return {
        "sad": sad(pred, gt, mask),
        "mse": mse(pred, gt, mask),
        "grad": grad_error(pred, gt, mask),
        "conn": conn_error(pred, gt, mask),
        "iou": iou(pred, gt, mask),
    }


def reference_metrics(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Agreement of an artifact's alpha with the FP32 reference alpha.

    Args:
        pred: Artifact output alpha, float HxW, values nominally in [0, 1].
        ref: FP32 reference alpha, float HxW, same shape.
        mask: Optional bool HxW restricting the counted pixels.

    Returns:
        ``{"max_abs", "mse", "psnr"}``: largest |pred - ref| (0.0 for an empty
        mask), raw MSE, and PSNR in dB for peak 1.0, ``10 * log10(1 / mse)``;
        ``float('inf')`` when mse == 0.
    """
    p, r = _check_pair(pred, ref, names=("pred", "ref"))
    m = _check_mask(mask, p.shape)
    err = np.abs(p - r)[m]
    max_abs = float(err.max()) if err.size else 0.0
    m_se = mse(p, r, m)
    psnr = float("inf") if m_se == 0.0 else float(10.0 * math.log10(1.0 / m_se))
    return {"max_abs": max_abs, "mse": m_se, "psnr": psnr}
