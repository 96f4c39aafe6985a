"""The FaceMat model family: a small student (alpha) and a larger teacher (alpha, b).

Both share one layout, sized by :class:`MatteNetConfig`::

    image (RGB, [0,1], N x 3 x H x W)
      -> normalise
      -> stem (3x3 s2)                             1/2
      -> encoder stages (inverted residuals)       1/4 1/8 1/16 1/32
      -> decoder (upsample + skip concat)          back to 1/2
      -> refiner: coarse head at 1/2, plus a cheap per-pixel (1x1 conv)
         correction at full resolution from the upsampled features and the image
      -> alpha (sigmoid)            [teacher also: b = softplus + eps]

The only full-resolution work is two 1x1 convolutions: full-resolution 3x3
convolutions are what make small matting nets slow on phones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facemat.errors import ConfigError
from facemat.models.blocks import ConvBNReLU, EncoderStage, UpStage, upsample2x

# Normalisation is part of the model so every exported artifact takes the same
# RGB [0, 1] input: x -> (x - 0.5) / 0.25.
_MEAN = 0.5
_STD = 0.25


@dataclass(frozen=True)
class MatteNetConfig:
    """Architecture settings; stored in every checkpoint.

    Attributes:
        stem: channels of the stride-2 stem (1/2 resolution).
        widths: channels of the encoder stages at 1/4, 1/8, 1/16, 1/32.
        depths: inverted-residual blocks per encoder stage.
        expand: expansion ratio of the inverted residuals.
        decoder: channels of the decoder at 1/16, 1/8, 1/4, 1/2.
        refine: hidden channels of the full-resolution refiner (``head="refine"``).
        size: default input size (H = W), a multiple of 32; export resolution.
        head: ``"refine"``: coarse 1x1 prediction at 1/2 plus a two-layer 1x1
            correction at full resolution from the upsampled features and the
            image; ``"guided"``: a guided-filter head that predicts, at low
            resolution, a per-pixel linear map of the image colours (``A``, 3
            channels) and an offset (``b``), upsamples them and evaluates
            ``A . image + b`` at full resolution: four cheap element-wise passes;
            ``"upsample"``: a 1x1 prediction at low resolution, bilinearly
            upsampled (the logits, before the sigmoid): one full-resolution resize.
        low_res: the encoder and decoder run on the image average-pooled by this
            factor (1 or 2); the head brings the result back to full resolution.
    """

    stem: int = 8
    widths: tuple[int, ...] = (16, 24, 40, 64)
    depths: tuple[int, ...] = (1, 2, 2, 2)
    expand: int = 3
    decoder: tuple[int, ...] = (40, 24, 16, 8)
    refine: int = 8
    size: int = 256
    head: str = "refine"
    low_res: int = 1

    def __post_init__(self) -> None:
        # Checkpoints store tuples as JSON lists; normalise so configs compare equal.
        for name in ("widths", "depths", "decoder"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.widths) != 4 or len(self.depths) != 4 or len(self.decoder) != 4:
            raise ConfigError("widths, depths and decoder must each have 4 entries (1/4 .. 1/32 and 1/16 .. 1/2)")
        if min(self.widths + self.depths + self.decoder + (self.stem, self.expand, self.refine)) < 1:
            raise ConfigError("all channel counts, depths and the expansion ratio must be >= 1")
        if self.size <= 0 or self.size % 32:
            raise ConfigError(f"size must be a positive multiple of 32, got {self.size}")
        from facemat.safety import MAX_CHANNELS, MAX_DEPTH, MAX_EXPAND, MAX_SIZE

        for name, value, limit in (("channels", max(self.widths + self.decoder + (self.stem, self.refine)),
                                    MAX_CHANNELS), ("depths", max(self.depths), MAX_DEPTH),
                                   ("expand", self.expand, MAX_EXPAND), ("size", self.size, MAX_SIZE)):
            if value > limit:
                raise ConfigError(f"{name} {value} is above the limit of {limit}")
        if self.head not in ("refine", "guided", "upsample"):
            raise ConfigError(f"head must be 'refine', 'guided' or 'upsample', got {self.head!r}")
        if self.low_res not in (1, 2):
            raise ConfigError(f"low_res must be 1 or 2, got {self.low_res!r}")
        if self.size % (32 * self.low_res):
            raise ConfigError(f"size must be a multiple of {32 * self.low_res} with low_res {self.low_res}, "
                              f"got {self.size}")
        if self.head == "refine" and self.low_res != 1:
            raise ConfigError("low_res 2 needs head='guided' or 'upsample' (the refine head upsamples by 2 only)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model, as every exporter must honour it."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NCHW"
    value_range: tuple[float, float] = (0.0, 1.0)
    color: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_input(image: torch.Tensor, multiple: int = 32) -> None:
    """Raise ``ConfigError`` unless ``image`` is ``N x 3 x H x W`` with H, W multiples of ``multiple``
    (32, or 64 for a ``low_res=2`` model: see ``input_multiple``)."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ConfigError(f"expected an N x 3 x H x W RGB tensor, got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if h % multiple or w % multiple:
        raise ConfigError(f"H and W must be multiples of {multiple}, got {h}x{w}")


