"""The course plumbing (ferlib.course, ferlib.checks) and the rules every notebook follows.

The notebook tests are generic over ``notebooks/*.ipynb``, so a new notebook is covered as
soon as it is added. What a notebook must look like:

* first cell (markdown): a title and an "Open in Colab" badge pointing at the notebook itself;
* a markdown cell with "Learning goals" before the first code cell;
* first code cell: installs ferlib from ``ferlib.course.REPO_URL`` when ``"google.colab" in
  sys.modules``, sets ``PROFILE = ferlib.course.profile()`` and prints ``... profile: <name>``
  (the committed output states which profile produced the outputs);
* a "## Summary" section and 2-4 exercises, each a heading "### Exercise <n> ..." followed by
  at least one solution cell (``### BEGIN SOLUTION`` ... ``### END SOLUTION``) and then a check
  cell (``ferlib.checks`` or ``assert``);
* solution markers only in code cells, each alone on its line (nbgrader's ClearSolutions
  then makes the student copy);
* committed outputs executed top to bottom in a fresh kernel, with no stderr, warnings,
  errors or progress bars, and an execution count on every cell that has outputs (nbval).
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

import ferlib.course
import ferlib.data
from ferlib import checks, course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
COLAB_PREFIX = (
    course.REPO_URL.replace("https://github.com/", "https://colab.research.google.com/github/")
    + f"/blob/{course.COURSE_REF}/notebooks/"
)


# ----------------------------------------------------------------------------- ferlib.course


def test_repo_url_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", course.REPO_URL)


def test_repo_url_is_written_once_in_the_library():
    slug = course.REPO_URL.removeprefix("https://github.com/")
    holders = [p.name for p in (ROOT / "ferlib").glob("*.py") if slug in p.read_text()]
    assert holders == ["course.py"]


def test_course_ref_is_the_release_tag_of_this_version():
    assert course.COURSE_REF == f"v{ferlib.__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(rf'^version = "{re.escape(ferlib.__version__)}"$', pyproject, re.M)


@pytest.mark.parametrize(
    "value, expected", [("quick", "quick"), ("full", "full"), (" Full ", "full")]
)
def test_profile_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("FERLIB_PROFILE", value)
    assert course.profile() == expected


@pytest.mark.parametrize("cuda, expected", [(True, "full"), (False, "quick")])
@pytest.mark.parametrize("unset", [True, False])
def test_profile_unset_follows_the_hardware(monkeypatch, cuda, expected, unset):
    if unset:
        monkeypatch.delenv("FERLIB_PROFILE", raising=False)
    else:
        monkeypatch.setenv("FERLIB_PROFILE", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert course.profile() == expected


def test_profile_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("FERLIB_PROFILE", "fast")
    with pytest.raises(ValueError) as err:
        course.profile()
    message = str(err.value)
    assert "'fast'" in message and "'quick'" in message and "'full'" in message
    assert "FERLIB_PROFILE" in message


def test_in_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert course.in_colab() is False
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert course.in_colab() is True


def test_runs_dir_prefers_the_env_then_a_mounted_drive(tmp_path, monkeypatch):
    monkeypatch.delenv(course.RUNS_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert course.runs_dir("05-x") == Path("..") / "runs" / "05-x"
    # on Colab without Drive: the local folder (lost with the runtime, but nothing else exists)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    drive = tmp_path / "drive" / "MyDrive"
    monkeypatch.setattr(course, "DRIVE_RUNS", drive / "ferlib-runs")
    assert course.runs_dir("05-x") == Path("..") / "runs" / "05-x"
    drive.mkdir(parents=True)  # Drive mounted: checkpoints survive a disconnect
    assert course.runs_dir("05-x") == drive / "ferlib-runs" / "05-x"
    monkeypatch.setenv(course.RUNS_ENV, str(tmp_path / "mine"))
    assert course.runs_dir("05-x") == tmp_path / "mine" / "05-x"


def test_environment_report_keys_and_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("FERLIB_PROFILE", "quick")
    report = course.environment_report(tmp_path)
    expected = {"python", "torch", "torchvision", "ferlib", "device", "profile", "datasets"}
    assert expected <= set(report)
    assert report["datasets"] == {"MNIST": False, "RAF-DB": False}
    assert report["profile"] == "quick" and report["ferlib"] == ferlib.__version__
    assert report["device"].split()[0] in {"cpu", "cuda", "mps"}

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ferlib.data.MNIST_FILES:
        (raw / name).touch()
    labels = tmp_path / "RAF-DB" / "basic" / "EmoLabel" / "list_patition_label.txt"
    labels.parent.mkdir(parents=True)
    labels.touch()
    assert course.environment_report(tmp_path)["datasets"] == {"MNIST": True, "RAF-DB": True}


def test_environment_report_needs_all_four_mnist_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / ferlib.data.MNIST_FILES[0]).touch()
    assert course.environment_report(tmp_path)["datasets"]["MNIST"] is False


def test_print_environment(tmp_path, capsys):
    course.print_environment(course.environment_report(tmp_path))
    out = capsys.readouterr().out
    assert "torch" in out and "dataset MNIST" in out and "missing" in out


def test_quiet_silences_warnings_only_inside():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with course.quiet():
            warnings.warn("hidden", UserWarning, stacklevel=1)
        warnings.warn("shown", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["shown"]


# ----------------------------------------------------------------------------- ferlib.checks


def test_rel_error():
    assert checks.rel_error(1.0, 3.0) == pytest.approx(0.5)
    assert checks.rel_error(torch.zeros(3), torch.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        checks.rel_error(torch.zeros(2), torch.zeros(3))


def test_check_close_passes_and_prints(capsys):
    checks.check_close(torch.tensor([1.0, 2.0]), [1.0, 2.0], "values")
    assert "✓ values" in capsys.readouterr().out


@pytest.mark.parametrize(
    "actual, expected, words",
    [
        (
            torch.tensor([1.0, 2.5]),
            torch.tensor([1.0, 2.0]),
            ["values", "not close", "2.5", "1 of 2"],
        ),
        (torch.zeros(3), torch.zeros(2), ["values", "shape (2,)", "(3,)"]),
        (None, torch.zeros(2), ["values", "None", "return"]),
        (torch.tensor([float("nan")]), torch.zeros(1), ["values", "NaN"]),
        ("abc", 1.0, ["values", "str"]),
    ],
)
def test_check_close_fails_helpfully(actual, expected, words):
    with pytest.raises(AssertionError) as err:
        checks.check_close(actual, expected, "values")
    for word in words:
        assert word in str(err.value)


def test_check_shape(capsys):
    checks.check_shape(torch.zeros(4, 2), (4, 2), "x")
    checks.check_shape(torch.zeros(4, 2), (None, 2), "x")
    assert capsys.readouterr().out.count("✓ x") == 2
    with pytest.raises(AssertionError, match=r"x: expected shape \(any, 3\), got \(4, 2\)"):
        checks.check_shape(torch.zeros(4, 2), (None, 3), "x")
    with pytest.raises(AssertionError, match="expected shape"):
        checks.check_shape(torch.zeros(4), (4, 1), "x")


def test_check_grad_matches(capsys):
    ref = torch.randn(5, 3, dtype=torch.float64)
    checks.check_grad_matches(ref.clone(), ref, "g")
    assert "✓ g: relative error" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"g: relative error 3\.33e-01"):
        checks.check_grad_matches(2 * ref, ref, "g")
    with pytest.raises(AssertionError, match="shape"):
        checks.check_grad_matches(ref.T, ref, "g")
    with pytest.raises(AssertionError, match="relative error nan"):
        checks.check_grad_matches(ref * float("nan"), ref, "g")


def test_check_inputs_unchanged_catches_an_in_place_edit_and_spares_the_caller(capsys):
    x, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])
    before = x.clone()
    checks.check_inputs_unchanged(lambda a, b: (a - a.max()).sum(), (x, labels), "f")
    assert "✓ f: leaves its inputs unchanged" in capsys.readouterr().out

    def shift(a, b):
        a -= a.max(dim=1, keepdim=True).values
        return a.sum()

    with pytest.raises(AssertionError, match=r"f changed its argument 1 .* in place"):
        checks.check_inputs_unchanged(shift, (x, labels), "f")
    assert torch.equal(x, before)  # it ran on copies


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (lambda a: (a**2).sum().detach(), "detached from autograd's graph"),
        (lambda a: torch.tensor((a**2).sum().item()), "detached from autograd's graph"),
        (lambda a: (a**2).sum().item(), "returned a float, not a tensor"),
        (lambda a: a.new_ones((), requires_grad=True) * 2, "does not depend"),
        (lambda a: a.sqrt().sum(), "NaN or infinite gradient"),
    ],
    ids=["detach", "item-tensor", "item", "unused", "nan"],
)
def test_check_differentiable_fails_helpfully(fn, words, capsys):
    x = torch.tensor([[1.0, 0.0], [-2.0, 3.0]])
    checks.check_differentiable(lambda a: (a**2).sum(), x, "f")
    assert "✓ f: differentiable" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=re.escape(words)):
        checks.check_differentiable(fn, x, "f")


def test_check_new_tensor():
    images = torch.rand(3, 4)
    checks.check_new_tensor(images * 2 + 1, images, "raw", "images")
    with pytest.raises(AssertionError, match="raw shares its memory with images"):
        checks.check_new_tensor(images.mul_(2).add_(1), images, "raw", "images")


class _WrongSquare(torch.autograd.Function):
    """x**2 with a wrong backward (x instead of 2x)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * x


