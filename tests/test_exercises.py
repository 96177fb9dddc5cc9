"""Every exercise check fails for plausible wrong answers, and passes for the solution.

For each exercise the test takes the solution cell and the check cells *from the notebook*
(so the test and the notebook cannot drift apart), builds the context the check needs with a
small setup of its own (no training), and runs the check three ways: with the notebook's
solution (must pass), with nbgrader's stub (must fail) and with each wrong answer below (must
fail). A wrong answer is a whole replacement for the solution cell: the mistakes a student
plausibly makes (a wrong sign, a missing 1/2 or 1/m, the paper's printed Eq. 8 and Eq. 10, a
division by a count that is zero for an absent class, a hard-coded value, an alias that edits
shared data).

The check cells carry hidden tests (``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``,
see ``ferlib.classroom``): the student edition shows only the *visible* checks, the grader
runs both. So every wrong answer must fail the visible checks alone (what the student sees
is already a real test), and the hidden checks, run alone, must pass for the solution and
fail for at least one wrong answer of every exercise (they can fail: they test something).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ferlib.classroom import HIDDEN_BEGIN, HIDDEN_END

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- contexts

SETUP_MNIST = """
import torch
import ferlib.checks
import ferlib.data
images, labels = ferlib.data.load_mnist(MNIST_ROOT, train=True, download=False)
"""

SETUP_01 = """
import torch
import torch.nn.functional as F
import ferlib.checks
g = torch.Generator().manual_seed(0)
m, d, K = 8, 2, 10
x = torch.randn(m, d, generator=g)
W = torch.randn(d, K, generator=g)
B = torch.randn(K, generator=g)
y = torch.randint(0, K, (m,), generator=g)
z = x @ W + B
feats = 5 * torch.randn(300, 2, generator=g)  # stand-ins for the trained model's outputs
W_cls = torch.randn(10, 2, generator=g)
preds = (feats @ W_cls.T).argmax(1)
"""

SETUP_02 = """
import torch
import ferlib.checks
from ferlib.losses import CenterDDALoss, center_loss
g = torch.Generator().manual_seed(3)
xs, cs = torch.randn(12, 4, generator=g), torch.randn(5, 4, generator=g)
ys = torch.randint(0, 5, (12,), generator=g)
"""

SETUP_03 = """
import torch
import torch.nn.functional as F
import ferlib.checks
from ferlib.losses import dda_loss, squared_distances
g = torch.Generator().manual_seed(0)
m, D, K = 6, 2, 4
x = torch.randn(m, D, generator=g, dtype=torch.float64)
c = 2 * torch.randn(K, D, generator=g, dtype=torch.float64)
y = torch.randint(0, K, (m,), generator=g)
xa, ca = x.clone().requires_grad_(True), c.clone().requires_grad_(True)
dda_loss(xa, y, ca).backward()
"""

SETUP_04 = """
import json
import torch
import ferlib.checks
from ferlib.data import WMNIST_COUNTS, load_wmnist
minority = [2, 5, 8]
table = json.loads(TABLE_JSON)  # the committed seed-0 study: non-zero minority accuracies
"""

# ----------------------------------------------------------------------------- wrong answers

SETUP_05 = """
import numpy as np
import torch
import ferlib.checks
from ferlib.data import crop_offsets
from ferlib.metrics import confusion_matrix, mean_class_accuracy
CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
_g = torch.Generator().manual_seed(0)
_labels = torch.randint(0, 7, (200,), generator=_g)
_guess = torch.randint(0, 7, (200,), generator=_g)
_preds = torch.where(torch.rand(200, generator=_g) < 0.6, _labels, _guess)
RUNS = {"dda": {"run": "dda-5-paper"}}  # stand-ins for the notebook's trained runs
shown = "dda"  # the run the notebook shows (DDA, unless it diverged)

def outputs(run):
    return None, _preds, _labels
