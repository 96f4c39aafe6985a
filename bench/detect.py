"""``python -m bench.detect``: how often each face finder finds an occluded face, and how BlazeFace frames it.

Two measurements:

* ``rate``: camera-like frames (:func:`facemat.data.frames.render_frame`:
  640x480 by default, one generated face crop with at least one occluder,
  often a hand, on a photo-like background) go through every finder. A face
  counts as found when a detection's centre lies inside the face's box (its
  skin before occluders) and the detection's side is 0.4-1.6 times the box's.
  Every other detection is a false box. Printed per finder: the share found,
  overall, with a hand over at least 5 % of the face and without one; false
  boxes; time per frame. With ``--checkpoint``, each finder's crops are also
  matted (:mod:`facemat.crop`: extract, model, paste back) and the full-frame
  alpha is scored against the ground truth (IoU), beside the crop the face was
  actually placed in.
* ``framing``: the default finder on generated 256x256 training samples of the
  ``synth`` and ``real`` sources. For each face found, the crop side per box
  side and the crop centre's offset (along the face's up direction, per crop
  side) that give back exactly the training crop; the medians are the crop
  contract's defaults (:data:`facemat.crop.DEFAULT`).

Results are printed and, with ``--json``, written with the settings and the machine.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from facemat.cli import ArgumentParser, add_debug_flag, run_main
from facemat.errors import ConfigError

FINDERS = {
    "blazeface": ("short", "always", True),
    "blazeface-zoom": ("short", "always", False),
    "blazeface-frame": ("short", "off", False),
    "blazeface-full": ("full", "misses", False),
    "blazeface-full-frame": ("full", "off", False),
    "haar": None,
}
"""Finders compared (model, zoomed windows, confirmation): the demo's default (short range, zoomed
windows, candidates from 0.4 confirmed by the full-range model below 0.55), the same windows at
MediaPipe's 0.5 without confirmation, MediaPipe's own graph (short or full range, whole frame only),
``--detector blazeface-full`` (windows when the whole frame finds nothing), and OpenCV's Haar cascade."""
WHAT = ("rate", "framing")
FRAME_SOURCES = ("synth", "real", "real-holdout")
FRAMING_SOURCES = ("synth", "real")
HAND = 0.05  # a hand over at least this fraction of the face skin
SIZE_RANGE = (0.4, 1.6)  # detection side / face box side for a match


