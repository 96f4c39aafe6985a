"""Exporters: one module per target (ExecuTorch, Core ML, TFLite, ONNX), a manifest, parity checks."""