"""

CASES = {
    ("00_setup", 1): (
        SETUP_MNIST,
        {
            "off by one digit": "my_counts = (labels[:, None] == torch.arange(1, 11)).sum(0)",
            "a subset": "my_counts = torch.bincount(labels[:10000], minlength=10)",
            "one count short": "my_counts = torch.bincount(labels)[:9]",
        },
    ),
    ("00_setup", 2): (
        SETUP_MNIST,
        {
            "swapped constants": (
                "raw = images * ferlib.data.MNIST_MEAN + ferlib.data.MNIST_STD\n"
                "raw_mean, raw_std = raw.mean().item(), raw.std().item()"
            ),
            "normalised twice": (
                "raw = (images - ferlib.data.MNIST_MEAN) / ferlib.data.MNIST_STD\n"
                "raw_mean, raw_std = raw.mean().item(), raw.std().item()"
            ),
            "variance for std": (
                "raw = images * ferlib.data.MNIST_STD + ferlib.data.MNIST_MEAN\n"
                "raw_mean, raw_std = raw.mean().item(), raw.var().item()"
            ),
            "un-normalised in place": (
                "raw = images.mul_(ferlib.data.MNIST_STD).add_(ferlib.data.MNIST_MEAN)\n"
                "raw_mean, raw_std = raw.mean().item(), raw.std().item()"
            ),
            "in place, then copied": (
                "images *= ferlib.data.MNIST_STD\nimages += ferlib.data.MNIST_MEAN\n"
                "raw = images.clone()\n"
                "raw_mean, raw_std = raw.mean().item(), raw.std().item()"
            ),
        },
    ),
    ("00_setup", 3): (
        SETUP_MNIST,
        {
            "tensors, not numbers": (
                "net = LeNetsPP()\nnum_params = len(list(net.parameters()))\n"
                "with torch.no_grad():\n    features, logits = net(images[:16])"
            ),
            "classifier left out": (
                "net = LeNetsPP()\nnum_params = sum(p.numel() for p in net.features.parameters())\n"
                "with torch.no_grad():\n    features, logits = net(images[:16])"
            ),
            "outputs swapped": (
                "net = LeNetsPP()\nnum_params = sum(p.numel() for p in net.parameters())\n"
                "with torch.no_grad():\n    logits, features = net(images[:16])"
            ),
        },
    ),
    ("01_softmax_loss", 1): (
        SETUP_01,
        {
            "no max subtracted": (
                "def my_softmax_loss(logits, labels):\n"
                "    log_p = logits - logits.exp().sum(dim=1, keepdim=True).log()\n"
                "    return -log_p[torch.arange(len(labels)), labels].mean()"
            ),
            "sum, not mean": (
                "def my_softmax_loss(logits, labels):\n"
                "    s = logits - logits.max(dim=1, keepdim=True).values\n"
                "    log_p = s - s.exp().sum(dim=1, keepdim=True).log()\n"
                "    return -log_p[torch.arange(len(labels)), labels].sum()"
            ),
            "probability, not log": (
                "def my_softmax_loss(logits, labels):\n"
                "    s = logits - logits.max(dim=1, keepdim=True).values\n"
                "    p = s.exp() / s.exp().sum(dim=1, keepdim=True)\n"
                "    return -p[torch.arange(len(labels)), labels].mean()"
            ),
            "a detached result": (
                "def my_softmax_loss(logits, labels):\n"
                "    s = logits - logits.max(dim=1, keepdim=True).values\n"
                "    log_p = s - s.exp().sum(dim=1, keepdim=True).log()\n"
                "    return -log_p[torch.arange(len(labels)), labels].mean().detach()"
            ),
            "a number made a tensor again": (
                "def my_softmax_loss(logits, labels):\n"
                "    s = logits - logits.max(dim=1, keepdim=True).values\n"
                "    log_p = s - s.exp().sum(dim=1, keepdim=True).log()\n"
                "    return torch.tensor(-log_p[torch.arange(len(labels)), labels].mean().item())"
            ),
            "max subtracted in place": (
                "def my_softmax_loss(logits, labels):\n"
                "    logits -= logits.max(dim=1, keepdim=True).values\n"
                "    log_p = logits - logits.exp().sum(dim=1, keepdim=True).log()\n"
                "    return -log_p[torch.arange(len(labels)), labels].mean()"
            ),
        },
    ),
    ("01_softmax_loss", 2): (
        SETUP_01,
        {
            "wrong sign": "my_grad_z = (F.one_hot(y, K).to(z.dtype) - torch.softmax(z, dim=1)) / m",
            "missing 1/m": "my_grad_z = torch.softmax(z, dim=1) - F.one_hot(y, K).to(z.dtype)",
        },
    ),
    ("01_softmax_loss", 3): (
        SETUP_01,
        {
            "normalisation skipped": (
                "def normalise_rows(features):\n    return features\n\n"
                "def agreement_rate(a, b):\n    return (a == b).float().mean().item()"
            ),
            "columns normalised": (
                "def normalise_rows(features):\n"
                "    return features / features.norm(dim=0, keepdim=True)\n\n"
                "def agreement_rate(a, b):\n    return (a == b).float().mean().item()"
            ),
            "hard-coded agreement": (
                "def normalise_rows(features):\n"
                "    return features / features.norm(dim=1, keepdim=True)\n\n"
                "def agreement_rate(a, b):\n    return 1.0"
            ),
            "a count, not a fraction": (
                "def normalise_rows(features):\n"
                "    return features / features.norm(dim=1, keepdim=True)\n\n"
                "def agreement_rate(a, b):\n    return (a == b).sum().item()"
            ),
        },
    ),
    ("02_center_loss", 1): (
        SETUP_02,
        {
            "missing 1/2": (
                "def my_center_loss(features, labels, centers):\n"
                "    return ((features - centers[labels]) ** 2).sum() / len(features)"
            ),
            "distances, not squared": (
                "def my_center_loss(features, labels, centers):\n"
                "    return (features - centers[labels]).norm(dim=1).sum() / (2 * len(features))"
            ),
            "mean over m * D": (
                "def my_center_loss(features, labels, centers):\n"
                "    return ((features - centers[labels]) ** 2).mean() / 2"
            ),
        },
    ),
    ("02_center_loss", 2): (
        SETUP_02,
        {
            "divides by the count (NaN when absent)": (
                "def my_wen_delta(features, labels, centers):\n"
                "    counts = torch.zeros(len(centers)).index_add_(0, labels, "
                "torch.ones(len(labels)))\n"
                "    sums = torch.zeros_like(centers).index_add_(0, labels, features)\n"
                "    return centers - sums / counts[:, None]"
            ),
            "n_k instead of 1 + n_k": (
                "def my_wen_delta(features, labels, centers):\n"
                "    counts = torch.zeros(len(centers)).index_add_(0, labels, "
                "torch.ones(len(labels)))\n"
                "    sums = torch.zeros_like(centers).index_add_(0, labels, features)\n"
                "    return (counts[:, None] * centers - sums) / counts.clamp(min=1)[:, None]"
            ),
            "indexed assignment drops repeats": (
                "def my_wen_delta(features, labels, centers):\n"
                "    delta = torch.zeros_like(centers)\n"
                "    delta[labels] += (centers[labels] - features) / 2\n"
                "    return delta"
            ),
        },
    ),
    ("02_center_loss", 3): (
        SETUP_02,
        {
            "wrong sign": "my_grad_x = (cs[ys] - xs) / len(xs)",
            "missing 1/m": "my_grad_x = xs - cs[ys]",
            "factor 2": "my_grad_x = 2 * (xs - cs[ys]) / len(xs)",
        },
    ),
    ("03_dda_loss", 1): (
        SETUP_03,
        {
            "exp / sum overflows far away": (
                "def my_dda_loss(features, labels, centers):\n"
                "    d = ((features[:, None, :] - centers[None]) ** 2).sum(-1)\n"
                "    p = torch.exp(-d) / torch.exp(-d).sum(1, keepdim=True)\n"
                "    return -p[torch.arange(len(labels)), labels].log().sum() / (2 * len(labels))"
            ),
            "missing 1/2": (
                "def my_dda_loss(features, labels, centers):\n"
                "    d = ((features[:, None, :] - centers[None]) ** 2).sum(-1)\n"
                "    return -torch.log_softmax(-d, 1)[torch.arange(len(labels)), labels].mean()"
            ),
            "+d, the paper's sign misread": (
                "def my_dda_loss(features, labels, centers):\n"
                "    d = ((features[:, None, :] - centers[None]) ** 2).sum(-1)\n"
                "    log_p = torch.log_softmax(d, 1)\n"
                "    return -log_p[torch.arange(len(labels)), labels].sum() / (2 * len(labels))"
            ),
        },
    ),
    ("03_dda_loss", 2): (
        SETUP_03,
        {
            "the printed Eq. 8": (
                "def my_grad_x(features, labels, centers):\n"
                "    p = torch.softmax(-squared_distances(features, centers), dim=1)\n"
                "    own = p[torch.arange(len(labels)), labels][:, None]\n"
                "    return (1 - own) * (features - centers[labels]) / len(features)"
            ),
            "wrong sign": (
                "def my_grad_x(features, labels, centers):\n"
                "    p = torch.softmax(-squared_distances(features, centers), dim=1)\n"
                "    return (centers[labels] - p @ centers) / len(features)"
            ),
            "missing 1/m": (
                "def my_grad_x(features, labels, centers):\n"
                "    p = torch.softmax(-squared_distances(features, centers), dim=1)\n"
                "    return p @ centers - centers[labels]"
            ),
        },
    ),
    ("03_dda_loss", 3): (
        SETUP_03,
        {
            "the printed Eq. 10": (
                "def my_grad_c(features, labels, centers):\n"
                "    p = torch.softmax(-squared_distances(features, centers), dim=1)\n"
                "    w = F.one_hot(labels, len(centers)).to(features.dtype) - p\n"
                "    return w.T @ (centers[labels] - features) / len(features)"
            ),
            "the sum of W dropped": (
                "def my_grad_c(features, labels, centers):\n"
                "    p = torch.softmax(-squared_distances(features, centers), dim=1)\n"
                "    w = F.one_hot(labels, len(centers)).to(features.dtype) - p\n"
                "    return (centers - w.T @ features) / len(features)"
            ),
            "W with the wrong sign": (
                "def my_grad_c(features, labels, centers):\n"
                "    p = torch.softmax(-squared_distances(features, centers), dim=1)\n"
                "    w = p - F.one_hot(labels, len(centers)).to(features.dtype)\n"
                "    return (w.sum(0)[:, None] * centers - w.T @ features) / len(features)"
            ),
        },
    ),
    ("04_wmnist_study", 1): (
        SETUP_04,
        {
            "times m": "def effective_gamma(gamma, batch_size):\n    return gamma * batch_size",
            "over m squared": (
                "def effective_gamma(gamma, batch_size):\n    return gamma / batch_size**2"
            ),
            "unchanged": "def effective_gamma(gamma, batch_size):\n    return gamma",
        },
    ),
    ("04_wmnist_study", 2): (
        SETUP_04,
        {
            "always divides by 3": (
                "def minority_mean(per_class, minority):\n"
                "    return sum(per_class[k] for k in minority) / 3"
            ),
            "mean over every class": (
                "def minority_mean(per_class, minority):\n"
                "    return sum(per_class) / len(per_class)"
            ),
            "off by one index": (
                "def minority_mean(per_class, minority):\n"
                "    return sum(per_class[k - 1] for k in minority) / len(minority)"
            ),
        },
    ),
    ("04_wmnist_study", 3): (
        SETUP_04,
        {
            "alias edited in place": (
                "harsh_counts = WMNIST_COUNTS\nfor k in minority:\n    harsh_counts[k] = 20"
            ),
            "the old counts": "harsh_counts = dict(WMNIST_COUNTS)",
            "majority dropped": "harsh_counts = {k: 20 for k in minority}",
            "every digit cut": "harsh_counts = {k: 20 for k in WMNIST_COUNTS}",
        },
    ),
    ("05_rafdb_training", 1): (
        SETUP_05,
        {
            "centre rounds up": (
                "def my_crop_offsets(height, width, size):\n"
                "    dy, dx = height - size, width - size\n"
                "    return [((dy + 1) // 2, (dx + 1) // 2), (0, 0), (0, dx), (dy, 0), (dy, dx)]"
            ),
            "height and width swapped": (
                "def my_crop_offsets(height, width, size):\n"
                "    dy, dx = height - size, width - size\n"
                "    return [(dy // 2, dx // 2), (0, 0), (0, dy), (dx, 0), (dy, dx)]"
            ),
            "corners at the crop size": (
                "def my_crop_offsets(height, width, size):\n"
                "    dy, dx = height - size, width - size\n"
                "    return [(dy // 2, dx // 2), (0, 0), (0, size), (size, 0), (size, size)]"
            ),
            "centre last": (
                "def my_crop_offsets(height, width, size):\n"
                "    dy, dx = height - size, width - size\n"
                "    return [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]"
            ),
        },
    ),
    ("05_rafdb_training", 2): (
        SETUP_05,
        {
            "overall accuracy": (
                "def average_accuracy(cm):\n"
                "    cm = torch.as_tensor(cm, dtype=torch.float64)\n"
                "    return (100 * cm.diag().sum() / cm.sum()).item()"
            ),
            "columns normalised": (
                "def average_accuracy(cm):\n"
                "    cm = torch.as_tensor(cm, dtype=torch.float64)\n"
                "    return (100 * cm.diag() / cm.sum(0).clamp(min=1)).mean().item()"
            ),
            "a fraction, not percent": (
                "def average_accuracy(cm):\n"
                "    cm = torch.as_tensor(cm, dtype=torch.float64)\n"
                "    rows = cm.sum(1)\n"
                "    return (cm.diag()[rows > 0] / rows[rows > 0]).mean().item()"
            ),
        },
    ),
    ("05_rafdb_training", 3): (
        SETUP_05,
        {
            "raw counts": (
                "def most_confused(cm, names, k):\n"
                "    cm = torch.as_tensor(cm, dtype=torch.float64).clone()\n"
                "    rates = cm / cm.sum(1, keepdim=True)\n"
                "    cm.fill_diagonal_(-1.0)\n"
                "    order = cm.flatten().argsort(descending=True)[:k].tolist()\n"
                "    n, flat = len(names), rates.flatten()\n"
                "    return [(names[i // n], names[i % n], flat[i].item()) for i in order]"
            ),
            "diagonal kept": (
                "def most_confused(cm, names, k):\n"
                "    cm = torch.as_tensor(cm, dtype=torch.float64)\n"
                "    rates = cm / cm.sum(1, keepdim=True)\n"
                "    values, flat = rates.flatten().topk(k)\n"
                "    n = len(names)\n"
                "    return [(names[i // n], names[i % n], v) for i, v in "
                "zip(flat.tolist(), values.tolist(), strict=True)]"
            ),
            "true and predicted swapped": (
                "def most_confused(cm, names, k):\n"
                "    cm = torch.as_tensor(cm, dtype=torch.float64)\n"
                "    rates = cm / cm.sum(1, keepdim=True)\n"
                "    rates.fill_diagonal_(-1.0)\n"
                "    values, flat = rates.flatten().topk(k)\n"
                "    n = len(names)\n"
                "    return [(names[i % n], names[i // n], v) for i, v in "
                "zip(flat.tolist(), values.tolist(), strict=True)]"
            ),
        },
    ),
}

#: wrong answers that fail before the check runs, with the error the student sees instead
RAISES = {"alias edited in place": TypeError}  # WMNIST_COUNTS is read-only

# ----------------------------------------------------------------------------- machinery


def exercise_cells(notebook: str, number: int) -> tuple[str, list[str]]:
    """(the solution cell, the check cells after it) of exercise ``number``."""
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    src = ["".join(c["source"]) for c in cells]
    heads = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown" and re.search(r"^#{2,4} Exercise \d+", src[i], re.M)
    ]
    start = next(i for i in heads if re.search(rf"Exercise {number}\b", src[i]))
    end = min([i for i in heads if i > start] + [len(cells)])
    code = [src[i] for i in range(start + 1, end) if cells[i]["cell_type"] == "code"]
    solution = [i for i, s in enumerate(code) if "### BEGIN SOLUTION" in s]
    assert len(solution) == 1, f"{notebook} exercise {number}: expected one solution cell"
    return code[solution[0]], code[solution[0] + 1 :]


def stub(solution: str) -> str:
    """What nbgrader's ClearSolutions leaves for the student."""
    return re.sub(
        r"^( *)### BEGIN SOLUTION\n.*?^ *### END SOLUTION$",
        r"\1raise NotImplementedError()",
        solution,
        flags=re.M | re.S,
    )


