"""The pinned toolchain installs and imports together (one process, as the exporters use it)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["torchao.quantization.pt2e.quantize_pt2e", "executorch.exir", "executorch.runtime", "coremltools", "onnx",
     "onnxsim", "onnxruntime", "ai_edge_litert.interpreter", "litert_torch", "cv2", "tqdm", "scipy.stats"],
)
def test_imports(module: str):
    importlib.import_module(module)


def test_versions_are_the_pinned_set():
    import numpy
    import torch
    from importlib.metadata import version

    assert torch.__version__.split("+")[0] == "2.13.0"
    assert version("torchao") == "0.18.0"
    assert version("executorch") == "1.5.1"
    assert version("coremltools") == "9.0"
    assert version("ai-edge-litert").startswith("2.3.")
    assert int(numpy.__version__.split(".")[0]) >= 2


def test_importing_facemat_pulls_no_backend():
    # Style rule 11: importing the packages has no heavy side effects.
    code = ("import sys, facemat, facemat.models, facemat.losses, facemat.metrics, facemat.checkpoint, "
            "quantize.recipes, training.common; "
            "print(sorted(m for m in ('coremltools', 'executorch', 'onnxruntime', 'ai_edge_litert', 'litert_torch') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
