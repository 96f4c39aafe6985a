"""Drawing primitives for the procedural face generator (``facemat.data.synth``).

Everything draws with OpenCV at the output resolution: shapes go into ``uint8``
canvases with ``cv2.LINE_AA`` and sub-pixel coordinates (``SHIFT`` fractional
bits), which gives a soft, about one pixel wide, anti-aliased edge at a fraction of
the cost of supersampling. Colour canvases are full-frame fields (a layer's colour
is defined beyond its mask), so blending a layer over what lies behind it with its
own soft alpha never shows a dark fringe.

A :class:`Layer` is one such drawing cropped to the bounding box of its alpha, in
float32; compositing touches only that box. The scene itself is composited in
8 bits with ``cv2.blendLinear`` (:func:`blend_over`). Both keep a 256 x 256
sample at a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHIFT = 4
"""Fractional bits of the fixed-point coordinates handed to OpenCV."""
_ONE = float(1 << SHIFT)
AA = cv2.LINE_AA


def fix(pts: np.ndarray) -> np.ndarray:
    """Float pixel coordinates ``(..., 2)`` to OpenCV's fixed point (int32)."""
    return np.rint(np.asarray(pts, dtype=np.float64) * _ONE).astype(np.int32)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * _ONE)), int(round(float(p[1]) * _ONE))


def color(c: np.ndarray | tuple[float, ...] | float) -> tuple[float, ...]:
    """A colour in [0, 1] (scalar or RGB) to an OpenCV 0..255 tuple."""
    vals = c.tolist() if isinstance(c, np.ndarray) else c
    if not isinstance(vals, (list, tuple)):
        vals = (vals,)
    return tuple(min(255.0, max(0.0, 255.0 * float(v))) for v in vals)


def fill_poly(img: np.ndarray, pts: np.ndarray | list[np.ndarray], c) -> None:
    """Fill one polygon ``(N, 2)`` or a list of them, anti-aliased."""
    polys = [pts] if isinstance(pts, np.ndarray) else pts
    cv2.fillPoly(img, [fix(p) for p in polys], color(c), AA, SHIFT)


def polyline(img: np.ndarray, pts: np.ndarray | list[np.ndarray], c, thickness: float, closed: bool = False) -> None:
    """Anti-aliased polyline ``(N, 2)`` (or a batch ``(K, N, 2)`` / list); ``thickness`` in pixels (>= 1)."""
    arr = [fix(p) for p in pts] if isinstance(pts, list) or np.ndim(pts) == 3 else [fix(pts)]
    cv2.polylines(img, arr, closed, color(c), max(1, int(round(thickness))), AA, SHIFT)


def line(img: np.ndarray, p0: np.ndarray, p1: np.ndarray, c, thickness: float) -> None:
    """Anti-aliased segment with round caps: a capsule when ``thickness`` is large."""
    cv2.line(img, _pt(p0), _pt(p1), color(c), max(1, int(round(thickness))), AA, SHIFT)


def disc(img: np.ndarray, centre: np.ndarray, radius: float, c) -> None:
    """Filled anti-aliased circle."""
    cv2.circle(img, _pt(centre), max(1, int(round(radius * _ONE))), color(c), -1, AA, SHIFT)


def ellipse_pts(centre, axes, angle: float = 0.0, n: int = 32, t0: float = 0.0, t1: float = 2 * np.pi) -> np.ndarray:
    """Points ``(n, 2)`` on an ellipse arc; ``angle`` in radians, counter-clockwise on screen."""
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * np.pi - 1e-6)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([centre[0] + ca * x - sa * y, centre[1] + sa * x + ca * y], axis=-1)


def catmull_rom(ctrl: np.ndarray, per_seg: int = 6, closed: bool = True) -> np.ndarray:
    """Smooth curve ``(M, D)`` through control points ``(N, D)`` (uniform Catmull-Rom)."""
    p = np.asarray(ctrl, dtype=np.float64)
    p = np.concatenate([p[-1:], p, p[:2]]) if closed else np.concatenate([p[:1], p, p[-1:]])
    p0, p1, p2, p3 = p[:-3, None], p[1:-2, None], p[2:-1, None], p[3:, None]  # (S, 1, D) each
    t = np.linspace(0.0, 1.0, per_seg, endpoint=False)[None, :, None]
    out = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    out = out.reshape(-1, p.shape[1])  # (S * per_seg, D)
    return out if closed else np.concatenate([out, p[-2:-1]])


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas run at half resolution (same look, a fraction of the cost)."""
    if sigma <= 1.2:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / 2)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def bezier(p0, p1, p2, p3, n: int = 16) -> np.ndarray:
    """Cubic Bezier curve ``(n, D)``."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    u = 1.0 - t
    return u**3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t**3 * p3


def rot(angle: float) -> np.ndarray:
    """2 x 2 rotation matrix; with y pointing down, positive angles turn clockwise on screen."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """``size x size`` float32 value noise in about [-1, 1]: a ``cells`` grid upsampled (bicubic)."""
    grid = rng.uniform(-1.0, 1.0, (cells + 3, cells + 3)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def linear_gradient(size: int, c0: np.ndarray, c1: np.ndarray, angle: float) -> np.ndarray:
    """``size x size x 3`` float32 gradient from ``c0`` to ``c1`` along ``angle``."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1) - 0.5
    t = np.clip(0.5 + x * np.cos(angle) + y * np.sin(angle), 0.0, 1.0)[..., None]
    return (1.0 - t) * np.asarray(c0, np.float32) + t * np.asarray(c1, np.float32)


