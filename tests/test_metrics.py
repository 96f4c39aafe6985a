"""Tests for facemat.metrics: every value below is worked out by hand in comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facemat import metrics as M

F = np.float64


def a(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=F)


# --------------------------------------------------------------------------- #
# SAD / MSE
# --------------------------------------------------------------------------- #

PRED3 = a([[0.0, 0.5, 1.0],
           [0.2, 0.4, 0.6],
           [1.0, 1.0, 0.0]])
GT3 = a([[0.0, 1.0, 1.0],
         [0.0, 0.4, 1.0],
         [1.0, 0.5, 0.0]])
# |pred - gt| = [[0, .5, 0], [.2, 0, .4], [0, .5, 0]]
MASK3 = np.array([[True, True, False],
                  [False, True, True],
                  [False, False, False]])


def test_sad_by_hand() -> None:
    # sum = .5 + .2 + .4 + .5 = 1.6  ->  1.6 / 1000
    assert M.sad(PRED3, GT3) == pytest.approx(1.6e-3, abs=1e-15)


def test_sad_masked() -> None:
    # counted: (0,0)=0, (0,1)=.5, (1,1)=0, (1,2)=.4  ->  .9 / 1000
    assert M.sad(PRED3, GT3, MASK3) == pytest.approx(0.9e-3, abs=1e-15)


def test_mse_by_hand() -> None:
    # squares: .25 + .04 + .16 + .25 = .70 over 9 pixels
    assert M.mse(PRED3, GT3) == pytest.approx(0.70 / 9, abs=1e-15)


def test_mse_masked_and_empty() -> None:
    # counted squares: 0 + .25 + 0 + .16 = .41 over 4 pixels = .1025
    assert M.mse(PRED3, GT3, MASK3) == pytest.approx(0.1025, abs=1e-15)
    empty = np.zeros((3, 3), dtype=bool)
    assert M.mse(PRED3, GT3, empty) == 0.0
    assert M.sad(PRED3, GT3, empty) == 0.0


def test_identical_gives_zero_and_float_type() -> None:
    out = M.matting_metrics(GT3, GT3)
    assert out == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0, "iou": 1.0}
    assert all(type(v) is float for v in out.values())


# --------------------------------------------------------------------------- #
# IoU
# --------------------------------------------------------------------------- #


def test_iou_by_hand_with_threshold_edge() -> None:
    pred = a([[0.5, 0.49], [1.0, 0.0]])
    gt = a([[1.0, 1.0], [0.0, 0.0]])
    # pred >= .5 -> [[1, 0], [1, 0]]  (0.5 itself is foreground; 0.49 is not)
    # gt   >= .5 -> [[1, 1], [0, 0]]
    # intersection = 1 (pixel (0,0)), union = 3  ->  1/3
    assert M.iou(pred, gt) == pytest.approx(1 / 3)
    # with threshold .49 pred -> [[1, 1], [1, 0]]: inter 2, union 3
    assert M.iou(pred, gt, threshold=0.49) == pytest.approx(2 / 3)


def test_iou_masked_and_empty() -> None:
    pred = a([[0.5, 0.49], [1.0, 0.0]])
    gt = a([[1.0, 1.0], [0.0, 0.0]])
    # only the top row counts: pred [1, 0], gt [1, 1]: inter 1, union 2
    top = np.array([[True, True], [False, False]])
    assert M.iou(pred, gt, top) == pytest.approx(0.5)
    # bottom-right pixel only: both background -> empty/empty -> 1.0
    corner = np.array([[False, False], [False, True]])
    assert M.iou(pred, gt, corner) == 1.0
    zeros = np.zeros((2, 2))
    assert M.iou(zeros, zeros) == 1.0
    # one empty, the other not: inter 0, union 1 -> 0.0
    assert M.iou(zeros, a([[0, 0], [0, 1.0]])) == 0.0


# --------------------------------------------------------------------------- #
# Gradient error
# --------------------------------------------------------------------------- #


def _slow_grad_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, sigma: float = 1.4) -> float:
    """Straight from DIM's gaussgradient.m / compute_gradient_loss.m, with loops."""
    eps = 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    size = 2 * half + 1

    def gauss(x: float) -> float:
        return math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))

    def dgauss(x: float) -> float:
        return -x * gauss(x) / (sigma * sigma)

    hx = [[gauss(i - half) * dgauss(j - half) for j in range(size)] for i in range(size)]
    norm = math.sqrt(sum(v * v for row in hx for v in row))
    hx = [[v / norm for v in row] for row in hx]
    hy = [[hx[j][i] for j in range(size)] for i in range(size)]
    h, w = pred.shape

    def conv(im: np.ndarray, k: list[list[float]]) -> list[list[float]]:
        # imfilter(..., 'replicate', 'conv'): out(r,c) = sum k(i,j) im(r-(i-h), c-(j-h))
        out = [[0.0] * w for _ in range(h)]
        for r in range(h):
            for c in range(w):
                acc = 0.0
                for i in range(size):
                    for j in range(size):
                        rr = min(max(r - (i - half), 0), h - 1)
                        cc = min(max(c - (j - half), 0), w - 1)
                        acc += k[i][j] * float(im[rr, cc])
                out[r][c] = acc
        return out

    px, py, gx, gy = conv(pred, hx), conv(pred, hy), conv(gt, hx), conv(gt, hy)
    total = 0.0
    for r in range(h):
        for c in range(w):
            if mask[r, c]:
                pa = math.hypot(px[r][c], py[r][c])
                ga = math.hypot(gx[r][c], gy[r][c])
                total += (pa - ga) ** 2
    return total / 1000


