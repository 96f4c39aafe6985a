"""Following faces through a video: detect, then track each crop with smoothing.

Per frame, :class:`FaceTracker`:

1. looks for each tracked face in a window around its last crop (one small
   detector run, as MediaPipe's tracking graphs re-detect inside the previous
   region) and searches the whole frame only every ``redetect`` frames (for
   new faces), when a track finds nothing in its window, or when there is none;
2. matches detections to tracks (nearest centre, similar size);
3. smooths each track's crop (centre, side, roll) with a One Euro filter
   (Casiez et al., CHI 2012): strong smoothing while the face is still, so the
   crop does not jitter from frame to frame, and less lag as it moves faster;
4. shows a new track once it was detected in ``confirm`` frames in a row, so a
   false box that comes and goes is never matted;
5. holds a track's last crop for up to ``hold`` frames without a detection
   (a hand passing in front), then drops it. Those frames are the ones where
   the face is lost; :attr:`FaceTracker.lost` lists them per frame.

A tracked face is always measured in its own window (side ``window`` crop
sides), so its crop does not switch between two detectors' ideas of the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facemat.crop import DEFAULT, Crop, CropSpec, crop_for
from facemat.errors import ConfigError
from facemat.pretrained.blazeface import Detection

__all__ = ["FaceTracker", "OneEuro", "TrackSettings", "Tracked"]


@dataclass(frozen=True)
class TrackSettings:
    """Tracking and smoothing settings.

    Attributes:
        min_cutoff: One Euro cutoff (Hz) at rest: lower is smoother and lags more.
        beta: how fast the cutoff rises with speed (per crop side per second).
        d_cutoff: cutoff (Hz) of the speed estimate.
        hold: frames a track keeps its last crop without a detection before it is dropped.
        confirm: a new track is shown once it was detected in this many frames in a row
            (a false box that comes and goes never is); 1 shows it at once.
        redetect: search the whole frame at least every this many frames (finds new faces).
        window: side of the search window around a track, in crop sides.
    """

    min_cutoff: float = 1.0
    beta: float = 2.0
    d_cutoff: float = 1.0
    hold: int = 8
    confirm: int = 3
    redetect: int = 10
    window: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "beta", "d_cutoff", "window"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"tracking {name} must be a positive number, got {v}")
        if self.hold < 0 or self.redetect < 1 or self.confirm < 1:
            raise ConfigError(f"tracking hold must be >= 0, confirm and redetect >= 1, got {self.hold}, "
                              f"{self.confirm} and {self.redetect}")


class OneEuro:
    """One Euro filter on a vector; each component's speed is measured in units of ``scale``.

    Args:
        settings: cutoffs and beta.
        rate: frames per second.
    """

    def __init__(self, settings: TrackSettings, rate: float) -> None:
        self.s, self.rate = settings, float(rate)
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray:
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff, np.float64))
        return 1.0 / (1.0 + tau * self.rate)

    def __call__(self, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return self.x.copy()
        raw_dx = (x - self.x) * self.rate / scale
        self.dx = self.dx + self._alpha(self.s.d_cutoff) * (raw_dx - self.dx)
        cutoff = self.s.min_cutoff + self.s.beta * np.abs(self.dx)
        self.x = self.x + self._alpha(cutoff) * (x - self.x)
        return self.x.copy()


@dataclass
class _Track:
    id: int
    filt: OneEuro
    crop: Crop
    missed: int = 0
    hits: int = 1  # frames detected so far (counts up to confirmation)


@dataclass(frozen=True)
class Tracked:
    """A face in one frame: its smoothed crop, its track id, and whether it was detected in this frame."""

    crop: Crop
    track: int
    detected: bool


@dataclass
class FaceTracker:
    """Detect-then-track over the frames of one video: ``tracker(rgb) -> [Tracked, ...]``.

    Args:
        finder: a face finder (``finder(rgb) -> [Detection]``); with an ``in_window``
            method (:class:`~facemat.finder.BlazeFaceFinder`) tracks search their own window first.
        spec: the crop contract.
        fps: the video's frame rate (for the filter's cutoffs in Hz).
        settings: see :class:`TrackSettings`.
    """

    finder: Any
    spec: CropSpec = DEFAULT
    fps: float = 30.0
    settings: TrackSettings = field(default_factory=TrackSettings)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"frame rate must be positive, got {self.fps}")
        self.tracks: list[_Track] = []
        self.frame = 0
        self.lost: list[int] = []  # per frame: tracks without a detection in it (held or dropped)
        self.searches = 0  # whole-frame searches so far
        self._next_id = 0

    def _crop(self, d: Detection) -> Crop:
        return crop_for(d.box, self.spec, d.roll())

    def _search_windows(self, rgb: np.ndarray) -> list[Detection]:
        found: list[Detection] = []
        for t in self.tracks:
            side = int(round(self.settings.window * t.crop.side))
            x0, y0 = int(round(t.crop.cx - side / 2)), int(round(t.crop.cy - side / 2))
            found += self.finder.in_window(rgb, x0, y0, side)
        from facemat.finder import merge

        return merge(found)

    def _match(self, crops: list[tuple[Crop, Detection]], tracks: list[int]) -> dict[int, tuple[Crop, Detection]]:
        """Greedy: each of ``tracks`` (indices) takes the nearest unused detection close in place and size."""
        pairs = []
        for ti in tracks:
            t = self.tracks[ti]
            for di, (c, _) in enumerate(crops):
                dist = math.hypot(c.cx - t.crop.cx, c.cy - t.crop.cy) / t.crop.side
                ratio = c.side / t.crop.side
                if dist < 0.5 and 0.5 < ratio < 2.0:
                    pairs.append((dist, ti, di))
        out: dict[int, tuple[Crop, Detection]] = {}
        used: set[int] = set()
        for _, ti, di in sorted(pairs):
            if ti not in out and di not in used:
                out[ti] = crops[di]
                used.add(di)
        return out

    def __call__(self, rgb: np.ndarray) -> list[Tracked]:
        s = self.settings
        windowed = hasattr(self.finder, "in_window")
        matched: dict[int, tuple[Crop, Detection]] = {}
        if self.tracks and windowed:
            # A tracked face is always measured in its own window, so its crop does not
            # switch between two detectors' ideas of the box.
            matched = self._match([(self._crop(d), d) for d in self._search_windows(rgb)], list(range(len(self.tracks))))
        found: list[tuple[Crop, Detection]] = []
        if not self.tracks or not windowed or self.frame % s.redetect == 0 or len(matched) < len(self.tracks):
            found = [(self._crop(d), d) for d in self.finder(rgb)]
            self.searches += 1
            matched.update(self._match(found, [i for i in range(len(self.tracks)) if i not in matched]))
        out: list[Tracked] = []
        keep: list[_Track] = []
        lost = 0
        for ti, t in enumerate(self.tracks):
            shown = t.hits >= s.confirm
            if ti in matched:
                c = matched[ti][0]
                angle = t.crop.angle + math.remainder(c.angle - t.crop.angle, 2 * math.pi)
                v = t.filt(np.array([c.cx, c.cy, math.log(c.side), angle]),
                           np.array([t.crop.side, t.crop.side, 1.0, 1.0]))
                t.crop, t.missed = Crop(float(v[0]), float(v[1]), float(math.exp(v[2])), float(v[3])), 0
                t.hits += 1
            elif not shown:
                continue  # a tentative track that missed: not a face that stays
            else:
                t.missed += 1
                lost += 1
                if t.missed > s.hold:
                    continue  # dropped: the face is gone
            keep.append(t)
            if t.hits >= s.confirm:
                out.append(Tracked(t.crop, t.id, t.missed == 0))
        for c, d in found:  # faces no track holds start new tracks
            if any(math.hypot(c.cx - t.crop.cx, c.cy - t.crop.cy) < 0.5 * t.crop.side for t in keep):
                continue
            t = _Track(self._next_id, OneEuro(s, self.fps), c)
            t.filt(np.array([c.cx, c.cy, math.log(c.side), c.angle]), np.array([c.side, c.side, 1.0, 1.0]))
            self._next_id += 1
            keep.append(t)
            if s.confirm <= 1:
                out.append(Tracked(c, t.id, True))
        self.tracks = keep
        self.lost.append(lost)
        self.frame += 1
        return out
