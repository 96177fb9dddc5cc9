#!/usr/bin/env bash
# The W-MNIST study (Table 1) with the `paper` profile: the paper's recipe (100 epochs,
# batch 128, lr 0.001 ÷1.25 every 20 epochs, no clipping) on the paper-scale W-MNIST
# (5,840 images per majority digit, 1,460 for 2, 5, 8: 45,260 images, 35,400 steps a run).
# Meant for a GPU; called by `WMNIST_PAPER=1 bash benchmarks/gpu_check.sh`, or alone:
#
#   bash benchmarks/wmnist_paper.sh                 # OUT=/tmp/ferlib-gpu-check by default
#   PROFILE=quick SCALINGS=published bash benchmarks/wmnist_paper.sh   # a CPU smoke test
#
# Trains the six runs of Table 1 under each DDA scaling in SCALINGS (default: "paper
# published"; softmax and center are trained once and shared) and prints each Table 1
# beside the paper's numbers. A run that diverges is printed as such; the script goes on.
# Not measured here (no GPU in the course's workplace): expect minutes per run on a
# current GPU, an hour or more per run on a 2-core CPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
out=${OUT:-/tmp/ferlib-gpu-check}
profile=${PROFILE:-paper}
root=()  # MNIST from the project's data root (data/ or $FERLIB_DATA) unless MNIST_ROOT is set
[ -n "${MNIST_ROOT:-}" ] && root=(--data-root "$MNIST_ROOT")
for scaling in ${SCALINGS:-paper published}; do
    echo "== W-MNIST study, profile $profile, DDA scaling $scaling"
    status=0
    "$py" -m ferlib study --profile "$profile" --scaling "$scaling" --no-progress \
        ${root[@]+"${root[@]}"} --out "$out/wmnist-$profile-$scaling" \
        --checkpoints "$out/wmnist-$profile-checkpoints" || status=$?
    if [ "$status" -eq 1 ]; then
        echo "== (some runs diverged: see above; their rows say so)"
    elif [ "$status" -ne 0 ]; then
        exit "$status"
    fi
done
