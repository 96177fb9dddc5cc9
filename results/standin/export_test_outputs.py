"""Write ``<run>-test.npz`` for the four committed cpu-profile runs from their final checkpoints.

These runs were made before ``run_fer`` saved test outputs itself; a fresh
``python -m ferlib fer --dataset standin --profile cpu ...`` run writes them directly.
Run from the repository root after the runs (their checkpoints are not committed):

    python results/standin/export_test_outputs.py
"""

from pathlib import Path

import torch

from ferlib.experiments.fer import PROFILES, load_data, save_test_outputs
from ferlib.models import ResNet18
from ferlib.training import predict

OUT = Path("results/standin")
CHECKPOINTS = Path("results/checkpoints/standin")
RUNS = ("softmax", "center", "dda-5-paper", "dda-5-published")

device = torch.device("cpu")
_, test_loader, classes = load_data("standin", PROFILES["cpu"], device, progress=False)
for run in RUNS:
    state = torch.load(CHECKPOINTS / f"cpu-{run}-seed0.pt", map_location=device, weights_only=True)
    model = ResNet18(len(classes))
    model.load_state_dict(state["model"])
    feats, preds, labels = predict(model, test_loader)
    path = save_test_outputs(OUT / f"cpu-{run}-seed0-test.npz", feats, preds, labels)
    print(
        f"{path}: {len(labels)} test images, accuracy {100 * (preds == labels).float().mean():.2f}%"
    )
