"""A light temporal filter that an app runs after the model: a motion-gated running average.

A matting net sees each frame alone, so sensor noise and JPEG blocks that change
from frame to frame make its matte shimmer where nothing moved. This filter
blends each new matte into the previous output, a lot where the picture did not
change and not at all where it did, so a still face is held steady and a hand
that moves is followed at once. Per pixel, for frame t (the model's input crop
``x_t`` and its alpha ``a_t``)::

    Y_t = 0.299 R + 0.587 G + 0.114 B                       (luma of x_t, in [0, 1])
    D   = | box_r(Y_t - Y_{t-1}) |                          (mean over the (2r+1)^2 window)
    g   = clamp((D - d0) / (d1 - d0), 0, 1)                 (0: still, 1: moving)
    k   = k_min + (1 - k_min) * g
    out_t = out_{t-1} + k * (a_t - out_{t-1})               (out_0 = a_0)

The box mean clamps coordinates at the borders (a pixel outside the crop reads
the nearest edge pixel), so it is separable: a horizontal then a vertical pass.
``Y_{t-1}`` is the previous frame's luma, not a filtered one. Start again
(:meth:`TemporalFilter.reset`) whenever the crop stops following the same face
(a new face, a lost track, a jump of the crop). docs/mobile.md gives the same
steps in Swift and Kotlin.

The defaults were chosen for the shipped student on clips of their own
(``python -m training.tune_temporal`` with its default grid on 64 clips of
``--source mix --split tune --seed 77``: procedural faces and the training
photos); the figures in docs/results.md come from other seeds and from held-out
faces. Retune them when the shipped student changes. The grid's lowest
``k_min`` is 0.1 on purpose: 8-frame clips cannot show the lag of a matte that
follows a change the gate misses, and 1 / k_min = 10 frames (a third of a second
at 30 fps) is the most that lag may last.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from facemat.errors import ConfigError, DataError

__all__ = ["DEFAULT", "TemporalConfig", "TemporalFilter", "filter_sequence", "parse_config"]

LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class TemporalConfig:
    """Settings of the filter (see the module docstring for the formula).

    Attributes:
        k_min: weight of the new matte where nothing moved, in (0, 1]; 1 turns the filter off.
        d0: luma change (box mean, in [0, 1] units) below which a pixel counts as still.
        d1: luma change above which a pixel counts as moving (k = 1), > d0.
        radius: half-width r of the box window, pixels (0..16).
    """

    k_min: float = 0.1
    d0: float = 0.02
    d1: float = 0.18
    radius: int = 2

    def __post_init__(self) -> None:
        for name in ("k_min", "d0", "d1"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"temporal filter {name} must be a finite number, got {v!r}")
        if not 0.0 < self.k_min <= 1.0:
            raise ConfigError(f"temporal filter k_min must be in (0, 1] (1 = off), got {self.k_min}")
        if not 0.0 <= self.d0 < self.d1 <= 1.0:
            raise ConfigError(f"temporal filter needs 0 <= d0 < d1 <= 1, got d0={self.d0}, d1={self.d1}")
        if isinstance(self.radius, bool) or not isinstance(self.radius, (int, np.integer)) or \
                not 0 <= self.radius <= 16:
            raise ConfigError(f"temporal filter radius must be an integer from 0 to 16, got {self.radius!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT = TemporalConfig()


def _luma(image: np.ndarray) -> np.ndarray:
    """``H x W`` float32 luma in [0, 1] of an ``H x W x 3`` RGB image (uint8, or float in [0, 1])."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise DataError(f"the temporal filter takes H x W x 3 RGB frames, got shape {img.shape}")
    scale = 1.0 / 255.0 if img.dtype == np.uint8 else 1.0
    r, g, b = (img[..., c].astype(np.float32) for c in range(3))
    return ((LUMA[0] * scale) * r + (LUMA[1] * scale) * g + (LUMA[2] * scale) * b).astype(np.float32)


class TemporalFilter:
    """The filter over one stream of crops: ``out = filt(image, alpha)`` per frame.

    Args:
        config: its settings (:data:`DEFAULT` when None).
    """

    def __init__(self, config: TemporalConfig | None = None) -> None:
        self.config = config or DEFAULT
        self._luma: np.ndarray | None = None
        self._out: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the past: the next frame's alpha passes through unchanged."""
        self._luma = None
        self._out = None

    def gate(self, luma: np.ndarray) -> np.ndarray:
        """``k`` per pixel (``H x W`` float32 in [k_min, 1]) for this frame's luma against the previous one."""
        c = self.config
        side = 2 * c.radius + 1
        diff = cv2.blur(luma - self._luma, (side, side), borderType=cv2.BORDER_REPLICATE)
        g = np.clip((np.abs(diff) - c.d0) / (c.d1 - c.d0), 0.0, 1.0)
        return (c.k_min + (1.0 - c.k_min) * g).astype(np.float32)

    def __call__(self, image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Filter one frame.

        Args:
            image: ``H x W x 3`` RGB, uint8 or float in [0, 1]: the pixels the model saw.
            alpha: ``H x W`` float, the model's alpha for them.

        Returns:
            ``H x W`` float32: the filtered alpha.

        Raises:
            DataError: shapes that do not fit each other or the previous frame's.
        """
        luma = _luma(image)
        a = np.asarray(alpha, np.float32)
        if a.shape != luma.shape:
            raise DataError(f"the temporal filter got an alpha of shape {a.shape} for a frame of {luma.shape}")
        if self._out is not None and self._out.shape != a.shape:
            raise DataError(f"the temporal filter got a {a.shape} frame after {self._out.shape} ones; "
                            "call reset() when the crop size changes")
        if self._out is None:
            out = a.copy()
        else:
            k = self.gate(luma)
            out = self._out + k * (a - self._out)
        self._luma, self._out = luma, out
        return out.copy()


def filter_sequence(images: np.ndarray, alphas: np.ndarray, config: TemporalConfig | None = None) -> np.ndarray:
    """Run a fresh filter over one clip.

    Args:
        images: ``T x H x W x 3`` RGB frames (uint8, or float in [0, 1]).
        alphas: ``T x H x W`` the model's alphas.

    Returns:
        ``T x H x W`` float32 filtered alphas.
    """
    if len(images) != len(alphas):
        raise DataError(f"{len(images)} frames but {len(alphas)} alphas")
    filt = TemporalFilter(config)
    return np.stack([filt(img, a) for img, a in zip(images, alphas)])


def parse_config(text: str) -> TemporalConfig:
    """``"k_min=0.25,d0=0.01,d1=0.04,radius=2"`` (any subset; the rest default) -> :class:`TemporalConfig`.

    Raises:
        ConfigError: an unknown name or a value that is not a number, naming it.
    """
    fields = {"k_min": float, "d0": float, "d1": float, "radius": int}
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in fields:
            raise ConfigError(f"--filter: unknown setting {name!r}; give k_min, d0, d1, radius as name=value, "
                              "e.g. k_min=0.25,d0=0.01,d1=0.04,radius=2")
        try:
            values[name] = fields[name](value.strip())
        except ValueError:
            raise ConfigError(f"--filter: {name}={value.strip()!r} is not a number") from None
    return TemporalConfig(**{**DEFAULT.to_dict(), **values})