def visible(check: str) -> str:
    """What the student edition shows of a check cell (nbgrader's ClearHiddenTests)."""
    return re.sub(rf"^ *{HIDDEN_BEGIN}\n.*?^ *{HIDDEN_END}(\n|$)", "", check, flags=re.M | re.S)


def hidden(checks: list[str]) -> str:
    """The hidden blocks of an exercise's check cells, joined."""
    blocks = [
        b
        for check in checks
        for b in re.findall(rf"^ *{HIDDEN_BEGIN}\n(.*?)^ *{HIDDEN_END}$", check, flags=re.M | re.S)
    ]
    return "\n".join(blocks)


def run_exercise(setup: str, answer: str, checks: list[str], context: dict) -> None:
    namespace = dict(context)
    exec(setup, namespace)
    if "LeNetsPP" in answer:
        exec("from ferlib.models import LeNetsPP", namespace)
    exec(answer, namespace)
    for check in checks:
        exec(check, namespace)


@pytest.fixture(scope="module")
def context(mnist_root, monkeypatch_module) -> dict:
    monkeypatch_module.setenv("FERLIB_DATA", str(mnist_root))  # load_wmnist() reads it
    table = (ROOT / "results" / "wmnist-published" / "table1.json").read_text()
    return {"MNIST_ROOT": mnist_root, "TABLE_JSON": table}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