def test_check_gradient(capsys):
    x = torch.randn(4, 2)
    labels = torch.tensor([0, 1, 1, 0])
    checks.check_gradient(lambda f, y: (f**2).sum() + f[y == 1].sum(), (x, labels), "f")
    assert "✓ f: gradcheck passed, relative error" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="f: gradcheck failed"):
        checks.check_gradient(lambda f: _WrongSquare.apply(f).sum(), x, "f")
    with pytest.raises(AssertionError, match="no floating-point tensor"):
        checks.check_gradient(lambda y: y.sum(), labels, "f")


def test_check_gradient_works_with_ferlib_losses():
    from ferlib.losses import dda_loss

    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(5, 2, generator=g), torch.randn(3, 2, generator=g)
    y = torch.tensor([0, 1, 2, 2, 0])
    checks.check_gradient(lambda f, cc: dda_loss(f, y, cc), (x, c), "dda")


# ----------------------------------------------------------------------------- notebooks


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    else:
        text = output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


notebook = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, f"expected the course notebooks in {NOTEBOOK_DIR}"


@notebook
def test_format_and_kernel(path):
    nb = _load(path)
    assert nb["nbformat"] == 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@notebook
def test_colab_badge_points_at_this_notebook(path):
    first = _load(path)["cells"][0]
    assert first["cell_type"] == "markdown" and _src(first).lstrip().startswith("# ")
    assert "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]" in _src(
        first
    )
    assert f"({COLAB_PREFIX}{path.name})" in _src(first), (
        f"{path.name}: the badge must link to {COLAB_PREFIX}{path.name}"
    )


