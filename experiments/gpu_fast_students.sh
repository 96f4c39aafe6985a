#!/usr/bin/env bash
# One-shot GPU run: distil the two low-resolution students from the GPU teacher, evaluate on held-out faces.
# Ran on an H200 on 2026-11-26; results in docs/results.md, "Training on a GPU". Needs runs/gpu/teacher.pt (carry it).
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PY:-python3}; SS=${SS:-1500}; B=${B:-32}; N=${N:-100}; R=/tmp/r; mkdir -p $R $OUT
main() {
nvidia-smi -L; $PY -c "import torch;print(torch.__version__, torch.cuda.is_available())"
$PY -m facemat.data.synth --out $R/test256 --count $N --seed 7 --split test --size 256 >/dev/null 2>&1 || exit 1
t0=$(date +%s)
for a in student-guided student; do
  timeout ${TSt:-170} $PY -m training.distill --teacher runs/gpu/teacher.pt --arch $a --out $R/$a --kd uncertainty \
    --steps $SS --batch $B --workers 7 --val-every 500 --ckpt-every 250 --log-every 50 > $R/log-$a.txt 2>&1 &
done
wait
echo "students took $(( $(date +%s) - t0 )) s"; t0=$(date +%s)
for a in student-guided student; do tr '\r' '\n' < $R/log-$a.txt | grep -v "it/s" | tail -n 3; cp $R/$a/best.pt $OUT/$a.pt; done
for a in student-guided student; do
  OMP_NUM_THREADS=8 timeout 120 $PY -m training.evaluate --checkpoint $R/$a/best.pt --teacher runs/gpu/teacher.pt --data $R/test256 --json $R/eval-$a.json > $R/eval-$a.txt 2>&1 &
done
wait
echo "eval took $(( $(date +%s) - t0 )) s"
for a in student-guided student; do echo "== $a"; grep -v "it/s\|s/it" $R/eval-$a.txt | tail -n 8; done
tar czf $OUT/runs.tgz -C $R --exclude='*.pt' --exclude='test256' .
}
main 2>&1 | tee $OUT/log.txt
