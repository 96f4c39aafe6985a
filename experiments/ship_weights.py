"""Package a trained run as shipped weights, with where they came from.

    python experiments/ship_weights.py RUN_DIR OUT.pt --note "what it was started from" --wall-s 1716

Copies ``RUN_DIR/best.pt`` (weights only: no optimizer state) to ``OUT.pt`` and
writes its meta: the training command rebuilt from ``RUN_DIR/config.json``, the
validation score, and every fetched file the run depended on with its package,
sha256 and licence (the MediaPipe initial weights, the training face photos and
the texture photos of the domain randomization). Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import cpu_model  # noqa: E402
from facemat.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from facemat.data.domain import TEXTURES  # noqa: E402
from facemat.data.real import FACE_FREE_SOURCES, FACES  # noqa: E402
from facemat.data.synth import GENERATOR  # noqa: E402
from facemat.pretrained.fetch import ASSETS, PACKAGES  # noqa: E402

# Config keys that are bookkeeping, not training settings.
_SKIP = {"command", "out", "resume", "device", "world_size", "log_every", "ckpt_every", "init_sha256",
         "init_grown_from", "teacher_sha256"}


def _command(cfg: dict) -> str:
    flags = []
    for k, v in sorted(cfg.items()):
        if k in _SKIP or v is None or v is False:
            continue
        flags.append(f"--{k.replace('_', '-')}" if v is True else f"--{k.replace('_', '-')} {v}")
    return f"python -m {cfg['command']} " + " ".join(flags)


def _source(name: str) -> dict:
    a = ASSETS[name]
    return {"file": name, "package": a.package, "member": a.member, "sha256": a.sha256,
            "package_licence": PACKAGES[a.package].licence, "note": a.note}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="training run folder (best.pt, config.json)")
    p.add_argument("out", help="destination, e.g. facemat/weights/student.pt")
    p.add_argument("--note", required=True, help="what the run started from, in words")
    p.add_argument("--wall-s", type=float, required=True, help="training wall time in seconds")
    p.add_argument("--face-photos", default=None,
                   help="comma-separated training face photos the run saw, when the code's list has grown since "
                   "(default: the training photos of facemat.data.real.FACES)")
    a = p.parse_args()
    run = Path(a.run)
    cfg = json.loads((run / "config.json").read_text())
    model, ckpt = load_checkpoint(run / "best.pt")
    if a.face_photos is None:
        photos = sorted({f.photo for f in FACES if f.group == "train"})
    else:
        photos = sorted(set(a.face_photos.split(",")))
        unknown = [n for n in photos if n not in ASSETS or ASSETS[n].group != "faces"]
        if unknown:
            p.error(f"--face-photos: {unknown[0]!r} is not a face photograph this version fetches")
    face_free = cfg["data"] in FACE_FREE_SOURCES
    models = ["face_landmark.tflite", "selfie_segmentation.tflite"]
    if face_free:  # face-free crops keep clear of the faces BlazeFace finds (facemat.data.empty)
        models.append("face_detection_short_range.tflite")
    sources = {"face_photos": [_source(n) for n in photos], "texture_photos": [_source(n) for n in TEXTURES],
               "models": [_source(n) for n in models]}
    cpu = cpu_model()
    meta = {"command": _command(cfg), "step": ckpt["meta"].get("step"),
            "best_val_score": ckpt["meta"].get("best_val_score"), "init": a.note,
            "init_sha256": cfg.get("init_sha256"), "teacher_sha256": cfg.get("teacher_sha256"),
            "data": f"--data {cfg['data']} rendered by {GENERATOR} (training split: with the domain randomization "
                    "of facemat.data.domain" + ("; face-free crops, alpha 0, of facemat.data.empty)"
                                                if face_free else ")"),
            "data_sources": sources, "trained_on": f"{cfg.get('world_size', 1)} process(es), {cpu}, {a.wall_s:.0f} s"}
    if "source" in model.config.to_dict() and model.config.to_dict()["source"]:
        meta["pretrained"] = model.config.to_dict()["source"]
    save_checkpoint(a.out, model, meta=meta)
    print(f"wrote {a.out}: {meta['command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
