#!/usr/bin/env bash
# Quantize, export and bench a student: PTQ (xnnpack, litert) calibrated on runs/calib (mix), then
# TFLite int8 + fp32 and ExecuTorch int8 + fp32 (NHWC), benched on the generalization set with the peers.
set -eu
S=$1; T=$2; OUT=$3
PY=.venv/bin/python
for r in xnnpack litert; do
  $PY -m quantize.ptq --student "$S" --recipe $r --data runs/calib --calib 64 --out "$OUT/q-$r"
done
for tp in "tflite int8" "tflite fp32" "executorch int8" "executorch fp32"; do
  set -- $tp
  $PY -m targets.export --checkpoint "$S" --quantized "$OUT/q-xnnpack" --quantized "$OUT/q-litert" \
      --target $1 --precision $2 --layout NHWC --out "$OUT/art"
done
$PY -m bench.run --manifest "$OUT/art/manifest.json" --data runs/gen --limit 120 --device epyc-2c \
    --threads 1 --runs 100 --warmup 10 --teacher "$T" --peers "${FACEMAT_CACHE:-$HOME/.cache/facemat}/mediapipe" \
    --out "$OUT/bench-gen"
