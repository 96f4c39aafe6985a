"""What every export target shares: the source an artifact is built from, the job, the result.

Each target module (``targets.executorch``, ``targets.coreml``, ``targets.tflite``,
``targets.onnx``) exposes the same three things:

* ``PRECISIONS``: a dict ``precision -> source kind`` (``"checkpoint"`` for an
  FP32 student, or the quantize recipe name whose result it needs, e.g.
  ``"xnnpack"``); the export CLI uses it to build the ``--all`` matrix;
* ``build(job, source) -> BuiltArtifact``: write the artifact to ``job.path``
  (atomically: temp name, then rename) and verify what can be verified
  without running it (delegation, op set, weight precision, I/O spec);
* ``load_runner(path, io, threads=None) -> Runner``: load the saved file in its
  own runtime; raises :class:`RuntimeUnavailable` where this platform cannot
  run it (Core ML on Linux). The bench harness reuses these runners.

Export-only rewrites (layout, fixed resolution) live in :mod:`targets.wrappers`;
the model is never forked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn

from facemat.errors import FaceMatError

TARGETS = ("executorch", "coreml", "tflite", "onnx")


class ExportError(FaceMatError):
    """An export step failed in a way the user must act on (not delegated, parity exceeded, ...)."""


class RuntimeUnavailable(FaceMatError):
    """This platform has no runtime for the artifact (e.g. Core ML prediction off macOS)."""


@dataclass(frozen=True)
class Source:
    """What an artifact is built from.

    Attributes:
        kind: ``"checkpoint"`` (an FP32 student) or ``"quantized"`` (a QAT/PTQ result).
        path: the checkpoint ``.pt`` or the quantized ``model.pt2``.
        sha256: hash of that file.
        model: the FP32 eager student, eval mode (for a quantized source: the
            float checkpoint it came from). ``forward(image) -> alpha``, image
            ``1 x 3 x S x S`` RGB float in [0, 1], alpha ``1 x 1 x S x S`` in [0, 1].
        size: S, the model's fixed input size.
        program: the converted int8 program (batch 1, size S) for a quantized source.
        recipe: the quantize recipe name (``xnnpack``, ``coreml``, ``litert``) or None.
        recipe_info: the full ``recipe.json`` of a quantized source, else None.
    """

    kind: str
    path: Path
    sha256: str
    model: nn.Module
    size: int
    program: torch.export.ExportedProgram | None = None
    recipe: str | None = None
    recipe_info: dict[str, Any] | None = None


@dataclass(frozen=True)
class IOSpec:
    """The artifact's tensors as an app sees them.

    ``layout`` is ``"NCHW"`` or ``"NHWC"`` and applies to the input and the output.
    ``input_kind`` is ``"tensor"`` or ``"image"`` (Core ML image input: the app
    passes a ``CVPixelBuffer``; values 0-255 are scaled to [0, 1] inside the model).
    """

    input_name: str = "image"
    output_name: str = "alpha"
    size: int = 256
    layout: str = "NCHW"
    input_kind: str = "tensor"

    def input_shape(self) -> list[int]:
        s = self.size
        return [1, 3, s, s] if self.layout == "NCHW" else [1, s, s, 3]

    def output_shape(self) -> list[int]:
        s = self.size
        return [1, 1, s, s] if self.layout == "NCHW" else [1, s, s, 1]

    def to_manifest(self, dtype: str = "float32") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``(input spec, [output spec])`` as written into manifest.json."""
        value_range = [0, 255] if self.input_kind == "image" else [0.0, 1.0]
        inp = {"name": self.input_name, "shape": self.input_shape(), "dtype": dtype, "layout": self.layout,
               "value_range": value_range, "kind": self.input_kind, "colour": "RGB"}
        out = [{"name": self.output_name, "shape": self.output_shape(), "dtype": dtype, "layout": self.layout,
                "value_range": [0.0, 1.0], "meaning": "alpha matte: 1 = face, 0 = background or occluder"}]
        return inp, out


@dataclass(frozen=True)
class ExportJob:
    """One artifact to build.

    Attributes:
        target: one of :data:`TARGETS`.
        precision: a key of the target's ``PRECISIONS``.
        path: where the artifact goes (a file, or a ``.mlpackage`` folder).
        io: the I/O contract the artifact must present.
        delegate: ExecuTorch only: ``"xnnpack"`` or ``"coreml"``; None elsewhere.
        options: target-specific switches (``allow_portable``, ``bundled``,
            ``min_deployment``, ``calib_images``: a list of ``1x3xSxS`` float arrays ...).
    """

    target: str
    precision: str
    path: Path
    io: IOSpec
    delegate: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuiltArtifact:
    """What ``build`` returns.

    Attributes:
        path: the written artifact.
        io: its I/O contract.
        dtype: dtype of the input and output tensors the app feeds/reads (``float32``
            for every artifact here; int8 models keep float I/O with quantize/dequantize inside).
        runs_here: False where this platform has no runtime for it.
        not_run_reason: why not (goes into the manifest), when ``runs_here`` is False.
        checks: what was verified without running it, e.g. ``{"delegation": {...}}``,
            ``{"mil_ops": [...], "weight_dtypes": {...}}``; goes into the manifest.
        converter: name -> version of the converter packages used.
        runtime: name -> version of the runtime that loads it (even where it cannot run here).
        extra_files: other files written beside it (e.g. a bundled program), relative names.
    """

    path: Path
    io: IOSpec
    dtype: str = "float32"
    runs_here: bool = True
    not_run_reason: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)
    converter: dict[str, str] = field(default_factory=dict)
    runtime: dict[str, str] = field(default_factory=dict)
    extra_files: list[str] = field(default_factory=list)


class Runner(Protocol):
    """A loaded artifact. ``__call__`` takes the image as ``1 x 3 x S x S`` float32 NCHW
    in [0, 1] (the runner converts to the artifact's layout/kind) and returns alpha as
    ``1 x 1 x S x S`` float32 NCHW. ``invoke`` runs the artifact on input already in its
    own layout (for latency measurement, pre/post-processing excluded)."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...

    def prepare(self, image: np.ndarray) -> Any: ...

    def invoke(self, prepared: Any) -> Any: ...


def versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (``"missing"`` if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "missing"
    return out


def to_layout(image: np.ndarray, layout: str) -> np.ndarray:
    """``1 x 3 x S x S`` NCHW -> the artifact's layout (contiguous float32)."""
    x = image.astype(np.float32, copy=False)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if layout == "NHWC" else x)


def from_layout(alpha: np.ndarray, layout: str) -> np.ndarray:
    """The artifact's alpha (``1 x 1 x S x S`` or ``1 x S x S x 1``) -> NCHW float32."""
    a = np.asarray(alpha, dtype=np.float32)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2) if layout == "NHWC" else a)


@dataclass
class SimpleRunner:
    """A :class:`Runner` from two functions: ``invoke(prepared) -> raw output`` and the layout."""

    io: IOSpec
    invoke_fn: Callable[[np.ndarray], Any]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return to_layout(image, self.io.layout)

    def invoke(self, prepared: np.ndarray) -> Any:
        return self.invoke_fn(prepared)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return from_layout(self.invoke(self.prepare(image)), self.io.layout)