def test_grad_kernel_size_and_norm() -> None:
    # h = ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) * 1.4 * 0.01)))
    #   = ceil(1.4 * sqrt(-2 ln 0.035093)) = ceil(1.4 * sqrt(6.6995)) = ceil(3.6237) = 4 -> 9x9
    k = M._gauss_deriv_kernel(1.4)
    assert k.shape == (9, 9)
    assert float((k**2).sum()) == pytest.approx(1.0)  # unit L2 norm
    np.testing.assert_allclose(k, -k[:, ::-1], atol=1e-15)  # odd in x: derivative
    np.testing.assert_allclose(k, k[::-1, :], atol=1e-15)  # even in y: smoothing


def test_grad_zero_for_identical_and_constant_offset() -> None:
    rng = np.random.default_rng(0)
    gt = rng.random((10, 11))
    assert M.grad_error(gt, gt) == 0.0
    # The kernel sums to 0 and borders are replicated, so a constant offset has
    # exactly the same gradient everywhere: error 0 (up to rounding).
    assert M.grad_error(gt + 0.2, gt) == pytest.approx(0.0, abs=1e-20)


def test_grad_ramp_vs_flat_by_hand() -> None:
    # pred(r, c) = s * c (horizontal ramp), gt = 0. Away from the border
    # (>= 4 px) the filters see the linear ramp in full, and the kernel is
    # separable, hx(u, v) = g(u) g'(v) / N with N = ||g|| * ||g'||:
    #   gx = s * (sum_u g(u)) * (sum_v v^2 g(v) / sigma^2) / N,   gy = 0
    # With u, v in -4..4, sigma 1.4 (1-D sums by loop below):
    #   sum g = 0.99897, sum v^2 g / sigma^2 = 0.98652, ||g|| = 0.44888,
    #   ||g'|| = 0.22671  ->  K = 0.99897 * 0.98652 / (0.44888 * 0.22671) = 9.6838
    # For s = 0.01: |grad pred| = 0.096838, error per pixel = 0.0093776;
    # on the 4x4 interior of a 12x12 image: 16 * 0.0093776 / 1000 = 1.5004e-4.
    sigma, s = 1.4, 0.01
    us = range(-4, 5)
    g = [math.exp(-u * u / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi)) for u in us]
    dg = [-u * gu / sigma**2 for u, gu in zip(us, g)]
    k_gain = (sum(g) * sum(u * u * gu / sigma**2 for u, gu in zip(us, g))) / (
        math.sqrt(sum(x * x for x in g)) * math.sqrt(sum(x * x for x in dg))
    )
    assert k_gain == pytest.approx(9.6838, abs=1e-4)

    pred = np.tile(s * np.arange(12, dtype=F), (12, 1))
    gt = np.zeros((12, 12))
    interior = np.zeros((12, 12), dtype=bool)
    interior[4:8, 4:8] = True
    expected = 16 * (s * k_gain) ** 2 / 1000
    assert expected == pytest.approx(1.5004e-4, rel=1e-4)
    assert M.grad_error(pred, gt, interior) == pytest.approx(expected, rel=1e-12)
    # Symmetric in its arguments.
    assert M.grad_error(gt, pred, interior) == pytest.approx(expected, rel=1e-12)


