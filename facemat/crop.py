"""The crop contract: how a face detection becomes the model's input, and how alpha goes back.

Artifacts take a face crop, never a frame. Every stage that turns a frame into
model input does it with this module, and every artifact's manifest records
:meth:`CropSpec.to_manifest`, so an app can feed the model exactly what it was
trained on (``docs/mobile.md`` shows the same steps in Swift and Kotlin):

1. **Box to square.** The detector's box (frame pixels) gives the side
   ``side = scale * max(box w, box h)``.
2. **Centre and margin.** The square's centre is the box centre moved
   ``shift_up * side`` towards the top of the head.
3. **Roll.** With ``roll="eyes"``, the square turns with the line from the
   right eye to the left eye (BlazeFace's first two keypoints; MediaPipe's own
   face-landmark crop uses the same two), so the face comes out upright;
   detectors without eye points give roll 0.
4. **Resize.** Model pixel ``(u, v)`` samples frame point
   ``c + R(angle) @ ((u + 0.5 - S/2, v + 0.5 - S/2) * side / S)``: pixel
   centres, as a bilinear resize with ``align_corners=False``. Outside the
   frame the edge pixels repeat. A crop more than twice the model's side is
   first shrunk with area averaging (less aliasing than bilinear alone).
5. **Paste back.** The alpha is multiplied by a feather ramp that falls from 1
   to 0 over the outer ``feather * S`` model pixels of each crop edge (no hard
   seam where a crop edge cuts through skin), then warped back bilinearly onto
   the frame; it is 0 outside the crop.

The default ``scale`` and ``shift_up`` frame a BlazeFace box the way the
training faces are framed: ``python -m bench.detect --what framing`` measures
BlazeFace's boxes on generated 256x256 training samples (the ``synth`` and
``real`` sources) and prints the crop side and centre offset per box side
that reproduce the training crop; the defaults below are those medians (see
``docs/results.md``). Other detectors draw their boxes differently (OpenCV's
Haar box is larger, Vision's and ML Kit's differ again): their scale and shift
are measured the same way or checked on screen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from facemat.errors import ConfigError

__all__ = ["CROP_FORMAT", "Crop", "CropSpec", "DEFAULT", "crop_for", "extract", "feather_ramp", "paste"]

CROP_FORMAT = "facemat-crop/1"
ROLLS = ("eyes", "none")


@dataclass(frozen=True)
class CropSpec:
    """The crop contract's settings.

    Attributes:
        scale: crop side / detector box side (box side = the longer of width and height).
        shift_up: how far the crop centre lies above the box centre, as a fraction
            of the crop side, along the face's own up direction.
        roll: ``"eyes"`` (turn the crop with the eye line when the detector gives
            eye keypoints) or ``"none"`` (always upright in the frame).
        feather: width of the paste-back ramp, as a fraction of the crop side.
    """

    scale: float = 2.4
    shift_up: float = 0.06
    roll: str = "eyes"
    feather: float = 0.05

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 1.0 <= self.scale <= 5.0):
            raise ConfigError(f"crop scale must be between 1 and 5 (crop side per box side), got {self.scale}")
        if not (math.isfinite(self.shift_up) and -0.5 <= self.shift_up <= 0.5):
            raise ConfigError(f"crop shift_up must be between -0.5 and 0.5 (of the crop side), got {self.shift_up}")
        if self.roll not in ROLLS:
            raise ConfigError(f"crop roll must be one of {', '.join(ROLLS)}, got {self.roll!r}")
        if not (math.isfinite(self.feather) and 0.0 <= self.feather <= 0.25):
            raise ConfigError(f"crop feather must be between 0 and 0.25 (of the crop side), got {self.feather}")

    def to_manifest(self) -> dict[str, Any]:
        """The record every artifact's manifest entry carries under ``"crop"``."""
        return {"format": CROP_FORMAT, **asdict(self), "box_side": "max(width, height)",
                "centre": "box centre + shift_up * side towards the top of the head",
                "roll_from": "right eye -> left eye keypoints (BlazeFace 0 -> 1)" if self.roll == "eyes" else None,
                "sampling": "bilinear, pixel centres (align_corners=False), edge pixels repeat outside the frame; "
                            "area pre-shrink when the crop side exceeds twice the model input",
                "paste": "alpha * feather ramp (0 at the crop edge, 1 at feather * side inside), bilinear, "
                         "0 outside the crop"}

    @classmethod
    def from_manifest(cls, record: Any, where: str = "manifest") -> "CropSpec":
        """The spec recorded in a manifest entry; ConfigError names what is wrong with it."""
        if not isinstance(record, dict) or record.get("format") != CROP_FORMAT:
            found = record.get("format") if isinstance(record, dict) else type(record).__name__
            raise ConfigError(f"{where}: crop record has format {found!r}, expected {CROP_FORMAT!r}")
        try:
            return cls(scale=float(record["scale"]), shift_up=float(record["shift_up"]), roll=str(record["roll"]),
                       feather=float(record["feather"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: crop record is missing or has a bad field ({exc})") from None


DEFAULT = CropSpec()
"""The contract every stage uses unless an artifact's manifest records another."""


@dataclass(frozen=True)
class Crop:
    """A square region of a frame: centre ``(cx, cy)`` and ``side`` in frame pixels, ``angle`` in radians.

    ``angle`` is the direction of the crop's x axis in the frame (image axes, y
    down): 0 is upright, positive turns the square clockwise on screen.
    """

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def matrix(self, size: int) -> np.ndarray:
        """``2 x 3`` affine: frame pixel coordinates -> model pixel coordinates (pixel centres at integers)."""
        k = size / self.side
        c, s = math.cos(self.angle), math.sin(self.angle)
        # u = k * ((x + 0.5 - cx) c + (y + 0.5 - cy) s) + S/2 - 0.5, v likewise with (-s, c).
        rot = k * np.array([[c, s], [-s, c]])
        t = rot @ np.array([0.5 - self.cx, 0.5 - self.cy]) + (size / 2 - 0.5)
        return np.concatenate([rot, t[:, None]], 1)

    def corners(self) -> np.ndarray:
        """``(4, 2)`` frame points (pixel edges) of the square's corners: top left, top right, bottom right, bottom left."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        h = self.side / 2
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        return local @ np.array([[c, s], [-s, c]]) + np.array([self.cx, self.cy])

    def bounds(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the integer pixel rectangle of the frame the crop touches (may be empty)."""
        pts = self.corners()
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))


def crop_for(box: Sequence[float], spec: CropSpec = DEFAULT, roll: float | None = None) -> Crop:
    """The crop of one detection.

    Args:
        box: ``(x, y, w, h)`` in frame pixels (origin top left, pixel edges).
        spec: the contract.
        roll: the eye-line angle in radians (``Detection.roll()``); None when the
            detector gives no eyes. Ignored unless ``spec.roll == "eyes"``.
    """
    x, y, w, h = (float(v) for v in box)
    side = spec.scale * max(w, h)
    angle = float(roll) if (spec.roll == "eyes" and roll is not None and math.isfinite(roll)) else 0.0
    up = np.array([math.sin(angle), -math.cos(angle)])  # the face's up direction in the frame
    cx, cy = np.array([x + w / 2, y + h / 2]) + spec.shift_up * side * up
    return Crop(float(cx), float(cy), float(side), angle)


def extract(frame: np.ndarray, crop: Crop, size: int) -> np.ndarray:
    """The model input of one crop: ``size x size x C`` (same dtype as ``frame``).

    Args:
        frame: ``H x W x C`` (uint8 RGB in the demo).
        crop: from :func:`crop_for`.
        size: the model's input side.
    """
    m = crop.matrix(size)
    src = frame
    shrink = size * 2.0 / crop.side
    if shrink < 1.0:
        # Area-average the frame region the crop touches down to twice the model's
        # resolution, then warp: bilinear alone aliases when it skips pixels.
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = crop.bounds(h, w)
        x0, y0, x1, y1 = max(0, x0 - 2), max(0, y0 - 2), min(w, x1 + 2), min(h, y1 + 2)
        if x1 > x0 and y1 > y0:
            region = frame[y0:y1, x0:x1]
            rw, rh = max(1, round((x1 - x0) * shrink)), max(1, round((y1 - y0) * shrink))
            src = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
            sx, sy = (x1 - x0) / rw, (y1 - y0) / rh
            # Region pixel (i, j) covers frame [x0 + i*sx, x0 + (i+1)*sx): its centre is frame x0 + (i + 0.5) sx - 0.5.
            to_frame = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5], [0, 0, 1]])
            m = m @ to_frame
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def feather_ramp(size: int, feather: float) -> np.ndarray:
    """``size x size`` float32: 1 inside, falling linearly to 0 at the crop's edges over ``feather * size`` pixels."""
    if feather <= 0:
        return np.ones((size, size), np.float32)
    d = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size))  # distance of pixel centres to the edge
    ramp = np.clip(d / (feather * size), 0.0, 1.0).astype(np.float32)
    return np.minimum(ramp[:, None], ramp[None, :])


def paste(alpha: np.ndarray, crop: Crop, height: int, width: int, feather: float = DEFAULT.feather) -> np.ndarray:
    """The crop's alpha on the frame: ``height x width`` float32 in [0, 1], 0 outside the crop.

    Args:
        alpha: ``S x S`` float in [0, 1], the model's output for ``extract(frame, crop, S)``.
        crop: the crop it came from.
        height, width: the frame's size.
        feather: the contract's feather (fraction of the crop side).
    """
    size = alpha.shape[0]
    a = np.clip(alpha.astype(np.float32), 0.0, 1.0) * feather_ramp(size, feather)
    out = cv2.warpAffine(a, crop.matrix(size), (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.clip(out, 0.0, 1.0)
