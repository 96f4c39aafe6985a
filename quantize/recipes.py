"""Per-target quantization recipes: which PT2E quantizer, with which settings.

Each recipe is the quantizer its exporter consumes:

* ``xnnpack``: ExecuTorch's XNNPACK quantizer, symmetric int8, per-channel
  weights, per-tensor activations (``is_qat`` for QAT).
* ``coreml``: ExecuTorch's Core ML quantizer (coremltools' linear quantizer
  config), W8A8: symmetric per-channel int8 weights, uint8 activations.
* ``litert``: litert-torch's ``PT2EQuantizer``, symmetric int8 per-channel
  weights, per-tensor int8 activations: the scheme its TFLite converter lowers
  to a full-integer model.

Back-ends load lazily (style rule 11): importing this module is cheap.
"""

from __future__ import annotations

from typing import Any

from facemat.errors import ConfigError

RECIPES = ("xnnpack", "coreml", "litert")


def check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise ConfigError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")


def make_quantizer(recipe: str, qat: bool):
    """The PT2E ``Quantizer`` of ``recipe``; ``qat`` selects fake-quant observers.

    Meant for BatchNorm-folded graphs (``quantize.core.prepare`` folds first).
    """
    check_recipe(recipe)
    if recipe == "xnnpack":
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
    if recipe == "coreml":
        import torch
        from coremltools.optimize.torch.quantization import LinearQuantizerConfig, ModuleLinearQuantizerConfig
        from executorch.backends.apple.coreml.quantizer import CoreMLQuantizer

        config = LinearQuantizerConfig(
            global_config=ModuleLinearQuantizerConfig(
                quantization_scheme="symmetric",
                activation_dtype=torch.quint8,
                weight_dtype=torch.qint8,
                weight_per_channel=True,
            )
        )
        return CoreMLQuantizer(config)
    try:
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    except ImportError as exc:  # litert-torch is the TFLite exporter's dependency
        raise ConfigError(f"--recipe litert needs the litert-torch package ({exc}); pip install litert-torch") from None
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))
    # quantize.core folds BatchNorm before export, so the QAT-only conv+BN
    # patterns cannot match; skipping them also avoids litert-torch 0.10's
    # conv+BN annotator, which hands a bare function to torch.export and fails
    # ("Expected `mod` to be an instance of `torch.nn.Module`").
    quantizer.STATIC_QAT_ONLY_OPS = []
    return quantizer


def quantizer_description(recipe: str) -> dict[str, Any]:
    """What ``recipe.json`` records about the quantizer."""
    check_recipe(recipe)
    common = {"weights": "int8 symmetric per-channel (axis 0)", "flow": "torchao PT2E"}
    return {
        "xnnpack": {**common, "quantizer": "executorch.backends.xnnpack.quantizer.XNNPACKQuantizer",
                    "activations": "int8 per-tensor affine", "target": "ExecuTorch XNNPACK delegate"},
        "coreml": {**common, "quantizer": "executorch.backends.apple.coreml.quantizer.CoreMLQuantizer",
                   "activations": "uint8 per-tensor (W8A8)", "target": "Core ML / ExecuTorch Core ML delegate"},
        "litert": {**common, "quantizer": "litert_torch.quantize.pt2e_quantizer.PT2EQuantizer",
                   "activations": "int8 per-tensor affine", "target": "TFLite / LiteRT full-integer"},
    }[recipe]