ALL = sorted(CASES)
WRONG = [(nb, n, name) for (nb, n), (_, wrong) in sorted(CASES.items()) for name in wrong]


def test_every_exercise_has_wrong_answers():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in notebooks:
        text = path.read_text()
        numbers = sorted({int(n) for n in re.findall(r"#{2,4} Exercise (\d+)", text)})
        for n in numbers:
            assert (path.stem, n) in CASES, f"{path.name} exercise {n} has no wrong answers here"


@pytest.mark.parametrize(("notebook", "number"), ALL, ids=[f"{a}-ex{b}" for a, b in ALL])
def test_solution_passes_and_stub_fails(notebook, number, context, capsys):
    solution, checks = exercise_cells(notebook, number)
    setup = CASES[(notebook, number)][0]
    run_exercise(setup, solution, checks, context)
    assert "✓" in capsys.readouterr().out
    with pytest.raises(NotImplementedError):
        run_exercise(setup, stub(solution), checks, context)


@pytest.mark.parametrize(
    ("notebook", "number", "wrong"), WRONG, ids=[f"{a}-ex{b}-{c}" for a, b, c in WRONG]
)
def test_wrong_answer_fails_the_visible_check(notebook, number, wrong, context):
    _, checks = exercise_cells(notebook, number)
    setup, answers = CASES[(notebook, number)]
    with pytest.raises(RAISES.get(wrong, AssertionError)):
        run_exercise(setup, answers[wrong], [visible(c) for c in checks], context)


