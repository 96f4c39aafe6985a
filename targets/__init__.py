"""Exporters: one module per target (ExecuTorch, Core ML, TFLite, ONNX), a manifest, parity checks.

Public for other packages: :func:`open_artifact` (run an artifact by its manifest entry).
"""

from targets.runtime import open_artifact

__all__ = ["open_artifact"]
