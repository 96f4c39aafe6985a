"""MediaPipe's selfie segmenter: a person mask for a real photograph.

``selfie_segmentation.tflite`` (``mediapipe==0.10.21`` wheel, Apache-2.0) takes
a 256x256 RGB image in [0, 1] and returns the probability that each pixel shows
a person. The training data uses it to lift the people of the package photos
off their own background before a new one goes behind them
(:mod:`facemat.data.domain`). LiteRT's Python wheel lacks the graph's one custom
op (a transposed convolution), so the graph runs as its PyTorch rebuild
(:func:`facemat.pretrained.tflite.load_tflite`, which matches LiteRT to 1e-4).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

__all__ = ["SelfieSegmenter"]

INPUT_SIZE = 256


class SelfieSegmenter:
    """``segmenter(image) -> person probability``, ``H x W`` float32 in [0, 1].

    Args:
        model: path of ``selfie_segmentation.tflite`` (default: the cached copy,
            fetched on first use).

    Raises:
        CheckpointError: the file is not a TFLite graph this project can rebuild.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None) -> None:
        from facemat.pretrained.tflite import load_tflite

        if model is None:
            from facemat.pretrained.fetch import mediapipe_model

            model = mediapipe_model("selfie_segmentation.tflite")
        self.path = str(model)
        self.graph = load_tflite(self.path)

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Person probability of an ``H x W x 3`` uint8 RGB image (any size), at its size."""
        h, w = image.shape[:2]
        shrink = min(h, w) > INPUT_SIZE
        x = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        t = torch.from_numpy(x.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        prob = self.graph(t)[0].reshape(INPUT_SIZE, INPUT_SIZE).float().numpy()
        return np.clip(cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
