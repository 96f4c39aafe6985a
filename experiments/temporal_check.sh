#!/usr/bin/env bash
# Temporal stability of a student on clips: flicker on still clips, dtSSD on moving clips and per-frame IoU of
# the checkpoint in PyTorch (training.evaluate) and of its TFLite fp32 and int8 NHWC builds in LiteRT (bench.run),
# each beside mesh-oval and each with and without the temporal filter, with the checks printed.
#
#   nice -n 19 experiments/temporal_check.sh STUDENT.pt OUT
#
# Run from the repository root. Clip and calibration folders go to $CLIPS (default runs/clips) and are made once
# (a finished folder is left as it is); PY (default .venv/bin/python) and DEVICE (default host) can be set.
# TUNE=1 first re-tunes the filter for this student on its own tuning clips and prints the setting the rule picks
# (the runs below still use facemat/temporal.py's defaults unless FILTER=k_min=..,d0=..,d1=..,radius=.. is given).
set -eu
S=$1; OUT=$2
PY=${PY:-.venv/bin/python}
CLIPS=${CLIPS:-runs/clips}
DEVICE=${DEVICE:-host}
FILTER=${FILTER:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # 2 shared cores: OpenMP threads spinning against each other are slower
mkdir -p "$OUT"
$PY -m facemat.data.synth --frames 8 --count 64 --source synth --split test --seed 1001 --out "$CLIPS/synth"
$PY -m facemat.data.synth --frames 8 --count 64 --source real-holdout --split gen --seed 2026 --out "$CLIPS/gen"
$PY -m facemat.data.synth --count 64 --source mix --split calib --seed 7 --out "$CLIPS/calib"
if [ "${TUNE:-0}" = 1 ]; then
  $PY -m facemat.data.synth --frames 8 --count 64 --source mix --split tune --seed 77 --out "$CLIPS/tune"
  $PY -m training.tune_temporal --checkpoint "$S" --clips "$CLIPS/tune" --json "$OUT/tune.json" | tee "$OUT/tune.txt"
fi
$PY -m training.evaluate --checkpoint "$S" --clips "$CLIPS/synth" "$CLIPS/gen" --filter "$FILTER" \
    --json "$OUT/evaluate-clips.json" | tee "$OUT/evaluate-clips.txt"
$PY -m quantize.ptq --student "$S" --recipe litert --data "$CLIPS/calib" --calib 64 --out "$OUT/q-litert"
for p in int8 fp32; do
  $PY -m targets.export --checkpoint "$S" --quantized "$OUT/q-litert" --target tflite --precision $p --layout NHWC \
      --out "$OUT/art"
done
for c in gen synth; do
  $PY -m bench.run --manifest "$OUT/art/manifest.json" --device "$DEVICE" --threads 1 --runs 100 --warmup 10 \
      --peers "${FACEMAT_CACHE:-$HOME/.cache/facemat}/mediapipe" --clips "$CLIPS/$c" --clip-limit 64 \
      --filter "$FILTER" --out "$OUT/bench-$c" | tee "$OUT/bench-$c.txt"
done
