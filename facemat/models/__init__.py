"""Model registry: named builders for the FaceMat family.

Variants are named builders; a checkpoint stores the name and the config
dataclass, so loading needs no flags::

    model = build_model("student")
    model = build_model("teacher", size=512)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from facemat.errors import ConfigError
from facemat.models.matting import (
    FaceMatStudent,
    FaceMatTeacher,
    MatteNetConfig,
    TensorSpec,
    check_input,
)
from facemat.models.selfie import SelfieConfig, SelfieStudent, SelfieTeacher

__all__ = [
    "FaceMatStudent",
    "FaceMatTeacher",
    "MatteNetConfig",
    "TensorSpec",
    "build_model",
    "check_input",
    "list_models",
    "model_class",
    "model_kind",
    "register_model",
]

_REGISTRY: dict[str, tuple[type[nn.Module], Any]] = {}


def register_model(name: str, cls: type[nn.Module], cfg: Any) -> None:
    """Register a named variant: a model class and its default config."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = (cls, cfg)


def list_models() -> list[str]:
    """Names of all registered variants, in registration order."""
    return list(_REGISTRY)


def default_config(name: str) -> Any:
    """The registered default config of variant ``name``."""
    _check_name(name)
    return _REGISTRY[name][1]


def model_class(name: str) -> type[nn.Module]:
    """The class a registered variant builds (without building it)."""
    _check_name(name)
    return _REGISTRY[name][0]


def model_kind(name: str) -> str:
    """``"student"`` or ``"teacher"`` for a registered variant."""
    _check_name(name)
    return "teacher" if "b" in _REGISTRY[name][0].output_names else "student"


def build_model(name: str, config: Any = None, **overrides) -> nn.Module:
    """Build variant ``name``.

    Args:
        name: a registered variant (see ``list_models()``).
        config: a full config (dataclass or dict, as stored in a checkpoint);
            defaults to the variant's registered config.
        **overrides: config fields to replace, e.g. ``size=512``.
    """
    _check_name(name)
    cls, default = _REGISTRY[name]
    config_cls = type(default)
    if config is None:
        cfg = default
    elif isinstance(config, config_cls):
        cfg = config
    else:
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"config for model {name!r} has unknown fields {unknown}")
        cfg = config_cls(**config)
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config_cls)})
        if unknown:
            raise ConfigError(f"unknown config fields {unknown} for model {name!r}")
        cfg = dataclasses.replace(cfg, **overrides)
    model = cls(cfg)
    model.arch = name  # the registry name, stored in checkpoints
    return model


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(_REGISTRY)}")


# The shipped student: the encoder and decoder see the image average-pooled 2x,
# and the logits are upsampled to full resolution (~10 M MACs at 256x256). It is
# the variant whose int8 LiteRT build runs as fast as MediaPipe Face Mesh here.
register_model("student", FaceMatStudent, MatteNetConfig(head="upsample", low_res=2))
# The student's layout, wider and deeper (~25 M MACs at 256x256): more room to
# follow the teacher on faces the generator never drew. Its int8 LiteRT build ran
# at 0.86-1.02 ms beside Face Mesh's 1.17 ms here (docs/results.md). It starts from
# a trained `student` grown to this size (facemat.models.grow; --init). Shipped.
register_model("student-wide", FaceMatStudent,
               MatteNetConfig(stem=16, widths=(24, 32, 64, 96), depths=(1, 2, 3, 3), decoder=(64, 32, 24, 16),
                              head="upsample", low_res=2))
# Same low-resolution body with a fast guided-filter head: sharper edges, but its
# int8 full-resolution multiply-and-sum costs ~0.7 ms more in LiteRT on this CPU.
register_model("student-guided", FaceMatStudent, MatteNetConfig(head="guided", low_res=2))
# Everything at full resolution with a 1x1 refiner (~44 M MACs): the best
# matting of the three, 2-3x the latency of Face Mesh in LiteRT here.
register_model("student-full", FaceMatStudent, MatteNetConfig())
register_model(
    "teacher",
    FaceMatTeacher,
    MatteNetConfig(
        stem=16, widths=(32, 48, 96, 160), depths=(2, 3, 3, 3), expand=4, decoder=(96, 64, 32, 16), refine=16
    ),
)
# Started from MediaPipe's selfie segmenter (trained on real photos; see
# facemat.models.selfie): the teacher at full resolution with an uncertainty head,
# the student on the 2x-pooled image (~15 M MACs at 256x256).
register_model("teacher-selfie", SelfieTeacher, SelfieConfig())
register_model("student-selfie", SelfieStudent, SelfieConfig(low_res=2))