def line_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised motion-blur kernel: an anti-aliased line of ``length`` pixels."""
    k = int(np.ceil(length)) | 1
    ker = np.zeros((k, k), np.uint8)
    c = np.array([k / 2 - 0.5, k / 2 - 0.5])
    d = 0.5 * (length - 1) * np.array([np.cos(angle), np.sin(angle)])
    line(ker, c - d, c + d, 1.0, 1)
    ker_f = ker.astype(np.float32)
    return ker_f / ker_f.sum()


def blend_over(base: np.ndarray, rgb: np.ndarray, mask: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """Composite a full-frame ``uint8`` canvas over ``uint8`` ``base`` in place, inside its mask's box.

    ``cv2.blendLinear`` does the blend in one pass on 8-bit data (ten times the
    speed of the float path); the scene is quantised to 8 bits in the end anyway.

    Returns:
        The box and the mask cropped to it as float32 alpha in [0, 1].
    """
    x, y, w, h = cv2.boundingRect(mask)
    box = (slice(y, y + h), slice(x, x + w))
    a = mask[box].astype(np.float32) * (1.0 / 255.0)
    if a.size:
        base[box] = cv2.blendLinear(rgb[box], base[box], a, 1.0 - a)
    return box, a


@dataclass
class Layer:
    """A drawing cropped to its bounding box: colour and alpha in [0, 1], float32.

    Attributes:
        rgb: ``h x w x 3`` colour.
        alpha: ``h x w`` coverage.
        y0, x0: top-left corner of the box in the full frame.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    y0: int
    x0: int

    @property
    def box(self) -> tuple[slice, slice]:
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)

    @classmethod
    def from_canvases(cls, rgb: np.ndarray | None, alpha_u8: np.ndarray, fill=None) -> "Layer":
        """Crop a full-frame ``uint8`` colour canvas (or a flat ``fill`` colour) and mask."""
        x, y, w, h = cv2.boundingRect(alpha_u8)
        if w == 0 or h == 0:
            return cls(np.zeros((0, 0, 3), np.float32), np.zeros((0, 0), np.float32), 0, 0)
        a = alpha_u8[y : y + h, x : x + w].astype(np.float32) * (1.0 / 255.0)
        if rgb is None:
            c = np.broadcast_to(np.asarray(fill, np.float32), (h, w, 3))
        elif rgb.dtype == np.uint8:
            c = rgb[y : y + h, x : x + w].astype(np.float32) * (1.0 / 255.0)
        else:
            c = rgb[y : y + h, x : x + w]
        return cls(np.ascontiguousarray(c, dtype=np.float32), a, y, x)

    def empty(self) -> bool:
        return self.alpha.size == 0 or not bool(self.alpha.any())

    def full(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The layer as full-frame ``(rgb size x size x 3, alpha size x size)``."""
        rgb = np.zeros((size, size, 3), np.float32)
        a = np.zeros((size, size), np.float32)
        if self.alpha.size:
            rgb[self.box] = self.rgb
            a[self.box] = self.alpha
        return rgb, a

    def over_u8(self, base: np.ndarray) -> None:
        """Composite in place over the uint8 ``H x W x 3`` image ``base``."""
        if self.alpha.size:
            roi = base[self.box]
            rgb = cv2.convertScaleAbs(self.rgb, alpha=255.0)
            base[self.box] = cv2.blendLinear(rgb, roi, self.alpha, 1.0 - self.alpha)

    def motion_blur(self, length: float, angle: float, size: int) -> "Layer":
        """Blur along a line, premultiplied (colour times alpha, blur, divide back).

        Sides of the box that touch the frame edge are padded by replication (the
        object goes on outside the picture); the others by zeros.
        """
        ker = line_kernel(length, angle)
        p = ker.shape[0] // 2 + 1
        h, w = self.alpha.shape
        pre = np.empty((h, w, 4), np.float32)
        pre[..., :3] = self.rgb * self.alpha[..., None]
        pre[..., 3] = self.alpha
        at_edge = (self.y0 == 0, self.y0 + h >= size, self.x0 == 0, self.x0 + w >= size)
        pre = np.pad(pre, ((p, p), (p, p), (0, 0)), mode="constant")
        for axis, (lo_edge, hi_edge) in enumerate((at_edge[:2], at_edge[2:])):
            n = pre.shape[axis]
            idx = np.arange(n)
            idx = np.clip(idx, p if lo_edge else 0, n - 1 - p if hi_edge else n - 1)
            pre = np.take(pre, idx, axis=axis)
        pre = cv2.filter2D(pre, -1, ker, borderType=cv2.BORDER_CONSTANT)
        # Keep the part inside the frame: grow by p only on sides away from the edge.
        y0 = self.y0 - (0 if at_edge[0] else min(p, self.y0))
        x0 = self.x0 - (0 if at_edge[2] else min(p, self.x0))
        y1 = self.y0 + h + (0 if at_edge[1] else min(p, size - self.y0 - h))
        x1 = self.x0 + w + (0 if at_edge[3] else min(p, size - self.x0 - w))
        pre = pre[y0 - self.y0 + p : y1 - self.y0 + p, x0 - self.x0 + p : x1 - self.x0 + p]
        a = np.clip(pre[..., 3], 0.0, 1.0)
        rgb = np.clip(pre[..., :3] / np.maximum(a, 1e-4)[..., None], 0.0, 1.0)
        a[a < 1.0 / 512.0] = 0.0
        return Layer(np.ascontiguousarray(rgb), np.ascontiguousarray(a), y0, x0)