@notebook
def test_every_colab_link_points_at_an_existing_notebook(path):
    text = "\n".join(_src(c) for c in _load(path)["cells"])
    links = re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"']+", text)
    assert links
    for link in links:
        assert link.startswith(COLAB_PREFIX), f"{path.name}: {link} is not on {COLAB_PREFIX}"
        assert (NOTEBOOK_DIR / link.removeprefix(COLAB_PREFIX)).is_file(), f"dangling {link}"


BOOTSTRAP_CONSTANTS = re.compile(r'^    REPO, REF, HOME = "([^"]+)", "([^"]+)", "([^"]+)"$', re.M)


@notebook
def test_first_code_cell_bootstraps_colab_and_reads_the_profile(path):
    first = _src(_code_cells(_load(path))[0])
    assert '"google.colab" in sys.modules' in first
    found = BOOTSTRAP_CONSTANTS.findall(first)
    assert found == [(course.REPO_URL, course.COURSE_REF, course.COLAB_DIR)], (
        f"{path.name}: the bootstrap must clone ferlib.course.REPO_URL at COURSE_REF into "
        f"COLAB_DIR, found {found}"
    )
    assert re.search(r"pip.*install", first)
    assert re.search(r"^PROFILE = ferlib\.course\.profile\(\)", first, re.M)


def test_every_notebook_has_the_same_bootstrap():
    firsts = {_src(_code_cells(_load(p))[0]) for p in NOTEBOOKS}
    assert len(firsts) == 1, "the notebooks' first code cells differ: keep one bootstrap"


@notebook
def test_states_the_profile_that_produced_the_outputs(path):
    outputs = _code_cells(_load(path))[0].get("outputs", [])
    text = "".join(_output_text(o) for o in outputs)
    assert re.search(r"profile: (quick|full)\b", text), (
        f"{path.name}: the first code cell must print the profile (execute the notebook)"
    )


