"""``python -m training.tune_temporal``: choose the temporal filter's settings on tuning clips.

Runs a student on every frame of the given clip folders once, then scores the
filter (:mod:`facemat.temporal`) at every point of a grid of ``k_min``, ``d0``,
``d1 - d0`` and ``radius``: flicker on still clips, dtSSD on moving clips and
per-frame IoU, against the unfiltered student on the same frames.

The rule that picks a setting, fixed before looking at any result:

* keep settings whose per-frame IoU is within ``--iou-margin`` (0.005, half the
  issue's 0.01 bar) of the unfiltered student's, and whose dtSSD on moving
  clips is not above it;
* among those, take the lowest ``flicker / flicker_raw + dtSSD / dtSSD_raw``
  (still-clip flicker and moving-clip dtSSD, each relative to the unfiltered
  student, weighed alike).

Use clips made for tuning (another split and seed than the ones reported);
the filter's defaults came from ``--source mix --split tune --seed 77`` clips.
Writes the whole grid with ``--json``.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


from facemat.cli import ArgumentParser, add_debug_flag, finite_float, run_main
from facemat.errors import ConfigError
from facemat.io import write_json_atomic
from facemat.safety import refuse_overwrite


def float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(finite_float(v) for v in text.split(","))
    except Exception:  # noqa: BLE001 - argparse's message names the flag
        raise ValueError(text) from None
    return values


def int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


@dataclass(frozen=True)
class TuneSettings:
    checkpoint: str
    clips: tuple[str, ...]
    # Around the settings earlier grids chose; the lowest k_min is a design limit (facemat/temporal.py).
    k_min: tuple[float, ...] = (0.1, 0.15, 0.2, 0.3)
    d0: tuple[float, ...] = (0.01, 0.02, 0.03, 0.04)
    span: tuple[float, ...] = (0.08, 0.12, 0.16, 0.24)
    radius: tuple[int, ...] = (1, 2, 4)
    iou_margin: float = 0.005
    limit: int | None = None
    json_out: str | None = None

    def __post_init__(self) -> None:
        if not Path(self.checkpoint).is_file():
            raise ConfigError(f"--checkpoint: {self.checkpoint} is not a file")
        if not self.clips:
            raise ConfigError("--clips: give at least one clip folder (python -m facemat.data.synth --frames 8)")
        for c in self.clips:
            if not Path(c).is_dir():
                raise ConfigError(f"--clips: {c} is not a folder")
        for flag, values in (("--k-min", self.k_min), ("--d0", self.d0), ("--span", self.span),
                             ("--radius", self.radius)):
            if not values:
                raise ConfigError(f"{flag} needs at least one value")
        if not 0 <= self.iou_margin <= 1:
            raise ConfigError(f"--iou-margin must be in [0, 1], got {self.iou_margin}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.limit}")
        refuse_overwrite({"--json": self.json_out}, {"--checkpoint": self.checkpoint})


def grid(s: TuneSettings) -> list[Any]:
    """Every valid :class:`~facemat.temporal.TemporalConfig` of the grid (``d1 = d0 + span``, at most 1)."""
    from facemat.temporal import TemporalConfig

    out = []
    for k, d0, span, r in itertools.product(s.k_min, s.d0, s.span, s.radius):
        d1 = min(1.0, d0 + span)
        if d0 < d1:
            out.append(TemporalConfig(k_min=float(k), d0=float(d0), d1=float(d1), radius=int(r)))
    if not out:
        raise ConfigError("the grid holds no valid setting (need 0 <= d0 < d0 + span and 0 < k_min <= 1)")
    return out


def pick(results: list[dict[str, Any]], raw: dict[str, Any], iou_margin: float) -> dict[str, Any] | None:
    """The setting the module docstring's rule chooses, or None when none qualifies.

    Args:
        results: per setting ``{"config": {...}, "rows": summary}`` (a :class:`facemat.evaluation.ClipScores` summary).
        raw: the unfiltered student's summary on the same clips.
    """
    f_raw, d_raw, i_raw = raw["still"]["flicker"], raw["moving"]["dtssd"], raw["all"]["iou"]
    best, best_score = None, float("inf")
    for r in results:
        rows = r["rows"]
        if rows["all"]["iou"] < i_raw - iou_margin or rows["moving"]["dtssd"] > d_raw:
            continue
        score = rows["still"]["flicker"] / f_raw + rows["moving"]["dtssd"] / d_raw
        r["score"] = score
        if score < best_score:
            best, best_score = r, score
    return best


def tune(s: TuneSettings) -> dict[str, Any]:
    """Score the grid on the clips; returns ``{"raw", "grid", "chosen", "default", ...}``."""
    from tqdm import tqdm

    from facemat.checkpoint import file_sha256, load_checkpoint
    from facemat.data.clips import load_clips
    from facemat.evaluation import ClipScores, clip_predictions
    from facemat.inference import reference_outputs
    from facemat.temporal import DEFAULT, filter_sequence

    model, _ = load_checkpoint(s.checkpoint, expect="student")
    size = int(model.config.size)
    clips = [c for root in s.clips for c in load_clips(root, s.limit)]
    motions = {c.motion for c in clips}
    if motions != {"still", "moving"} or not any(c.cameras is not None for c in clips if c.motion == "still"):
        raise ConfigError("--clips: tuning needs still clips (with camera transforms) and moving clips; "
                          "generate them with python -m facemat.data.synth --frames 8 --motion both")
    preds = [clip_predictions(lambda x: reference_outputs(model, x)[0], c, size) for c in clips]

    def summary(config) -> dict[str, Any]:
        sc = ClipScores()
        for c, p in zip(clips, preds):
            sc.add(p if config is None else filter_sequence(c.images, p, config), c)
        return sc.summary()

    raw = summary(None)
    configs = grid(s)
    results = [{"config": cfg.to_dict(), "rows": summary(cfg)}
               for cfg in tqdm(configs, desc="tune_temporal", unit="setting", file=sys.stderr)]
    chosen = pick(results, raw, s.iou_margin)
    return {"checkpoint": s.checkpoint, "checkpoint_sha256": file_sha256(s.checkpoint), "clips": list(s.clips),
            "clip_count": len(clips), "raw": raw, "default": {"config": DEFAULT.to_dict(), "rows": summary(DEFAULT)},
            "grid": results, "chosen": chosen, "iou_margin": s.iou_margin,
            "rule": "IoU within iou_margin of raw and moving dtSSD <= raw; then min flicker/flicker_raw + "
                    "dtSSD/dtSSD_raw"}


def format_result(report: dict[str, Any], top: int = 10) -> str:
    raw = report["raw"]

    def line(name: str, rows: dict[str, Any]) -> str:
        return (f"{name:<40}{rows['still']['flicker']:>9.2f}{100 * rows['moving']['dtssd']:>10.3f}"
                f"{rows['all']['iou']:>9.4f}")

    def label(cfg: dict[str, Any]) -> str:
        return f"k_min {cfg['k_min']:g} d0 {cfg['d0']:g} d1 {cfg['d1']:g} r {cfg['radius']}"

    ranked = sorted((r for r in report["grid"] if "score" in r), key=lambda r: r["score"])
    lines = [f"{report['clip_count']} clips from {', '.join(report['clips'])}; {len(report['grid'])} settings",
             f"{'setting':<40}{'flicker':>9}{'dtSSD':>10}{'IoU':>9}", line("no filter", raw),
             line(f"default ({label(report['default']['config'])})", report["default"]["rows"]),
             f"best {min(top, len(ranked))} by the rule:"]
    lines += [line(label(r["config"]), r["rows"]) + f"   score {r['score']:.4f}" for r in ranked[:top]]
    chosen = report["chosen"]
    lines.append(f"chosen: {label(chosen['config'])}" if chosen else "no setting meets the rule's limits")
    lines.append("flicker x 1000 on still clips, dtSSD x 100 on moving clips, IoU per frame over all clips")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m training.tune_temporal",
        description="Choose the temporal filter's settings (facemat.temporal) on tuning clips: grid search of "
        "k_min, d0, d1 and radius, scored by still-clip flicker, moving-clip dtSSD and per-frame IoU against "
        "the unfiltered student.",
    )
    parser.add_argument("--checkpoint", required=True, help="student checkpoint (.pt)")
    parser.add_argument("--clips", nargs="+", required=True, metavar="DIR",
                        help="tuning clip folders (python -m facemat.data.synth --frames 8 ...), not the reported ones")
    parser.add_argument("--k-min", type=float_list, default=TuneSettings.k_min, help="comma list (default %(default)s)")
    parser.add_argument("--d0", type=float_list, default=TuneSettings.d0, help="comma list (default %(default)s)")
    parser.add_argument("--span", type=float_list, default=TuneSettings.span,
                        help="comma list of d1 - d0 (default %(default)s)")
    parser.add_argument("--radius", type=int_list, default=TuneSettings.radius, help="comma list (default %(default)s)")
    parser.add_argument("--iou-margin", type=finite_float, default=0.005,
                        help="most per-frame IoU a setting may lose (default 0.005)")
    parser.add_argument("--limit", type=int, help="use only the first N clips of each folder")
    parser.add_argument("--json", dest="json_out", help="write the whole grid here")
    add_debug_flag(parser)
    a = parser.parse_args(argv)
    s = TuneSettings(checkpoint=a.checkpoint, clips=tuple(a.clips), k_min=a.k_min, d0=a.d0, span=a.span,
                     radius=a.radius, iou_margin=a.iou_margin, limit=a.limit, json_out=a.json_out)
    report = tune(s)
    print(format_result(report))
    if s.json_out:
        write_json_atomic(s.json_out, report)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
