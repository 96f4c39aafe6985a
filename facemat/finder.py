"""Face finders: BlazeFace (the default, what filter apps run) and OpenCV's Haar cascade (the fallback).

A finder maps an ``H x W x 3`` uint8 RGB frame to
:class:`~facemat.pretrained.blazeface.Detection` s in frame pixels, best first;
:func:`facemat.crop.crop_for` turns each into the model's crop.

:class:`BlazeFaceFinder` runs BlazeFace (short range) as MediaPipe does, on the
whole frame and, because a face that is small in the frame scores low there,
also on zoomed windows: squares of 3/4 and 1/2 of the frame's shorter edge,
overlapping by half. A detection that an inner window edge cuts is dropped (the
window holding the whole face finds it); the rest are merged with MediaPipe's
weighted non-maximum suppression. A face half hidden by a hand often scores
just under MediaPipe's 0.5, and so do face-like things (a flag's stars,
stripes) in the zoomed windows; so a merged detection is kept when it scores
at least :data:`SURE` (0.55), and one between :data:`CANDIDATE` (0.4) and that
only when the full-range BlazeFace model, run on a window of
:data:`CONFIRM_CONTEXT` times its box around it, finds a face there too (at
least :data:`CONFIRM`). The thresholds were chosen on frames of seed 1 of
``python -m bench.detect`` (more faces found and about half the false boxes of
the windows at 0.5 alone); ``docs/results.md`` reports them on seed 0.
``python -m bench.detect`` measures each setting beside the Haar cascade.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from facemat.errors import ConfigError, DataError
from facemat.pretrained.blazeface import Detection, weighted_nms

__all__ = ["CANDIDATE", "CONFIRM", "DETECTORS", "SURE", "BlazeFaceFinder", "HaarFinder", "ZOOM_LEVELS",
           "load_finder", "merge"]

DETECTORS = ("blazeface", "blazeface-full", "haar")
"""``--detector`` choices: BlazeFace short range (default), BlazeFace full range, OpenCV's Haar cascade."""
ZOOM_LEVELS = (0.75, 0.5)
"""Zoomed window sides, as fractions of the frame's shorter edge (windows overlap by half)."""
ZOOMS = ("always", "misses", "off")
"""When the zoomed windows are searched: on every frame, when the whole frame gives no face, never."""
CANDIDATE = 0.4
"""Detections scoring at least this are candidates (and what a tracked face is followed with)."""
SURE = 0.55
"""Candidates scoring at least this are kept without confirmation."""
CONFIRM = 0.2
"""The full-range model's score that confirms a candidate below :data:`SURE`."""
CONFIRM_CONTEXT = 2.5
"""Side of the confirmation window, in candidate box sides (the face is then ~40 % of it)."""
HAAR_FILE = "haarcascade_frontalface_default.xml"
_CUT_MARGIN = 0.02  # a box within this fraction of a window's inner edge counts as cut by it


def merge(detections: Sequence[Detection], iou: float = 0.3) -> list[Detection]:
    """Weighted NMS (MediaPipe's) over detections from several windows, best first."""
    if not detections:
        return []
    boxes = np.array([[d.box[0], d.box[1], d.box[0] + d.box[2], d.box[1] + d.box[3]] for d in detections])
    scores = np.array([d.score for d in detections])
    kps = np.stack([d.keypoints for d in detections])
    return [Detection((float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])), s, k.astype(np.float32))
            for b, s, k in weighted_nms(boxes, scores, kps, iou)]


