"""Models that start from MediaPipe's selfie segmenter, a network trained on real photographs.

The selfie segmenter (``selfie_segmentation.tflite`` in the ``mediapipe==0.10.21``
wheel, Apache-2.0) separates people from the background at 256x256: 106 k
parameters, about 59 M multiply-accumulates, MobileNetV3-style blocks with
squeeze-and-excite, a light decoder and a final 2x transposed convolution. It is
rebuilt as a trainable PyTorch graph (:mod:`facemat.pretrained.tflite`) and
fine-tuned: what it learned about skin, hair and people on real photos is the
start, not something the procedural generator has to teach.

* ``teacher-selfie``: the whole segmenter at full resolution; its person logit
  becomes the alpha logit, and a small head on its last features (128x128x16)
  adds an alpha correction and the Laplace scale ``b``::

      image -> segmenter -> features (1/2), person logit (1/1)
      features + image/2 -> 2 x (3x3 conv, ReLU) -> 2x transposed conv -> (d_alpha, s)
      alpha = sigmoid(person logit + d_alpha);  b = softplus(s) + eps

  The correction starts at zero, so step 0 predicts MediaPipe's person mask.
* ``student-selfie``: the segmenter on the image average-pooled 2x (128x128 for a
  256 crop, about 15 M MACs), its logit bilinearly upsampled 2x, then the sigmoid.

The 2x average pool of the image is a fixed depthwise convolution (weights
``1/4``, stride 2; :class:`ImagePool`), not ``avg_pool2d``: the PT2E quantizers
(XNNPACK, litert-torch) leave ``avg_pool2d`` unannotated, and in litert-torch's
full-integer conversion the first conv's input ``QUANTIZE`` then moves up through
the pool onto the graph input, so the ``.tflite`` would take an int8 image. A
convolution is quantized like the first layer of any other student: float32
image in, ``QUANTIZE`` inside the model. Same values as ``avg_pool2d`` up to
float rounding (a sum of quarters instead of a quarter of a sum).

The graph's structure is part of the config (a JSON-able op list, no weights),
so a checkpoint loads without the ``.tflite`` file. A fresh build
(``build_model("teacher-selfie")``) reads the structure and MediaPipe's weights
from the cached file (:func:`facemat.pretrained.fetch.mediapipe_model`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facemat.errors import ConfigError
from facemat.models.matting import ModelContract

SOURCE_FILE = "selfie_segmentation.tflite"
FEATURES = "add_13__xeno_compat__1"  # 1/2-resolution features, input of the final transposed conv
LOGIT = "segment"  # full-resolution person logit, before the graph's sigmoid
# Cost limits on a config read from a checkpoint (a graph is data from a file).
MAX_OPS = 1000
MAX_HIDDEN = 256


@dataclass(frozen=True)
class SelfieConfig:
    """Architecture settings; stored in every checkpoint.

    Attributes:
        size: default input size (H = W), a multiple of ``32 * low_res``; export resolution.
        low_res: the segmenter runs on the image average-pooled by this factor (1 or 2).
        hidden: channels of the teacher's head.
        graph: the segmenter's structure (:func:`facemat.pretrained.tflite.read_graph`);
            ``None`` in a registry default: read from the cached MediaPipe file at build.
        source: where the initial weights came from (file, package, sha256, licence).
    """

    size: int = 256
    low_res: int = 1
    hidden: int = 24
    graph: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    source: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.low_res not in (1, 2):
            raise ConfigError(f"low_res must be 1 or 2, got {self.low_res!r}")
        if not isinstance(self.size, int) or self.size <= 0 or self.size % (32 * self.low_res):
            raise ConfigError(f"size must be a positive multiple of {32 * self.low_res}, got {self.size!r}")
        if not isinstance(self.hidden, int) or not 1 <= self.hidden <= MAX_HIDDEN:
            raise ConfigError(f"hidden must be an integer in [1, {MAX_HIDDEN}], got {self.hidden!r}")
        if self.graph is not None:
            ops = self.graph.get("ops") if isinstance(self.graph, dict) else None
            if not isinstance(ops, list) or not 0 < len(ops) <= MAX_OPS:
                raise ConfigError(f"graph must hold between 1 and {MAX_OPS} ops")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _backbone(cfg: SelfieConfig, outputs: list[str]) -> tuple[nn.Module, SelfieConfig, dict | None]:
    """The segmenter graph; for a config without a graph, also MediaPipe's weights."""
    from facemat.pretrained.tflite import TFLiteGraph, read_graph, read_weights

    weights = None
    if cfg.graph is None:
        from facemat.pretrained.fetch import ASSETS, mediapipe_model

        path = mediapipe_model(SOURCE_FILE)
        graph = read_graph(path)
        weights = read_weights(path, graph)
        a = ASSETS[SOURCE_FILE]
        source = {"file": SOURCE_FILE, "package": a.package, "member": a.member, "sha256": a.sha256,
                  "licence": "Apache-2.0"}
        cfg = dataclasses.replace(cfg, graph=graph, source=source)
    return TFLiteGraph(cfg.graph, outputs=outputs), cfg, weights