def test_grad_matches_loop_reference_with_mask() -> None:
    rng = np.random.default_rng(1)
    pred, gt = rng.random((7, 8)), rng.random((7, 8))
    mask = rng.random((7, 8)) > 0.4
    assert M.grad_error(pred, gt, mask) == pytest.approx(_slow_grad_error(pred, gt, mask), rel=1e-10)
    full = np.ones((7, 8), dtype=bool)
    assert M.grad_error(pred, gt) == pytest.approx(_slow_grad_error(pred, gt, full), rel=1e-10)


# --------------------------------------------------------------------------- #
# Connectivity error
# --------------------------------------------------------------------------- #


def test_conn_identical_is_zero() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((6, 6))
    assert M.conn_error(x, x) == 0.0


def test_conn_largest_component_by_hand() -> None:
    # 1x4, both binary. pred = [1, 1, 1, 1], gt = [1, 1, 0, 1].
    # For every t in .1..1: (pred>=t)&(gt>=t) = [1, 1, 0, 1]; components {0,1}
    # (size 2) and {3} (size 1): omega = {0, 1} at every level.
    # Pixels 2, 3 drop out at t = .1 -> l = 0 (the previous level); 0, 1 never -> l = 1.
    # l = [1, 1, 0, 0]
    # pred d = [0, 0, 1, 1] -> phi = [1, 1, 0, 0]
    # gt   d = [0, 0, 0, 1] -> phi = [1, 1, 1, 0]
    # |diff| = [0, 0, 1, 0] -> 1 / 1000
    pred = a([[1, 1, 1, 1]])
    gt = a([[1, 1, 0, 1]])
    assert M.conn_error(pred, gt) == pytest.approx(1e-3, abs=1e-15)


def test_conn_fractional_by_hand() -> None:
    # pred = [1, .65, .25, 1], gt = [1, 1, 1, .85]; min(pred, gt) = [1, .65, .25, .85]
    #   t = .1, .2      : all in, one component            -> nobody drops
    #   t = .3 .. .6    : [1,1,0,1]: {0,1} beats {3}       -> 2 and 3 drop: l = .2
    #   t = .7, .8      : [1,0,0,1]: {0} vs {3} tie, first -> 1 drops: l = .6
    #   t = .9, 1       : [1,0,0,0]                        -> 0 never drops: l = 1
    # l = [1, .6, .2, .2]
    # pred d = [0, .05, .05, .8] -> phi = [1, 1, 1, .2]   (.05 < .15 -> not penalised)
    # gt   d = [0, .4, .8, .65]  -> phi = [1, .6, .2, .35]
    # |diff| = [0, .4, .8, .15] -> 1.35 / 1000
    pred = a([[1.0, 0.65, 0.25, 1.0]])
    gt = a([[1.0, 1.0, 1.0, 0.85]])
    assert M.conn_error(pred, gt) == pytest.approx(1.35e-3, abs=1e-12)
    # Mask keeps pixels 0 and 2: 0 + .8 -> .8 / 1000 (components still use the whole image)
    mask = np.array([[True, False, True, False]])
    assert M.conn_error(pred, gt, mask) == pytest.approx(0.8e-3, abs=1e-12)


