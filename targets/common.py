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
  run it (Core ML on Linux). Other packages open an artifact by its manifest
  entry with :func:`targets.open_artifact`, which picks the module.

Export-only rewrites (layout, fixed resolution) live in :mod:`targets.wrappers`;
the model is never forked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from facemat.errors import ConfigError, FaceMatError

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

    @classmethod
    def from_model(cls, model: nn.Module, layout: str = "NCHW", input_kind: str = "tensor") -> IOSpec:
        """The I/O contract the model declares (``input_spec()`` / ``output_spec()``), in ``layout``.

        Args:
            model: a registry model; its first output is the one that ships (alpha).
            layout: ``"NCHW"`` or ``"NHWC"``, for input and output alike.
            input_kind: ``"tensor"``, or ``"image"`` for a Core ML image input.
        """
        inp, out = model.input_spec(), model.output_spec()[0]
        return cls(input_name=inp.name, output_name=out.name, size=int(inp.shape[-1]), layout=layout,
                   input_kind=input_kind)

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> IOSpec:
        """The contract a manifest entry records (the inverse of :meth:`to_manifest`)."""
        inp = entry["input"]
        size = inp["shape"][2] if inp["layout"] == "NCHW" else inp["shape"][1]
        return cls(input_name=inp["name"], output_name=entry["outputs"][0]["name"], size=int(size),
                   layout=inp["layout"], input_kind=inp.get("kind", "tensor"))

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


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The line of a converter's exception worth showing: MLIR's last ``error:`` line, else the first line."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    err = next((ln for ln in reversed(lines) if "error:" in ln), None)
    return (err or (lines[0] if lines else type(exc).__name__))[:limit]


# --------------------------------------------------------------------------- job checks


def check_precision(who: str, precision: str, offered: Sequence[str]) -> None:
    """Refuse a precision the target does not build (``who`` starts the message, e.g. ``"onnx"``)."""
    if precision not in offered:
        raise ConfigError(f"{who}: precision {precision!r} is not offered; choose one of {', '.join(offered)}")


def check_io(job: ExportJob, source: Source, who: str, layouts: Sequence[str] = ("NCHW", "NHWC"),
             input_kinds: Sequence[str] = ("tensor",)) -> None:
    """Refuse an I/O contract the target cannot present, or one whose size is not the model's."""
    if job.io.layout not in layouts or job.io.input_kind not in input_kinds:
        raise ConfigError(f"{who}: I/O layout {job.io.layout!r} with input kind {job.io.input_kind!r} is not "
                          f"offered; choose layout {' or '.join(layouts)} with input kind {' or '.join(input_kinds)}")
    if job.io.size != source.size:
        raise ConfigError(f"{who}: I/O size {job.io.size} differs from the model's fixed size {source.size} "
                          f"({source.path}); export at size {source.size}")


def check_source(job: ExportJob, source: Source, who: str, needed: str) -> None:
    """Refuse a source of the wrong kind: ``needed`` is ``"checkpoint"`` or the quantize recipe the precision needs."""
    from quantize.core import require_recipe

    if needed == "checkpoint":
        if source.kind != "checkpoint":
            raise ConfigError(f"{who} {job.precision}: needs the FP32 student checkpoint, got a quantized model "
                              f"({source.path}, recipe {source.recipe!r}); pass the checkpoint it came from")
        return
    if source.kind != "quantized" or source.program is None:
        raise ConfigError(f"{who} {job.precision}: needs a model quantized with recipe {needed!r} "
                          f"(python -m quantize.ptq or quantize.qat --recipe {needed}), got the checkpoint "
                          f"{source.path}")
    require_recipe(source.recipe or "", needed, str(source.path))


# --------------------------------------------------------------------------- Core ML deployment targets

# Shared by targets.coreml and the ExecuTorch Core ML delegate. One default for
# every precision, the oldest with the activation quantize ops int8 needs, so
# the artifacts differ only in precision (same opset, same Core ML passes).
COREML_DEFAULT_MIN_DEPLOYMENT = "iOS17"
# Accepted deployment targets, oldest first, and their opset level (a macOS
# release has the opset of the iOS release of the same year).
COREML_TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")
_COREML_LEVEL = {"iOS15": 0, "macOS12": 0, "iOS16": 1, "macOS13": 1, "iOS17": 2, "macOS14": 2, "iOS18": 3,
                 "macOS15": 3}
# Producers of an int8-stored weight in MIL: coremltools 9 emits
# constexpr_affine_dequantize up to iOS17 and constexpr_blockwise_shift_scale
# from iOS18; a converted PT2E program may keep an explicit ``dequantize``.
COREML_INT8_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "dequantize")


def coreml_min_deployment(job: ExportJob, who: str, needed: str) -> str:
    """``options["min_deployment"]`` or the default, refused when older than ``needed`` (the precision's minimum)."""
    name = str(job.options.get("min_deployment") or COREML_DEFAULT_MIN_DEPLOYMENT)
    if name not in _COREML_LEVEL:
        raise ConfigError(f"{who}: min_deployment must be one of {', '.join(COREML_TARGETS)}, got {name!r}")
    if _COREML_LEVEL[name] < _COREML_LEVEL[needed]:
        raise ConfigError(f"{who} {job.precision}: min_deployment {name} is too old; this precision needs "
                          f"{needed} (or the macOS release of the same year) or newer")
    return name
