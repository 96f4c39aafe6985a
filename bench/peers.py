"""Peer models timed side by side with the student: what a face-filter app already runs per frame.

MediaPipe Face Mesh (``face_landmark.tflite``, 192x192) and BlazeFace
(``face_detection_short_range.tflite``, 128x128) are extracted from the
mediapipe wheel by ``python -m facemat.pretrained.fetch --what models`` into
``CACHE/mediapipe`` (pass that folder as ``--peers``). They run in
the same LiteRT interpreter, at the same thread count, in the same bench run, as
the student's ``.tflite`` artifacts. Only latency is measured (they solve other
tasks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PEER_FILES = {"face_landmark": "face_landmark.tflite", "face_detection": "face_detection_short_range.tflite"}


def find_peers(folder: str | Path) -> dict[str, Path]:
    """The peer models present in ``folder`` (name -> path)."""
    d = Path(folder)
    return {name: d / f for name, f in PEER_FILES.items() if (d / f).is_file()}


class PeerRunner:
    """A LiteRT interpreter on the peer's first input; fed a generated face resized to its size.

    Only ``example``, ``prepare`` and ``invoke`` (the timing half of a runner): peers solve
    other tasks, so the worker never scores their outputs."""

    def __init__(self, path: str | Path, threads: int | None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.shape = [int(v) for v in self.input["shape"]]

    def example(self) -> np.ndarray:
        """A procedural face at the peer's input size, float32 in [0, 1], NHWC (MediaPipe's layout) or NCHW."""
        import cv2

        from facemat.data.synth import render_sample

        nchw = self.shape[1] == 3 and self.shape[3] != 3
        h, w = self.shape[2:4] if nchw else self.shape[1:3]
        img = render_sample(7, 0, size=256, split="peer").image
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)[None].astype(np.float32) / 255.0
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if nchw else x

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image, dtype=self.input["dtype"])

    def invoke(self, prepared: np.ndarray) -> Any:
        self.interpreter.set_tensor(self.input["index"], prepared)
        self.interpreter.invoke()


def load_peer_runner(path: str | Path, threads: int | None) -> PeerRunner:
    return PeerRunner(path, threads)