def test_conn_is_4_connected() -> None:
    # pred = [[1, 0], [0, 1]], gt = [[1, 0], [0, .95]]; intersection at t <= .9 is the
    # diagonal {(0,0), (1,1)}, which is NOT connected under 4-connectivity: two
    # size-1 components, the tie goes to (0,0) (first in row-major order).
    # l = [[1, 0], [0, 0]]   ((1,1) drops at t = .1; off-diagonals are 0 in pred)
    # pred d = [[0, 0], [0, 1]]   -> phi = [[1, 1], [1, 0]]
    # gt   d = [[0, 0], [0, .95]] -> phi = [[1, 1], [1, .05]]
    # |diff| = .05 -> 5e-5.  (8-connectivity would give l(1,1) = .9, d = .1/.05, error 0.)
    pred = a([[1, 0], [0, 1]])
    gt = a([[1, 0], [0, 0.95]])
    assert M.conn_error(pred, gt) == pytest.approx(5e-5, abs=1e-12)


def test_conn_threshold_is_decimal_and_inclusive() -> None:
    # pred = .3 (exactly on a threshold), gt = 1, 1x1 image.
    # t = .3: .3 >= .3 holds (thresholds are rounded decimals, >= is inclusive),
    # so it first drops at t = .4 -> l = .3.
    # pred d = 0 -> phi 1; gt d = .7 -> phi .3; |diff| = .7 -> 7e-4
    # (with float arange's 0.30000000000000004 it would drop at .3: l = .2, error 8e-4)
    assert M.conn_error(a([[0.3]]), a([[1.0]])) == pytest.approx(7e-4, abs=1e-12)


def test_conn_step_validation() -> None:
    with pytest.raises(ValueError, match="step"):
        M.conn_error(GT3, GT3, step=0.0)


# --------------------------------------------------------------------------- #
# dtSSD
# --------------------------------------------------------------------------- #


def _seqs() -> tuple[np.ndarray, np.ndarray]:
    # gt:   G0 = 0,  G1 = 0,                G2 = [[0, 0], [.2, 0]]
    # pred: P0 = 0,  P1 = [[.4, .3], [0, 0]], P2 = P1
    gt = np.zeros((3, 2, 2))
    gt[2, 1, 0] = 0.2
    pred = np.zeros((3, 2, 2))
    pred[1] = pred[2] = a([[0.4, 0.3], [0, 0]])
    return pred, gt


def test_dtssd_by_hand() -> None:
    pred, gt = _seqs()
    # t=1: (P1-P0) - (G1-G0) = [[.4, .3], [0, 0]]: sum sq = .16 + .09 = .25,
    #      / 4 px = .0625, sqrt = .25
    # t=2: (P2-P1) - (G2-G1) = [[0, 0], [-.2, 0]]: sum sq = .04, / 4 = .01, sqrt = .1
    # mean = (.25 + .1) / 2 = .175   (raw; RVM would print 17.5)
    assert M.dtssd(pred, gt) == pytest.approx(0.175, abs=1e-15)


def test_dtssd_masked() -> None:
    pred, gt = _seqs()
    top = np.array([[True, True], [False, False]])
    # t=1: .25 over 2 px -> sqrt(.125); t=2: 0 over 2 px -> 0; mean = sqrt(.125) / 2
    assert M.dtssd(pred, gt, top) == pytest.approx(math.sqrt(0.125) / 2, abs=1e-15)
    # Per-frame mask: pair (t-1, t) uses mask[t]. mask[1] = top row, mask[2] = (1,0).
    per_frame = np.zeros((3, 2, 2), dtype=bool)
    per_frame[1] = top
    per_frame[2, 1, 0] = True
    # t=1: sqrt(.125); t=2: .04 over 1 px -> .2; mean = (sqrt(.125) + .2) / 2
    assert M.dtssd(pred, gt, per_frame) == pytest.approx((math.sqrt(0.125) + 0.2) / 2, abs=1e-15)


def test_dtssd_errors() -> None:
    one = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match="at least 2 frames"):
        M.dtssd(one, one)
    with pytest.raises(ValueError, match=r"\(3, 2, 2\).*\(3, 2, 3\)"):
        M.dtssd(np.zeros((3, 2, 2)), np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="3-D"):
        M.dtssd(np.zeros((2, 2)), np.zeros((2, 2)))


def test_flicker_of_identical_frames_is_zero() -> None:
    frame = np.random.default_rng(0).random((6, 5))
    assert M.flicker(np.stack([frame] * 4)) == 0.0


