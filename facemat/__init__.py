"""FaceMat Edge: occlusion-aware face matting, from training to phone artifacts."""

__version__ = "0.1.0"