class ImagePool(nn.Module):
    """``factor`` x ``factor`` average pool of an ``N x C x H x W`` image as a fixed depthwise convolution.

    Equal to ``F.avg_pool2d(x, factor)`` up to float rounding, but a ``conv2d``
    that PT2E quantizers annotate (see the module docstring). The kernel is a
    non-persistent buffer: not trained, not in ``state_dict`` (checkpoints are
    unchanged), and exact in int8 per-channel symmetric quantization (each
    channel's only value is its maximum, so it quantizes to 127 * scale).

    A ReLU follows the conv: an identity on an image in [0, 1] (the models'
    input contract), fused into the conv by the quantizers and converters. It
    is there for litert-torch's layout pass, which leaves a ``conv -> pad ->
    conv`` chain in NCHW (a PAD between two TRANSPOSEs: the first SAME conv of
    the segmenter pads this output) but fuses the pad when an activation
    separates it from the conv, as everywhere else in the graph.
    """

    kernel: torch.Tensor

    def __init__(self, factor: int, channels: int = 3):
        super().__init__()
        if factor < 1:
            raise ConfigError(f"pool factor must be >= 1, got {factor!r}")
        self.factor = factor
        self.register_buffer("kernel", torch.full((channels, 1, factor, factor), 1.0 / factor ** 2),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.kernel, None, self.factor, 0, 1, self.kernel.shape[0]))


class _SelfieBase(ModelContract, nn.Module):
    def _load_pretrained(self, weights: dict | None) -> None:
        if weights is not None:
            self.backbone.load_state_dict(weights, strict=True)


class SelfieTeacher(_SelfieBase):
    """Teacher from the selfie segmenter: ``forward(image) -> (alpha, b)``, both ``N x 1 x H x W``.

    ``image``: ``N x 3 x H x W`` RGB in [0, 1]; alpha in [0, 1]; ``b > 0``.
    """

    output_names = ("alpha", "b")
    eps = 1e-3

    def __init__(self, cfg: SelfieConfig):
        super().__init__()
        self.backbone, self.config, weights = _backbone(cfg, [FEATURES, LOGIT])
        self._load_pretrained(weights)
        self.pool = ImagePool(self.config.low_res)
        h = self.config.hidden
        self.head = nn.Sequential(
            nn.Conv2d(16 + 3, h, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, padding=1), nn.ReLU(inplace=True),
        )
        self.up = nn.ConvTranspose2d(h, 2, 2, stride=2)
        with torch.no_grad():  # start from MediaPipe's mask (no correction) and b about 0.1
            self.up.weight[:, 0].zero_()
            self.up.bias.copy_(torch.tensor([0.0, -2.25]))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool(image) if self.config.low_res > 1 else image
        feats, logit = self.backbone(x)  # N x 16 x H/2 x W/2, N x 1 x H x W
        out = self.up(self.head(torch.cat([feats, F.avg_pool2d(x, 2)], 1)))  # N x 2 x H x W
        if self.config.low_res > 1:
            logit = F.interpolate(logit, scale_factor=self.config.low_res, mode="bilinear", align_corners=False)
            out = F.interpolate(out, scale_factor=self.config.low_res, mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(logit + out[:, 0:1])
        b = F.softplus(out[:, 1:2]) + self.eps
        return alpha, b


class SelfieStudent(_SelfieBase):
    """Student from the selfie segmenter at low resolution: ``forward(image) -> alpha`` (``N x 1 x H x W``)."""

    output_names = ("alpha",)

    def __init__(self, cfg: SelfieConfig):
        super().__init__()
        self.backbone, self.config, weights = _backbone(cfg, [LOGIT])
        self._load_pretrained(weights)
        self.pool = ImagePool(self.config.low_res)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        r = self.config.low_res
        x = self.pool(image) if r > 1 else image
        (logit,) = self.backbone(x)
        if r > 1:
            logit = F.interpolate(logit, scale_factor=r, mode="bilinear", align_corners=False)
        return torch.sigmoid(logit)