def test_flicker_by_hand() -> None:
    # Two frames, 2x2. Pixel (0,0) goes 0 -> 1: population std 0.5. Pixel (0,1)
    # goes .2 -> .6: std .2. The bottom row is still: 0. Mean over 4 px = .7 / 4
    # = .175, x 1000 = 175.
    seq = np.array([[[0.0, 0.2], [0.3, 0.3]], [[1.0, 0.6], [0.3, 0.3]]])
    assert M.flicker(seq) == pytest.approx(175.0, abs=1e-9)
    # Only the top row counted: (.5 + .2) / 2 x 1000 = 350.
    top = np.array([[True, True], [False, False]])
    assert M.flicker(seq, top) == pytest.approx(350.0, abs=1e-9)
    # Three frames 0, .5, 1 at one pixel: std = sqrt(((.5)^2 + 0 + (.5)^2) / 3) = sqrt(1/6).
    ramp = np.array([0.0, 0.5, 1.0]).reshape(3, 1, 1)
    assert M.flicker(ramp) == pytest.approx(1000 * math.sqrt(1 / 6), abs=1e-9)
    assert math.isnan(M.flicker(seq, np.zeros((2, 2), bool)))


def test_flicker_errors() -> None:
    with pytest.raises(ValueError, match="at least 2 frames"):
        M.flicker(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="3-D"):
        M.flicker(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="uint8"):
        M.flicker(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="bool"):
        M.flicker(np.zeros((2, 2, 2)), np.ones((2, 2), np.uint8))


# --------------------------------------------------------------------------- #
# Bands
# --------------------------------------------------------------------------- #


def test_boundary_band_hard_edge() -> None:
    # 5x5, columns 0-1 = 1, columns 2-4 = 0: no soft pixel, but the 0.5 edge lies
    # between columns 1 and 2, so both are seeds. Square dilation by 1 -> columns 0..3.
    gt = np.zeros((5, 5))
    gt[:, :2] = 1.0
    band = M.boundary_band(gt, width=1)
    expected = np.zeros((5, 5), dtype=bool)
    expected[:, 0:4] = True
    np.testing.assert_array_equal(band, expected)
    # width 0: the seeds themselves (columns 1 and 2)
    seeds = np.zeros((5, 5), dtype=bool)
    seeds[:, 1:3] = True
    np.testing.assert_array_equal(M.boundary_band(gt, width=0), seeds)
    # The same matte transposed (edge between rows 1 and 2): seeds are rows 1 and 2.
    np.testing.assert_array_equal(M.boundary_band(gt.T, width=0), seeds.T)


def test_boundary_band_soft_pixel_and_square_kernel() -> None:
    # 1x7 row with one soft pixel (.3 is in (.01, .99), below .5 so no hard edge)
    gt = a([[0, 0, 0, 0.3, 0, 0, 0]])
    np.testing.assert_array_equal(M.boundary_band(gt, width=2)[0], [0, 1, 1, 1, 1, 1, 0])
    # 5x5 with a soft centre: width 1 gives the full 3x3 block, corners included
    # (a square kernel; an ellipse/cross would leave the corners out)
    gt2 = np.zeros((5, 5))
    gt2[2, 2] = 0.3
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:4, 1:4] = True
    np.testing.assert_array_equal(M.boundary_band(gt2, width=1), expected)
    # lo/hi are exclusive: .995 and .005 are not soft, and a constant matte has no band
    assert not M.boundary_band(a([[0.995, 0.995], [0.995, 0.995]]), width=3).any()
    assert not M.boundary_band(a([[0.005, 0.0], [0.0, 0.0]]), width=3).any()
    with pytest.raises(ValueError, match="width"):
        M.boundary_band(gt2, width=-1)