@notebook
def test_learning_goals_at_the_top_and_a_summary(path):
    cells = _load(path)["cells"]
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert any("Learning goals" in _src(c) for c in cells[:first_code])
    assert any(
        re.search(r"^##+ Summary", _src(c), re.M) for c in cells if c["cell_type"] == "markdown"
    )


@notebook
def test_exercises_have_solutions_and_checks(path):
    cells = _load(path)["cells"]
    starts = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown" and re.search(r"^#{2,4} Exercise \d+", _src(c), re.M)
    ]
    assert 2 <= len(starts) <= 4, f"{path.name}: {len(starts)} exercises, expected 2-4"
    numbers = [int(re.search(r"Exercise (\d+)", _src(cells[i])).group(1)) for i in starts]
    assert numbers == list(range(1, len(starts) + 1))
    for n, (a, b) in enumerate(zip(starts, [*starts[1:], len(cells)], strict=True), start=1):
        block = [c for c in cells[a + 1 : b] if c["cell_type"] == "code"]
        solutions = [i for i, c in enumerate(block) if "### BEGIN SOLUTION" in _src(c)]
        assert solutions, f"{path.name}: exercise {n} has no solution cell"
        checks_after = [
            c
            for c in block[solutions[-1] + 1 :]
            if "ferlib.checks." in _src(c) or "assert" in _src(c)
        ]
        assert checks_after, f"{path.name}: exercise {n} has no check cell after its solution"


@notebook
def test_solution_markers_are_balanced_and_only_in_code(path):
    for i, cell in enumerate(_load(path)["cells"]):
        lines = [line.strip() for line in _src(cell).splitlines() if "SOLUTION" in line]
        if cell["cell_type"] != "code":
            # nbgrader matches the markers as substrings, in markdown cells too
            assert not any("BEGIN SOLUTION" in x or "END SOLUTION" in x for x in lines), (
                f"{path.name}, cell {i}: solution markers outside a code cell"
            )
            continue
        markers = [x for x in lines if "BEGIN SOLUTION" in x or "END SOLUTION" in x]
        assert all(x in ("### BEGIN SOLUTION", "### END SOLUTION") for x in markers), (
            f"{path.name}, cell {i}: a marker must stand alone on its line: {markers}"
        )
        assert markers == ["### BEGIN SOLUTION", "### END SOLUTION"] * (len(markers) // 2)


@notebook
def test_nbgrader_makes_a_student_copy(path):
    nbformat = pytest.importorskip("nbformat")
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    nb = nbformat.read(str(path), as_version=4)
    nb, _ = preprocessors.ClearSolutions(enforce_metadata=False).preprocess(nb, {})
    nb, _ = preprocessors.ClearOutput().preprocess(nb, {})
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "SOLUTION" not in code
    assert code.count("raise NotImplementedError()") >= 2


@notebook
def test_committed_outputs_are_clean(path):
    for i, cell in enumerate(_code_cells(_load(path))):
        for out in cell.get("outputs", []):
            where = f"{path.name}, code cell {i}"
            assert out["output_type"] != "error", f"{where}: an error is committed"
            assert not (out["output_type"] == "stream" and out["name"] == "stderr"), (
                f"{where}: stderr output: {_output_text(out)[:200]!r}"
            )
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), (
                f"{where}: a widget (tqdm bar?)"
            )
            text = _output_text(out)
            assert "Warning" not in text, f"{where}: a warning: {text[:200]!r}"
            assert not re.search(r"\d+%\|| it/s|s/it\]|\r", text), f"{where}: a progress bar"


@notebook
def test_executed_top_to_bottom_with_counts(path):
    code = _code_cells(_load(path))
    for i, cell in enumerate(code):
        if cell.get("outputs"):
            assert cell.get("execution_count") is not None, (
                f"{path.name}, code cell {i}: outputs without an execution count (nbval fails)"
            )
    counts = [c.get("execution_count") for c in code if c.get("execution_count") is not None]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..n: re-run it in a fresh kernel"
    )


@notebook
def test_checked_outputs_exist(path):
    for i, cell in enumerate(_code_cells(_load(path))):
        if "NBVAL_CHECK_OUTPUT" in _src(cell):
            assert cell.get("outputs"), f"{path.name}, code cell {i}: nothing for nbval to compare"
