#!/usr/bin/env bash
# One GPU check of the FER machinery: at most about 5 minutes on one GPU, no network.
#
#   bash benchmarks/gpu_check.sh            # OUT=/tmp/ferlib-gpu-check by default
#
# 1. draws the synthetic stand-in at RAF-DB scale (12,271 train / 3,068 test, 100x100);
# 2. trains ResNet-18 + DDA (γ = 5, paper scaling) with AMP for two epochs on it and prints
#    the second epoch's time and images/s (the first includes warm-up);
# 3. runs benchmarks/bench_fer.py: data path / model ratio (target >= 2), ferlib loop /
#    hand-written loop (target >= 0.95), channels-last / default layout;
# 4. with two or more GPUs, a 2-GPU torchrun smoke run (NCCL) of the quick profile;
# 5. only with WMNIST_PAPER=1 (off by default: far longer than the rest), the W-MNIST study
#    with the `paper` profile (paper-scale W-MNIST, 100 epochs), printing its Table 1
#    (benchmarks/wmnist_paper.sh; MNIST must be in data/MNIST/raw or MNIST_ROOT/MNIST/raw).
#
#   WMNIST_PAPER=1 bash benchmarks/gpu_check.sh
#
# Expected output (numbers are this format, not these values):
#   == GPU: NVIDIA <name>, torch <version>, CUDA <version>
#   == stand-in: 12271 train / 3068 test images in <OUT>/standin/scale1-size100
#   == ResNet-18 + DDA, AMP: epoch 2 took <s> s, <n> images/s (train), test accuracy <a>%
#   (a) data path vs model train steps (target >= 2)
#     device loader  <n> images/s / ResNet-18 train steps  <n> images/s / ratio <r>
#   (b) ferlib's train() vs a hand-written loop, center + DDA (target >= 0.95) ... ratio <r>
#   (c) memory layout of ResNet-18 train steps ... ratio <r>
#   == 2-GPU torchrun: ok, world size 2 (or: skipped, <k> GPU)
#   == W-MNIST study, profile paper, DDA scaling paper      (only with WMNIST_PAPER=1)
#   run  λ  γ  paper %  ours %  d2 d5 d8  NCM %  d2 d5 d8   (one line per run of Table 1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
[ -x "$py" ] || py=python3
out=${OUT:-/tmp/ferlib-gpu-check}
mkdir -p "$out"

"$py" - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu_check.sh: no CUDA GPU visible to PyTorch"
print(f"== GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
PY

OUT="$out" "$py" - <<'PY'
import os
import time
from dataclasses import replace
from pathlib import Path

from ferlib.experiments.fer import PROFILES, load_data, run_fer
from ferlib.runtime import pick_device

out = Path(os.environ["OUT"])
profile = replace(PROFILES["rafdb-paper"].with_train(epochs=2), name="gpu-check", pretrained=False,
                  standin_scale=1.0, standin_size=100, crop=90)
device = pick_device()
tic = time.perf_counter()
data = load_data("standin", profile, device, out / "standin", progress=False)
print(f"== stand-in: {data[0].num_samples} train / {data[1].num_samples} test images in "
      f"{out / 'standin'}/scale1-size100 ({time.perf_counter() - tic:.0f} s with decoding)")
result = run_fer("standin", "dda", profile, out_dir=out / "results",
                 checkpoints=out / "checkpoints", progress=False, data=data)
last = result["history"][-1]
print(f"== ResNet-18 + DDA, AMP: epoch 2 took {last['seconds']:.1f} s, "
      f"{data[0].num_samples / last['seconds']:.0f} images/s (train), "
      f"test accuracy {result.get('accuracy', 'diverged')}%")
PY

"$py" benchmarks/bench_fer.py --images 4096

gpus=$("$py" -c 'import torch; print(torch.cuda.device_count())')
if [ "$gpus" -ge 2 ]; then
    torchrun=$(dirname "$py")/torchrun
    [ -x "$torchrun" ] || torchrun=torchrun
    "$torchrun" --nproc_per_node=2 -m ferlib fer --dataset standin --profile quick \
        --loss dda --data-root "$out/standin-quick" --out "$out/ddp" --no-progress > "$out/ddp.log"
    "$py" -c "import json,sys; r=json.load(open('$out/ddp/quick-dda-5-paper-seed0.json')); \
print(f\"== 2-GPU torchrun: {r['status']}, world size {r['world_size']}\")"
else
    echo "== 2-GPU torchrun: skipped, $gpus GPU"
fi

if [ "${WMNIST_PAPER:-0}" = 1 ]; then
    OUT="$out" PYTHON="$py" bash benchmarks/wmnist_paper.sh
else
    echo "== W-MNIST paper profile: skipped (WMNIST_PAPER=1 to run it)"
fi