def test_visible_checks_are_the_student_editions():
    """visible() above does what nbgrader's ClearHiddenTests does."""
    from nbformat.v4 import new_code_cell
    from nbgrader.preprocessors import ClearHiddenTests

    for notebook, number in ALL:
        for check in exercise_cells(notebook, number)[1]:
            cell = new_code_cell(check)
            ClearHiddenTests(enforce_metadata=False).preprocess_cell(cell, {}, 0)
            assert visible(check).rstrip("\n") == cell.source.rstrip("\n")


@pytest.mark.parametrize(("notebook", "number"), ALL, ids=[f"{a}-ex{b}" for a, b in ALL])
def test_hidden_checks_pass_for_the_solution_and_catch_wrong_answers(
    notebook, number, context, capsys
):
    solution, checks = exercise_cells(notebook, number)
    setup, answers = CASES[(notebook, number)]
    block = hidden(checks)
    assert block.strip(), f"{notebook} exercise {number} has no hidden tests"
    run_exercise(setup, solution, [block], context)  # alone, right after the solution
    assert "✓" in capsys.readouterr().out or "assert" in block
    caught = []
    for wrong, answer in answers.items():
        try:
            run_exercise(setup, answer, [block], context)
        except NameError as err:  # the hidden block leans on a name nobody defined
            raise AssertionError(f"{notebook} ex{number}, {wrong!r}: {err}") from err
        except Exception:  # any error scores zero in the grader
            caught.append(wrong)
    capsys.readouterr()
    print(f"{notebook} ex{number}: hidden checks catch {caught} of {list(answers)}")
    assert caught, f"{notebook} exercise {number}: the hidden checks pass every wrong answer"
