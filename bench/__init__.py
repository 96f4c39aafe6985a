"""The bench harness: per-device latency and matting accuracy of every artifact against the FP32 reference."""
