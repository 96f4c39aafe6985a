"""Record what MediaPipe's own face-detection graph finds on the cached package photos.

``tests/test_blazeface.py`` compares ``facemat.pretrained.blazeface`` (the model
run in LiteRT, decoded by this project) with these detections. This script runs
outside the project's environment: the ``mediapipe`` package needs NumPy 1,
which cannot sit next to the project's NumPy 2. In a separate venv::

    python3.11 -m venv /tmp/mp && /tmp/mp/bin/pip install --no-deps mediapipe==0.10.21 \\
        "numpy<2" "protobuf<5" absl-py attrs flatbuffers "opencv-python-headless<4.11" "matplotlib<3.10"
    /tmp/mp/bin/python experiments/blazeface_reference.py --cache ~/.cache/facemat \\
        --out tests/data/blazeface_reference.json

It imports nothing of this repository. Each photo is also run mirrored (an exact
pixel flip), which moves every keypoint and exercises the left/right order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PHOTOS = ("grace_hopper.jpg", "breakingbad.jpg", "einstein.jpg", "takeo.ppm", "tongue.jpg", "zidane.jpg",
          "bus.jpg", "camera.png")
MODELS = {"short": 0, "full": 1}


def main(argv: list[str] | None = None) -> int:
    import cv2
    import mediapipe as mp
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, help="the facemat cache folder (faces/ holds the photos)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    a = ap.parse_args(argv)
    rows = []
    for model, selection in MODELS.items():
        with mp.solutions.face_detection.FaceDetection(model_selection=selection,
                                                       min_detection_confidence=0.5) as fd:
            for name in PHOTOS:
                bgr = cv2.imread(str(Path(a.cache) / "faces" / name), cv2.IMREAD_COLOR)
                rgb = np.ascontiguousarray(bgr[..., ::-1])
                for mirrored in (False, True):
                    img = np.ascontiguousarray(rgb[:, ::-1]) if mirrored else rgb
                    h, w = img.shape[:2]
                    found = fd.process(img).detections or []
                    faces = []
                    for d in found:
                        b = d.location_data.relative_bounding_box
                        kps = [[k.x * w, k.y * h] for k in d.location_data.relative_keypoints]
                        faces.append({"score": round(float(d.score[0]), 5),
                                      "box": [round(v, 3) for v in (b.xmin * w, b.ymin * h, b.width * w,
                                                                     b.height * h)],
                                      "keypoints": [[round(x, 3), round(y, 3)] for x, y in kps]})
                    rows.append({"model": model, "photo": name, "mirrored": mirrored, "size": [w, h],
                                 "faces": faces})
                    print(f"{model} {name}{' mirrored' if mirrored else ''}: {len(faces)} face(s)", file=sys.stderr)
    out = {"format": "facemat-blazeface-reference/1", "mediapipe": mp.__version__,
           "min_detection_confidence": 0.5,
           "note": "boxes (x, y, w, h) and keypoints in photo pixels. The full-range graph kept its own "
                   "0.6 score threshold: no full-range score below 0.6 came out at 0.5"}
    # One row per line: small diffs when the reference is recorded again.
    head = json.dumps(out)[:-1]
    body = ",\n".join(json.dumps(r) for r in rows)
    Path(a.out).write_text(f'{head}, "rows": [\n{body}\n]}}\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