def _positions(length: int, side: int) -> list[int]:
    step = max(1, side // 2)
    last = max(0, length - side)
    return sorted(set(range(0, last + 1, step)) | {last})


class BlazeFaceFinder:
    """BlazeFace over the whole frame and zoomed windows: ``finder(rgb) -> [Detection, ...]``.

    Args:
        model: ``"short"`` (faces at selfie distance) or ``"full"`` (far or small faces).
        zoom: when to search the zoomed windows of :data:`ZOOM_LEVELS`, one of :data:`ZOOMS`.
        confirm: keep candidates between :data:`CANDIDATE` and :data:`SURE` that the
            full-range model confirms (short range only). Without it, the threshold is
            MediaPipe's (0.5 short range, 0.6 full range) or ``min_score``.
        min_score: the threshold without ``confirm`` (default MediaPipe's).
        path: the model file (default: the cached copy, fetched on first use).
    """

    def __init__(self, model: str = "short", zoom: str = "always", confirm: bool = True,
                 min_score: float | None = None, path: str | os.PathLike[str] | None = None) -> None:
        from facemat.io import file_sha256
        from facemat.pretrained.blazeface import BlazeFace

        if zoom not in ZOOMS:
            raise ConfigError(f"zoom must be one of {', '.join(ZOOMS)}, got {zoom!r}")
        self.confirm = bool(confirm and model == "short")
        self.detector = BlazeFace(model, path=path, min_score=CANDIDATE if self.confirm else min_score)
        self.sure = SURE if self.confirm else self.detector.config.min_score
        self.verifier = BlazeFace("full", min_score=CONFIRM) if self.confirm else None
        self.zoom = zoom
        self.name = "blazeface" if model == "short" else "blazeface-full"
        self.info: dict[str, Any] = {
            "name": self.name, "model": Path(self.detector.path).name, "sha256": file_sha256(self.detector.path),
            "zoom": zoom, "zoom_levels": list(ZOOM_LEVELS), "min_score": self.sure}
        if self.verifier is not None:
            self.info["confirm"] = {"candidates_from": CANDIDATE, "model": Path(self.verifier.path).name,
                                    "sha256": file_sha256(self.verifier.path), "min_score": CONFIRM,
                                    "context": CONFIRM_CONTEXT}

    def windows(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """The zoomed windows ``(x0, y0, side)`` of a ``height x width`` frame (the whole frame not included)."""
        out = []
        for level in ZOOM_LEVELS:
            side = int(round(min(height, width) * level))
            if side < 32:
                continue
            out += [(x, y, side) for y in _positions(height, side) for x in _positions(width, side)]
        return out

    def in_window(self, rgb: np.ndarray, x0: int, y0: int, side: int, keep_cut: bool = False) -> list[Detection]:
        """Candidates in the square window at ``(x0, y0)`` (may leave the frame: black there), in frame pixels.

        Unless ``keep_cut``, boxes that touch an edge of the window lying inside the frame are dropped.
        """
        h, w = rgb.shape[:2]
        if 0 <= x0 and 0 <= y0 and x0 + side <= w and y0 + side <= h:
            tile = rgb[y0:y0 + side, x0:x0 + side]
        else:
            m = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
            tile = cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        out = []
        cut = _CUT_MARGIN * side
        for d in self.detector(np.ascontiguousarray(tile)):
            bx, by, bw, bh = d.box
            if not keep_cut and ((bx < cut and x0 > 0) or (by < cut and y0 > 0)
                                 or (bx + bw > side - cut and x0 + side < w) or (by + bh > side - cut and y0 + side < h)):
                continue
            out.append(Detection((bx + x0, by + y0, bw, bh), d.score, d.keypoints + np.array([x0, y0], np.float32)))
        return out

    def confirmed(self, rgb: np.ndarray, d: Detection) -> bool:
        """Whether the full-range model finds a face of about ``d``'s size near its centre."""
        from facemat.crop import Crop, extract

        assert self.verifier is not None
        size = self.verifier.config.size
        side = max(d.box[2], d.box[3])
        window = extract(rgb, Crop(*d.centre, CONFIRM_CONTEXT * side), size)
        expect = size / CONFIRM_CONTEXT  # the candidate's side in the window
        for e in self.verifier(window):
            ex, ey = e.centre
            if (abs(ex - size / 2) < 0.25 * expect and abs(ey - size / 2) < 0.25 * expect
                    and 0.5 < max(e.box[2], e.box[3]) / expect < 2.0):
                return True
        return False

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        found = list(self.detector(rgb))
        if self.zoom == "always" or (self.zoom == "misses" and not any(d.score >= self.sure for d in found)):
            for x0, y0, side in self.windows(*rgb.shape[:2]):
                found += self.in_window(rgb, x0, y0, side)
        return [d for d in merge(found, self.detector.config.nms_iou)
                if d.score >= self.sure or (self.verifier is not None and self.confirmed(rgb, d))]


class HaarFinder:
    """OpenCV's frontal-face Haar cascade: boxes only (no keypoints, so no roll), score 1."""

    name = "haar"

    def __init__(self) -> None:
        base = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = Path(base or "") / HAAR_FILE
        if base is None or not path.is_file():
            raise ConfigError(f"OpenCV's {HAAR_FILE} is not installed (opencv-python-headless 5 dropped the cascade "
                              "files): install opencv-python-headless<5, or pass --whole-frame for face crops")
        self.cascade = cv2.CascadeClassifier(str(path))
        self.info: dict[str, Any] = {"name": "haar", "model": HAAR_FILE, "opencv": cv2.__version__}

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        side = max(24, min(rgb.shape[:2]) // 10)
        found = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        return [Detection(tuple(float(v) for v in box), 1.0) for box in found]


def load_finder(name: str = "blazeface") -> tuple[BlazeFaceFinder | HaarFinder, str | None]:
    """The named finder, and None; or, when BlazeFace's model cannot be had, the Haar cascade and why (one line).

    Raises:
        ConfigError: an unknown name, or the Haar cascade is needed but not installed.
    """
    if name not in DETECTORS:
        raise ConfigError(f"--detector must be one of {', '.join(DETECTORS)}, got {name!r}")
    if name == "haar":
        return HaarFinder(), None
    try:
        if name == "blazeface":
            return BlazeFaceFinder("short"), None
        return BlazeFaceFinder("full", zoom="misses"), None
    except ConfigError:
        raise
    except (DataError, OSError, ImportError) as exc:  # no network for the first fetch, a damaged cache
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return HaarFinder(), f"BlazeFace is not available ({reason}); using OpenCV's Haar cascade instead"