class Encoder(nn.Module):
    """Stem plus four strided stages; returns features at 1/2, 1/4, 1/8, 1/16, 1/32."""

    def __init__(self, cfg: MatteNetConfig):
        super().__init__()
        self.stem = ConvBNReLU(3, cfg.stem, kernel=3, stride=2)
        chans = (cfg.stem,) + cfg.widths
        self.stages = nn.ModuleList(
            EncoderStage(chans[i], chans[i + 1], cfg.depths[i], cfg.expand) for i in range(4)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class Decoder(nn.Module):
    """U-Net decoder from 1/32 back to 1/2 with skip connections."""

    def __init__(self, cfg: MatteNetConfig):
        super().__init__()
        skips = (cfg.widths[2], cfg.widths[1], cfg.widths[0], cfg.stem)  # 1/16 .. 1/2
        cins = (cfg.widths[3],) + cfg.decoder[:3]
        self.ups = nn.ModuleList(UpStage(cins[i], skips[i], cfg.decoder[i]) for i in range(4))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            x = up(x, skip)
        return x


class Refiner(nn.Module):
    """Coarse prediction at 1/2 resolution plus a per-pixel full-resolution correction.

    ``out = up(coarse(h)) + fine(cat(up(h), image))`` where ``fine`` is two 1x1
    convolutions: it sharpens edges from the full-resolution colours at a cost of
    ``H * W * ((C + 3) * hidden + hidden * out)`` MACs.
    """

    def __init__(self, cin: int, hidden: int, cout: int):
        super().__init__()
        self.coarse = nn.Conv2d(cin, cout, kernel_size=1)
        self.fine = nn.Sequential(ConvBNReLU(cin + 3, hidden, kernel=1), nn.Conv2d(hidden, cout, kernel_size=1))

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        coarse = upsample2x(self.coarse(h))
        fine = self.fine(torch.cat([upsample2x(h), image], dim=1))
        return coarse + fine  # N x cout x H x W logits


def _upsample(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class GuidedHead(nn.Module):
    """Fast guided-filter head (after Wu et al., CVPR 2018, as used by RVM).

    At low resolution a 1x1 convolution predicts, per output, a linear map of
    the three image colours ``A`` and an offset ``b``; both are upsampled
    bilinearly and evaluated at full resolution: ``out = sum_c A_c * image_c + b``.
    Edges follow the full-resolution colours, while the full-resolution cost is
    a resize, a multiply, a 3-to-1 channel sum and an add per output.
    """

    def __init__(self, cin: int, cout: int, scale: int):
        super().__init__()
        self.scale = float(scale)
        self.coef = nn.Conv2d(cin, 3 * cout, kernel_size=1)
        self.offset = nn.Conv2d(cin, cout, kernel_size=1)
        # Fixed 3->1 channel sum per output, as a convolution: every target lowers it.
        ones = torch.zeros(cout, 3 * cout, 1, 1)
        for k in range(cout):
            ones[k, 3 * k:3 * k + 3] = 1.0
        self.register_buffer("channel_sum", ones, persistent=False)

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        cout = self.offset.out_channels
        a = _upsample(self.coef(h), self.scale)  # N x 3*cout x H x W
        guide = image if cout == 1 else image.repeat(1, cout, 1, 1)
        return F.conv2d(a * guide, self.channel_sum) + _upsample(self.offset(h), self.scale)  # N x cout x H x W


class UpsampleHead(nn.Module):
    """A 1x1 prediction at low resolution, upsampled bilinearly to full resolution.

    Upsampling logits (not alpha) keeps edges steep after the sigmoid; the only
    full-resolution work is one resize.
    """

    def __init__(self, cin: int, cout: int, scale: int):
        super().__init__()
        self.scale = float(scale)
        self.pred = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return _upsample(self.pred(h), self.scale)  # N x cout x H x W logits


class ModelContract:
    """The I/O contract every FaceMat model declares from its ``config`` (``size``, ``low_res``)
    and ``output_names``: what exporters, the bench and the docs read instead of repeating it."""

    output_names: tuple[str, ...] = ()

    @property
    def input_multiple(self) -> int:
        """H and W must be multiples of this: 32 (five stride-2 stages) times the pooling factor."""
        return 32 * self.config.low_res

    def example_input(self, batch: int = 1) -> torch.Tensor:
        """A deterministic ``batch x 3 x size x size`` RGB tensor in [0, 1]."""
        g = torch.Generator().manual_seed(0)
        return torch.rand(batch, 3, self.config.size, self.config.size, generator=g)

    def input_spec(self) -> TensorSpec:
        """The one input every artifact of this model takes."""
        s = self.config.size
        return TensorSpec("image", (1, 3, s, s), color="RGB")

    def output_spec(self) -> list[TensorSpec]:
        s = self.config.size
        return [TensorSpec(name, (1, 1, s, s), value_range=(0.0, 1.0)) for name in self.output_names]


class _MatteNet(ModelContract, nn.Module):
    """Shared body: normalisation, encoder, decoder. Subclasses add their heads."""

    def __init__(self, cfg: MatteNetConfig, heads: int):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.head == "guided":
            self.refiner = GuidedHead(cfg.decoder[-1], heads, scale=2 * cfg.low_res)
        elif cfg.head == "upsample":
            self.refiner = UpsampleHead(cfg.decoder[-1], heads, scale=2 * cfg.low_res)
        else:
            self.refiner = Refiner(cfg.decoder[-1], cfg.refine, heads)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """``N x 3 x H x W`` RGB in [0, 1] -> ``N x heads x H x W`` raw head outputs."""
        if self.config.head != "refine":
            # Normalise after pooling (they commute) and guide with the raw image:
            # the head's linear map absorbs the affine normalisation, and nothing
            # but the head touches full resolution.
            low = F.avg_pool2d(image, self.config.low_res) if self.config.low_res > 1 else image
            return self.refiner(self.decoder(self.encoder((low - _MEAN) / _STD)), image)
        x = (image - _MEAN) / _STD
        return self.refiner(self.decoder(self.encoder(x)), x)

class FaceMatStudent(_MatteNet):
    """The shipped model: one RGB face crop in, one alpha matte out.

    ``forward(image)``: ``N x 3 x H x W`` RGB float in [0, 1] (H, W multiples of
    32) -> alpha ``N x 1 x H x W`` in [0, 1].
    """

    output_names = ("alpha",)

    def __init__(self, cfg: MatteNetConfig):
        super().__init__(cfg, heads=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(image))


class FaceMatTeacher(_MatteNet):
    """Teacher with an uncertainty head: alpha and a per-pixel Laplace scale ``b``.

    ``forward(image)`` -> ``(alpha, b)``, both ``N x 1 x H x W``; alpha in [0, 1],
    ``b = softplus(s) + eps > 0`` (the expected absolute error of alpha).
    """

    output_names = ("alpha", "b")
    eps = 1e-3

    def __init__(self, cfg: MatteNetConfig):
        super().__init__(cfg, heads=2)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.logits(image)
        alpha = torch.sigmoid(out[:, 0:1])
        b = F.softplus(out[:, 1:2]) + self.eps
        return alpha, b