@dataclass(frozen=True)
class DetectSettings:
    """Resolved settings of one ``bench.detect`` run."""

    what: tuple[str, ...] = WHAT
    finders: tuple[str, ...] = tuple(FINDERS)
    sources: tuple[str, ...] = FRAME_SOURCES
    count: int = 100
    seed: int = 0
    width: int = 640
    height: int = 480
    framing_count: int = 200
    checkpoint: str | None = None
    json: str | None = None

    def __post_init__(self) -> None:
        for flag, values, allowed in (("--what", self.what, WHAT), ("--finders", self.finders, tuple(FINDERS)),
                                      ("--sources", self.sources, FRAME_SOURCES)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ConfigError(f"{flag} takes a comma-separated list of {', '.join(allowed)}, got "
                                  f"{','.join(values) or '(empty)'}")
        if self.count < 1 or self.framing_count < 1:
            raise ConfigError(f"--count and --framing-count must be >= 1, got {self.count} and {self.framing_count}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        if not (64 <= self.width <= 4096 and 64 <= self.height <= 4096):
            raise ConfigError(f"--width and --height must be between 64 and 4096, got {self.width}x{self.height}")


def make_finder(name: str):
    """The finder a :data:`FINDERS` name stands for."""
    from facemat.finder import BlazeFaceFinder, HaarFinder

    if FINDERS[name] is None:
        return HaarFinder()
    model, zoom, confirm = FINDERS[name]
    return BlazeFaceFinder(model, zoom=zoom, confirm=confirm)


def match(detections: Sequence[Any], face_box: Sequence[float]) -> tuple[int | None, int]:
    """``(index of the best detection that matches the face or None, number of false boxes)``.

    A detection matches when its centre lies inside ``face_box`` (x, y, w, h) and its
    side (the longer of width and height) is 0.4-1.6 times the box's.
    """
    gx, gy, gw, gh = face_box
    side = max(gw, gh)
    hits = []
    for i, d in enumerate(detections):
        cx, cy = d.centre
        r = max(d.box[2], d.box[3]) / side
        if gx <= cx <= gx + gw and gy <= cy <= gy + gh and SIZE_RANGE[0] <= r <= SIZE_RANGE[1]:
            hits.append(i)
    best = max(hits, key=lambda i: detections[i].score) if hits else None
    return best, len(detections) - (1 if hits else 0)


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` and the core count."""
    import os

    from bench.run import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores"


def _matter(checkpoint: str):
    from facemat.checkpoint import load_checkpoint
    from facemat.inference import reference_outputs

    model, _ = load_checkpoint(checkpoint, expect="student")
    size = int(model.config.size)

    def run(crop_rgb: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(crop_rgb.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
        return reference_outputs(model, x)[0][0]

    return run, size


def _frame_alpha(frame, crops, matter, size: int) -> np.ndarray:
    from facemat.crop import DEFAULT, extract, paste

    h, w = frame.shape[:2]
    out = np.zeros((h, w), np.float32)
    for c in crops:
        np.maximum(out, paste(matter(extract(frame, c, size)), c, h, w, DEFAULT.feather), out=out)
    return out


def measure_rate(s: DetectSettings) -> dict[str, Any]:
    """Detection rate of every finder on the camera-like frames (see the module docstring)."""
    from facemat.crop import DEFAULT, crop_for
    from facemat.data.frames import render_frame
    from facemat.metrics import iou

    finders = {n: make_finder(n) for n in s.finders}
    matter = _matter(s.checkpoint) if s.checkpoint else None
    frames: list[dict[str, Any]] = []
    for source in s.sources:
        for i in range(s.count):
            f = render_frame(source, s.seed, i, s.width, s.height)
            row: dict[str, Any] = {"source": source, "index": i, "hand_over_face": f.meta["hand_over_face"],
                                   "occluders": f.meta["occluders"], "crop_side": f.meta["crop_side"]}
            if matter is not None:
                row["iou_placed"] = iou(_frame_alpha(f.image, [f.placed], *matter), f.alpha)
            for name, finder in finders.items():
                t0 = time.perf_counter()
                dets = finder(f.image)
                ms = (time.perf_counter() - t0) * 1e3
                best, false = match(dets, f.face_box)
                row[name] = {"found": best is not None, "false": false, "ms": round(ms, 2),
                             "score": None if best is None else round(dets[best].score, 4)}
                if matter is not None:
                    crops = [crop_for(d.box, DEFAULT, d.roll()) for d in dets]
                    row[name]["iou"] = iou(_frame_alpha(f.image, crops, *matter), f.alpha)
            frames.append(row)
            total = len(s.sources) * s.count
            if len(frames) % 50 == 0 or len(frames) == total:
                print(f"bench.detect: {len(frames)}/{total} frames", file=sys.stderr, flush=True)
    summary = {}
    for name in s.finders:
        def rate(rows: list[dict[str, Any]]) -> dict[str, Any]:
            found = sum(r[name]["found"] for r in rows)
            return {"found": found, "of": len(rows), "rate": round(found / len(rows), 4) if rows else None}

        hand = [r for r in frames if r["hand_over_face"] >= HAND]
        summary[name] = {
            "all": rate(frames), "hand": rate(hand), "no_hand": rate([r for r in frames if r["hand_over_face"] < HAND]),
            "per_source": {src: rate([r for r in frames if r["source"] == src]) for src in s.sources},
            "false_per_frame": round(float(np.mean([r[name]["false"] for r in frames])), 4),
            "frames_with_false": round(float(np.mean([r[name]["false"] > 0 for r in frames])), 4),
            "ms_median": round(float(np.median([r[name]["ms"] for r in frames])), 2),
            "info": finders[name].info,
        }
        if matter is not None:
            summary[name]["iou_mean"] = round(float(np.mean([r[name]["iou"] for r in frames])), 4)
    out = {"frames": len(frames), "summary": summary, "rows": frames}
    if matter is not None:
        out["iou_placed_mean"] = round(float(np.mean([r["iou_placed"] for r in frames])), 4)
    return out


def measure_framing(s: DetectSettings) -> dict[str, Any]:
    """The crop side and centre offset per BlazeFace box that give back the training crop (see the module docstring)."""
    from facemat.data.real import render_source

    finder = make_finder("blazeface")
    per: dict[str, dict[str, list[float]]] = {}
    for source in FRAMING_SOURCES:
        vals: dict[str, list[float]] = {"scale": [], "shift_up": [], "lateral": []}
        missed = 0
        for i in range(s.framing_count):
            sample = render_source(source, s.seed, i, 256, "train", layers=True)
            skin = sample.layers["skin"]
            ys, xs = np.nonzero(skin >= 0.5)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min()))
            dets = finder(sample.image)
            best, _ = match(dets, box)
            if best is None:
                missed += 1
                continue
            d = dets[best]
            side = max(d.box[2], d.box[3])
            a = d.roll() or 0.0
            cx, cy = d.centre
            dx, dy = 128.0 - cx, 128.0 - cy  # from the box centre to the training crop's centre
            vals["scale"].append(256.0 / side)
            vals["shift_up"].append((dx * math.sin(a) - dy * math.cos(a)) / 256.0)
            vals["lateral"].append((dx * math.cos(a) + dy * math.sin(a)) / 256.0)
        per[source] = {"samples": s.framing_count, "found": s.framing_count - missed, **vals}
    both = {k: per[FRAMING_SOURCES[0]][k] + per[FRAMING_SOURCES[1]][k] for k in ("scale", "shift_up", "lateral")}
    per["both"] = {"samples": sum(per[src]["samples"] for src in FRAMING_SOURCES),
                   "found": sum(per[src]["found"] for src in FRAMING_SOURCES), **both}
    out: dict[str, Any] = {"finder": finder.info}
    for src, v in per.items():
        out[src] = {"samples": v["samples"], "found": v["found"]}
        for k in ("scale", "shift_up", "lateral"):
            out[src][k] = [round(float(q), 4) for q in np.percentile(v[k], [10, 50, 90])] if v[k] else None
    return out


def _print_rate(r: dict[str, Any], s: DetectSettings) -> None:
    print(f"detection rate: {r['frames']} camera-like frames {s.width}x{s.height} "
          f"({', '.join(f'{src} {s.count}' for src in s.sources)}; seed {s.seed}), each face with an occluder")
    head = f"{'finder':22s} {'found':>14s} {'hand >= 5 %':>14s} {'no hand':>14s} {'false/frame':>11s} " \
           f"{'frames w/ false':>15s} {'ms/frame':>8s}"
    print(head)
    for name, v in r["summary"].items():
        def cell(x: dict[str, Any]) -> str:
            return f"{100 * x['rate']:5.1f} % {x['found']:>3d}/{x['of']:<3d}" if x["of"] else "-"

        print(f"{name:22s} {cell(v['all']):>14s} {cell(v['hand']):>14s} {cell(v['no_hand']):>14s} "
              f"{v['false_per_frame']:11.2f} {100 * v['frames_with_false']:13.1f} % {v['ms_median']:8.1f}")
    print("per source (found): " + "; ".join(
        f"{name} " + ", ".join(f"{src} {100 * x['rate']:.0f} %" for src, x in v["per_source"].items())
        for name, v in r["summary"].items()))
    if "iou_placed_mean" in r:
        print(f"full-frame matte IoU (--checkpoint {s.checkpoint}): placed crop {r['iou_placed_mean']:.3f}; "
              + ", ".join(f"{n} {v['iou_mean']:.3f}" for n, v in r["summary"].items()))


def _print_framing(r: dict[str, Any]) -> None:
    from facemat.crop import DEFAULT

    print("framing: the demo's BlazeFace finder (short range) on generated 256x256 training samples "
          "(split train); crop side per box side, crop centre above the box centre per crop side")
    print(f"{'source':8s} {'found':>9s} {'scale p10/p50/p90':>22s} {'shift_up p10/p50/p90':>24s} {'lateral p50':>11s}")
    for src in (*FRAMING_SOURCES, "both"):
        v = r[src]
        if v["scale"] is None:
            print(f"{src:8s} {v['found']:>4d}/{v['samples']:<4d} (no face found)")
            continue
        sc, up, lat = v["scale"], v["shift_up"], v["lateral"]
        print(f"{src:8s} {v['found']:>4d}/{v['samples']:<4d} {sc[0]:6.3f} {sc[1]:6.3f} {sc[2]:6.3f}    "
              f"{up[0]:7.3f} {up[1]:7.3f} {up[2]:7.3f} {lat[1]:11.3f}")
    b = r["both"]
    if b["scale"] is not None:
        print(f"derived crop (medians, rounded as the contract states them): scale {b['scale'][1]:.1f}, "
              f"shift_up {b['shift_up'][1]:.2f} (facemat.crop.DEFAULT: scale {DEFAULT.scale}, "
              f"shift_up {DEFAULT.shift_up})")


def run_detect(s: DetectSettings) -> dict[str, Any]:
    """Run the measurements of ``s.what``; print them; write ``s.json`` when given; return the results."""
    from facemat.io import write_json_atomic

    out: dict[str, Any] = {"settings": asdict(s), "machine": cpu_name()}
    print(f"bench.detect on {out['machine']}")
    if "rate" in s.what:
        out["rate"] = measure_rate(s)
        _print_rate(out["rate"], s)
    if "framing" in s.what:
        out["framing"] = measure_framing(s)
        _print_framing(out["framing"])
    if s.json:
        write_json_atomic(s.json, out)
    return out


def _names(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m bench.detect",
                            description="How often each face finder finds an occluded face on generated camera-like "
                            "frames (rate), and how BlazeFace's box frames a training face (framing: the crop "
                            "contract's scale and shift_up).")
    parser.add_argument("--what", default=",".join(WHAT), help=f"comma-separated: {', '.join(WHAT)} (default both)")
    parser.add_argument("--finders", default=",".join(FINDERS), help=f"comma-separated: {', '.join(FINDERS)} "
                        "(default all)")
    parser.add_argument("--sources", default=",".join(FRAME_SOURCES), help="face sources of the frames "
                        f"(default {','.join(FRAME_SOURCES)})")
    parser.add_argument("--count", type=int, default=100, help="frames per source (default 100)")
    parser.add_argument("--framing-count", type=int, default=200, help="training samples per source for "
                        "the framing (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="frame and sample seed (default 0)")
    parser.add_argument("--width", type=int, default=640, help="frame width (default 640)")
    parser.add_argument("--height", type=int, default=480, help="frame height (default 480)")
    parser.add_argument("--checkpoint", help="also matte every finder's crops with this student and score "
                        "the full-frame alpha (IoU)")
    parser.add_argument("--json", help="write the settings, machine and every figure here")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    s = DetectSettings(what=_names(a.what), finders=_names(a.finders), sources=_names(a.sources), count=a.count,
                       seed=a.seed, width=a.width, height=a.height, framing_count=a.framing_count,
                       checkpoint=a.checkpoint, json=a.json)
    run_detect(s)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
