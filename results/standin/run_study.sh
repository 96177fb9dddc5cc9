#!/usr/bin/env bash
# The stand-in FER study of notebook 05 (issue 18): seeds 0, 1, 2 of softmax, center and
# DDA gamma = 5 in both scalings, cpu profile (lr 0.01, /10 after epoch 10, 15 epochs,
# tested every epoch). Two processes of one thread each share the 2 cores (one thread per
# process is steadier on a shared machine than two threads that wait on each other); the
# 12 runs are split between them. Run from the repository root; logs land in logs/.
# A run that stops resumes from its checkpoint when the script is run again.
# Then: python -m ferlib fer-report --root results/standin --checkpoints 'runs/standin-ckpt-seed{seed}'
set -uo pipefail
out=results/standin
mkdir -p "$out/logs"
fer() {  # seed, log name, then the losses and scalings
  local s=$1 log=$2
  shift 2
  OMP_NUM_THREADS=1 python -m ferlib fer --dataset standin --profile cpu --seed "$s" "$@" \
    --out "$out" --checkpoints "runs/standin-ckpt-seed$s" --no-progress \
    >> "$out/logs/$log.log" 2>&1 || echo "seed $s $*: exit $? (a diverged run exits 1)"
}
{
  fer 0 seed0 --loss softmax center dda --scaling paper published
  fer 2 seed2-a --loss softmax center
} &
{
  fer 1 seed1 --loss softmax center dda --scaling paper published
  fer 2 seed2-b --loss dda --scaling paper published
} &
wait
