"""PT2E quantization of the student: fold, export, prepare, calibrate or train, convert, save.

The flow (torchao ``quantize_pt2e``), shared by QAT and PTQ:

1. load the FP32 student and **fold BatchNorm** into the convolutions. A folded
   net has no running statistics to drift during QAT (the toolchain probe saw
   int8 error triple with BN left training), no ``num_batches_tracked`` integer
   buffer for the Core ML quantizer's fake-quant to choke on, and no conv+BN
   pattern for litert-torch's QAT annotator to fail on;
2. ``torch.export`` with dynamic batch, height and width, then
   ``prepare_qat_pt2e`` or ``prepare_pt2e`` with the recipe's quantizer;
3. calibrate on whole images (observers on, no gradients); for QAT, then train
   the weights on crops with the ranges frozen (``disable_observer``), or let
   them adapt for a first part of the schedule (``--freeze-at``);
4. ``convert_pt2e``, then re-export at batch 1 and the model's size, and save
   with ``torch.export.save`` next to ``recipe.json``.

Any forward pass with observers on recalibrates the ranges, so every
evaluation of a prepared model runs with observers disabled.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from facemat.errors import CheckpointError, ConfigError
from facemat.io import atomic_path, write_json_atomic

PT2_NAME = "model.pt2"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return a copy of ``model`` (eval mode) with every Conv2d -> BatchNorm2d pair fused.

    The BatchNorm is replaced by ``nn.Identity``; outputs are unchanged up to
    float rounding.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


def check_sizes(model: nn.Module, size: int) -> int:
    """Refuse a ``--size`` (or a model size) the student cannot be exported at; returns its input multiple.

    Both the training/calibration ``size`` and the model's own ``config.size``
    (the converted program's size) must be multiples of the model's input
    multiple (32, or 64 for a student that pools its input 2x) of at least two
    of them: at one, the deepest feature map is 1x1 and torch.export specialises it.
    """
    step = getattr(model, "input_multiple", 32)
    for flag, value in (("--size", size), ("the student's own size", model.config.size)):
        if value % step or value < 2 * step:
            raise ConfigError(f"{flag} {value}: this student needs a multiple of {step} of at least {2 * step}; "
                              "pick another --size (or a student of another size)")
    return step


def export_for_quantization(model: nn.Module, size: int, max_batch: int = 64) -> torch.fx.GraphModule:
    """``torch.export`` with dynamic batch, height and width; returns the graph module to prepare.

    Height and width are dynamic in steps of 32 (64 for a model that pools its
    input 2x: ``model.input_multiple``), so QAT can train at a small
    size and the converted model is re-exported at the model's own size.
    """
    step = check_sizes(model, size)
    example = torch.rand(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    hk = torch.export.Dim("hk", min=2, max=2048 // step)
    wk = torch.export.Dim("wk", min=2, max=2048 // step)
    shapes = ({0: batch, 2: step * hk, 3: step * wk},)
    ep = torch.export.export(model, (example,), dynamic_shapes=shapes, strict=True)
    return ep.module()


def prepare(model: nn.Module, recipe: str, qat: bool, size: int) -> torch.fx.GraphModule:
    """Fold BN, export and insert the recipe's observers / fake-quant."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

    from quantize.recipes import make_quantizer

    folded = fold_batchnorm(model)
    graph = export_for_quantization(folded, size)
    quantizer = make_quantizer(recipe, qat=qat)
    return prepare_qat_pt2e(graph, quantizer) if qat else prepare_pt2e(graph, quantizer)


def set_observers(prepared: torch.fx.GraphModule, enabled: bool) -> None:
    """Turn range observation on or off (fake-quant stays on)."""
    from torchao.quantization.pt2e import disable_observer, enable_observer

    prepared.apply(enable_observer if enabled else disable_observer)


def set_mode(prepared: torch.fx.GraphModule, train: bool) -> None:
    """Exported modules refuse ``.train()``/``.eval()``: switch the torchao way."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    (move_exported_model_to_train if train else move_exported_model_to_eval)(prepared)


def convert_and_export(prepared: torch.fx.GraphModule, size: int) -> torch.export.ExportedProgram:
    """``convert_pt2e`` then a batch-1 ``torch.export`` at ``size`` (what the targets consume)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    set_observers(prepared, False)
    set_mode(prepared, False)
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, (torch.rand(1, 3, size, size),), strict=False)


@dataclass(frozen=True)
class QuantizedModel:
    """A loaded quantization result."""

    program: torch.export.ExportedProgram
    recipe: dict[str, Any]
    path: Path

    def module(self) -> nn.Module:
        return self.program.module()


def save_quantized(out: Path, program: torch.export.ExportedProgram, recipe: dict[str, Any]) -> Path:
    """Write ``model.pt2`` and ``recipe.json`` atomically into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / PT2_NAME, suffix=".tmp.pt2") as tmp:
        torch.export.save(program, str(tmp))
    write_json_atomic(out / "recipe.json", recipe)
    return out / PT2_NAME


def load_quantized(path: str | Path) -> QuantizedModel:
    """Load a QAT/PTQ output folder (or its ``model.pt2``) with its ``recipe.json``."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    pt2 = folder / PT2_NAME
    if not pt2.is_file():
        raise CheckpointError(f"{folder}: no {PT2_NAME} (not a quantize.qat / quantize.ptq output folder)")
    if not (folder / "recipe.json").is_file():
        raise CheckpointError(f"{folder}: no recipe.json next to {PT2_NAME}")
    try:
        recipe = json.loads((folder / "recipe.json").read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{folder / 'recipe.json'}: not valid JSON ({exc})") from None
    # The int8 graph calls quantized_decomposed.* ops, which torchao registers on import;
    # without it a fresh process cannot resolve them.
    import torchao.quantization.pt2e  # noqa: F401

    from facemat.safety import check_finite_weights, check_pt2_archive

    check_pt2_archive(pt2)  # torch.export.load unpickles with weights_only=False: refuse any pickle first
    try:
        program = torch.export.load(str(pt2))
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad archive
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{pt2}: not a readable exported program (truncated or corrupt?): {first[:200]}") from None
    check_finite_weights({**program.state_dict, **program.constants}, pt2)
    return QuantizedModel(program=program, recipe=recipe, path=pt2)


def batches(dataset: torch.utils.data.Dataset, batch: int, start: int, count: int, workers: int) -> Iterator[dict]:
    """``count`` batches of the stream dataset starting at batch ``start`` (deterministic)."""
    from facemat.data.stream import StepBatchSampler

    sampler = StepBatchSampler(batch, world=1, rank=0, start=start, total=start + count)
    yield from torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers)


def full_view(stream: torch.utils.data.Dataset) -> torch.utils.data.Dataset:
    """The same sample stream without training crops (whole images at their rendered size)."""
    from facemat.data.stream import StreamDataset

    if isinstance(stream, StreamDataset) and stream.crop is not None:
        return StreamDataset(stream.base, stream.indices, stream.seed, crop=None)
    return stream


def require_recipe(found: str, needed: str, where: str) -> None:
    """Refuse a quantized model made for another target."""
    if found != needed:
        raise ConfigError(f"{where}: quantized with recipe {found!r}, but this target needs recipe {needed!r}")
