#!/usr/bin/env bash
# One-shot GPU experiment for issue #5: longer teacher + 3 students (unc / uniform / no KD), eval on 200 synth test faces.
# Ran on an H200 on 2026-11-26 (student-full was then the default "student"); results in docs/results.md, "Training on a GPU".
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PY:-python3}
TS=${TS:-2000}; SS=${SS:-1500}; B=${B:-32}; R=/tmp/r; mkdir -p $R $OUT
main() {
nvidia-smi -L; $PY -c "import torch;print(torch.__version__, torch.cuda.is_available())"; nproc
$PY -m facemat.data.synth --out $R/test256 --count 200 --seed 7 --split test --size 256 >/dev/null || exit 1
t0=$(date +%s)
timeout ${TT:-200} $PY -m training.teacher --out $R/teacher --steps $TS --batch $B --workers 14 --val-every 500 --ckpt-every 250 --log-every 50 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -n 15
echo "teacher took $(( $(date +%s) - t0 )) s"; t0=$(date +%s)
for k in uncertainty uniform none; do
  a="--teacher $R/teacher/best.pt"; [ $k = none ] && a=""
  timeout ${TSt:-270} $PY -m training.distill $a --arch student-full --out $R/student-$k --kd $k --steps $SS --batch $B --workers 4 --val-every 500 --ckpt-every 250 --log-every 50 > $R/log-$k.txt 2>&1 &
done
wait
echo "students took $(( $(date +%s) - t0 )) s"; t0=$(date +%s)
for k in uncertainty uniform none; do tr '\r' '\n' < $R/log-$k.txt | grep -v "it/s" | tail -n 4; done
$PY -m training.evaluate --checkpoint $R/teacher/best.pt --data $R/test256 --json $R/eval-teacher.json > $R/eval-teacher.txt 2>&1 &
for k in uncertainty uniform none; do
  $PY -m training.evaluate --checkpoint $R/student-$k/best.pt --teacher $R/teacher/best.pt --data $R/test256 --json $R/eval-$k.json > $R/eval-$k.txt 2>&1 &
done
wait
echo "eval took $(( $(date +%s) - t0 )) s"
for f in teacher uncertainty uniform none; do echo "== $f"; grep -v "it/s\|s/it" $R/eval-$f.txt | tail -n 12; done
cp $R/teacher/best.pt $OUT/teacher.pt; for k in uncertainty uniform none; do cp $R/student-$k/best.pt $OUT/student-$k.pt; done
tar czf $OUT/runs.tgz -C $R --exclude='*.pt' --exclude='test256' . && ls -la $OUT
}
main 2>&1 | tee $OUT/log.txt