def test_uncertainty_band_top_fraction_and_ties() -> None:
    b = np.arange(1, 11, dtype=F).reshape(2, 5)  # 1..10
    # N = 10, top .1 -> k = ceil(1.0) = 1: threshold = largest = 10
    np.testing.assert_array_equal(M.uncertainty_band(b, 0.1), b >= 10)
    # top .2 -> k = 2: threshold = 9 -> {9, 10}
    np.testing.assert_array_equal(M.uncertainty_band(b, 0.2), b >= 9)
    # top .15 -> k = ceil(1.5) = 2 -> {9, 10}
    np.testing.assert_array_equal(M.uncertainty_band(b, 0.15), b >= 9)
    # Ties: [[1, 2, 3], [3, 3, 3]], top .1 -> k = ceil(.6) = 1, threshold 3:
    # all four 3s are in (ties included), 4/6 of the pixels
    t = a([[1, 2, 3], [3, 3, 3]])
    np.testing.assert_array_equal(M.uncertainty_band(t, 0.1), t >= 3)
    assert M.uncertainty_band(t, 1.0).all()
    # 100 distinct values, top .07 -> k = 7 (not 8: in floats 0.07 * 100 = 7.000000000000001)
    assert M.uncertainty_band(np.arange(100, dtype=F).reshape(10, 10), 0.07).sum() == 7
    with pytest.raises(ValueError, match="top"):
        M.uncertainty_band(b, 0.0)


# --------------------------------------------------------------------------- #
# Reference comparison
# --------------------------------------------------------------------------- #


def test_reference_metrics_by_hand() -> None:
    pred = a([[0.5, 0.5], [0.5, 0.5]])
    ref = a([[0.5, 0.5], [0.5, 0.4]])
    # one pixel off by .1: max_abs .1, mse = .01 / 4 = .0025,
    # psnr = 10 log10(1 / .0025) = 10 log10(400) = 26.0206 dB
    out = M.reference_metrics(pred, ref)
    assert out["max_abs"] == pytest.approx(0.1)
    assert out["mse"] == pytest.approx(0.0025)
    assert out["psnr"] == pytest.approx(26.0206, abs=1e-4)
    # mask away the differing pixel: identical -> psnr inf
    m = np.array([[True, True], [True, False]])
    assert M.reference_metrics(pred, ref, m) == {"max_abs": 0.0, "mse": 0.0, "psnr": float("inf")}
    assert M.reference_metrics(ref, ref)["psnr"] == float("inf")


def test_matting_metrics_bundle_matches_functions() -> None:
    rng = np.random.default_rng(3)
    pred, gt = rng.random((9, 9)), rng.random((9, 9))
    mask = rng.random((9, 9)) > 0.5
    out = M.matting_metrics(pred, gt, mask)
    assert set(out) == {"sad", "mse", "grad", "conn", "iou"}
    assert out["sad"] == M.sad(pred, gt, mask)
    assert out["mse"] == M.mse(pred, gt, mask)
    assert out["grad"] == M.grad_error(pred, gt, mask)
    assert out["conn"] == M.conn_error(pred, gt, mask)
    assert out["iou"] == M.iou(pred, gt, mask)


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"pred \(3, 3\) and gt \(3, 4\)"):
        M.sad(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"pred \(2, 2\) and ref \(2, 3\)"):
        M.reference_metrics(np.zeros((2, 2)), np.zeros((2, 3)))


def test_non_2d_rejected() -> None:
    with pytest.raises(ValueError, match=r"2-D.*\(1, 3, 3\)"):
        M.mse(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))


def test_uint8_rejected_with_hint() -> None:
    u = np.zeros((3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8.*/ 255"):
        M.iou(u, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="int64"):
        M.iou(np.zeros((3, 3), dtype=np.int64), np.zeros((3, 3)))


def test_mask_validation() -> None:
    with pytest.raises(ValueError, match="bool"):
        M.sad(GT3, GT3, np.ones((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"mask \(2, 2\)"):
        M.sad(GT3, GT3, np.ones((2, 2), dtype=bool))


def test_values_not_clipped_and_float32_accepted() -> None:
    # 1.5 vs 1.0: not clipped, so SAD = .5 / 1000
    assert M.sad(a([[1.5]]), a([[1.0]])) == pytest.approx(0.5e-3)
    assert M.sad(PRED3.astype(np.float32), GT3.astype(np.float32)) == pytest.approx(1.6e-3, rel=1e-6)
