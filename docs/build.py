"""Build the course website: ``bash course.sh site`` (or ``python docs/build.py``).

The site is a Jupyter Book (1.x) of the committed notebooks, with their stored outputs
(nothing is executed), and the pages in ``docs/``. The build

1. stages everything in ``<out>-src`` (default ``build/site-src``): the pages and
   configuration of ``docs/``; the notebooks, each with its "Open in Colab" links (instructor
   and student edition, at the release tag ``ferlib.course.COURSE_REF``) and a download of its
   student notebook in place of the badge; the generated pages of ``docs/site_pages.py`` (the
   Results from ``results/``, the per-notebook profile table, the profile table, one API page
   per module) with the figures they show; and MathJax 3 from the ``django-static-mathjax``
   package, so that equations render without a network;
2. runs ``jupyter-book build`` with warnings as errors;
3. moves the HTML to ``<out>`` (default ``build/site``) and prints the time it took and the
   site's size, which must stay under :data:`SIZE_LIMIT` bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import site_pages

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SIZE_LIMIT = 40 * 1024 * 1024
COLAB = "https://colab.research.google.com/github"
#: The badge every notebook carries in its first cell; the site shows its own links instead
#: (the badge's image lives on another site, which an offline page cannot load).
BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\s*")
#: What of MathJax the site serves: the TeX-to-HTML component with every TeX extension built
#: in (so that nothing is fetched on demand), and its fonts.
MATHJAX_FILES: tuple[str, ...] = ("tex-chtml-full.js", "output/chtml/fonts/woff-v2")


@dataclass(frozen=True)
class Site:
    """A built site: where it is, how long the build took, how large it is."""

    path: Path
    seconds: float
    size: int


def release() -> tuple[str, str]:
    """``(owner/name, tag)`` of the course release that the Colab links open."""
    from ferlib.course import COURSE_REF, REPO_URL

    return REPO_URL.removeprefix("https://github.com/").rstrip("/"), COURSE_REF


def colab_url(notebook: str) -> str:
    """The Colab link of ``notebook`` (a path in the repository) at the release tag."""
    repo, ref = release()
    return f"{COLAB}/{repo}/blob/{ref}/{notebook}"


def chapters(root: Path = ROOT) -> list[Path]:
    """The course's notebooks, in reading order: ``notebooks/NN_*.ipynb``."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def links_markdown(name: str) -> str:
    """The links shown at the top of a chapter: Colab (both editions), the student notebook."""
    return (
        f"**Open in Colab:** [instructor edition]({colab_url(f'notebooks/{name}')}) · "
        f"[student edition]({colab_url(f'notebooks/student/{name}')}) · "
        f"{{download}}`download the student notebook <student/{name}>`\n\n"
    )


def stage_notebook(src: Path, dst: Path) -> None:
    """Copy a notebook, its Colab badge replaced by :func:`links_markdown` (added after the
    first cell when it has no badge). Outputs are kept as they are."""
    nb = json.loads(src.read_text())
    links = links_markdown(src.name)
    cells = nb["cells"]
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) >= (4, 5):  # cell ids are required
        for i, cell in enumerate(cells):
            cell.setdefault("id", f"cell-{i}")
    first = cells[0] if cells else None
    if first is not None and first["cell_type"] == "markdown":
        text = "".join(first["source"])
        if BADGE.search(text):
            first["source"] = BADGE.sub(lambda _: links, text, count=1)
        else:
            first["source"] = text.rstrip() + "\n\n" + links
    else:
        cells.insert(0, {"cell_type": "markdown", "id": "colab-links", "metadata": {}})
        cells[0]["source"] = links
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def mathjax_source() -> Path:
    """The ``es5`` folder of MathJax 3 as the ``django-static-mathjax`` package installs it."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or spec.origin is None:
        raise SystemExit(
            "site: MathJax is not installed; run: .venv/bin/python -m pip install -e '.[site]'"
        )
    es5 = Path(spec.origin).parent / "static" / "mathjax" / "es5"
    if not (es5 / MATHJAX_FILES[0]).is_file():
        raise SystemExit(f"site: {es5 / MATHJAX_FILES[0]} not found (django-static-mathjax)")
    return es5


def copy_mathjax(dst: Path) -> None:
    """MathJax's files that the site needs, and its licence, into ``dst``."""
    es5 = mathjax_source()
    for rel in MATHJAX_FILES:
        src, out = es5 / rel, dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out)
        else:
            shutil.copy2(src, out)
    licence = es5.parent / "LICENSE"
    if licence.is_file():
        shutil.copy2(licence, dst / "LICENSE")


def check_toc(toc: Path, notebooks: list[Path]) -> None:
    """Every notebook is a chapter of ``_toc.yml``, and every chapter file exists."""
    files = re.findall(r"-\s*file:\s*(\S+)", toc.read_text())
    listed = {f for f in files if f.startswith("notebooks/")}
    present = {f"notebooks/{p.stem}" for p in notebooks}
    if listed != present:
        raise SystemExit(
            f"site: docs/_toc.yml lists {sorted(listed)} but notebooks/ has {sorted(present)}"
        )


def stage(src: Path, results: Path = ROOT / "results") -> None:
    """Lay out the book's sources in ``src`` (emptied first)."""
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns("__pycache__"))
    repo, ref = release()
    config_path = src / "_config.yml"
    config = yaml.safe_load(config_path.read_text())
    config["repository"] |= {"url": f"https://github.com/{repo}", "branch": ref}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))

    notebooks = chapters()
    check_toc(src / "_toc.yml", notebooks)
    for nb in notebooks:
        student = ROOT / "notebooks" / "student" / nb.name
        if not student.is_file():
            raise SystemExit(f"site: {student} is missing: run `bash course.sh student` first")
        stage_notebook(nb, src / "notebooks" / nb.name)
        (src / "notebooks" / "student").mkdir(parents=True, exist_ok=True)
        shutil.copy2(student, src / "notebooks" / "student" / nb.name)

    generated = src / "_generated"
    generated.mkdir()
    overview = ROOT / "notebooks" / "00_setup.ipynb"
    (generated / "notebooks.md").write_text(site_pages.notebooks_table(notebooks, overview))
    (generated / "profiles.md").write_text(site_pages.profiles_table())
    site_pages.api_pages(src / "api")
    for fig in site_pages.results_page(results, src / "results.md"):
        out = src / "results" / fig.relative_to(results)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fig, out)
    copy_mathjax(src / "_static" / "mathjax")


def dedupe_images(site: Path) -> int:
    """Store each image of ``site/_images`` once: a figure that a notebook shows and the
    Results page shows too is written twice by Sphinx, under two names. The copies are
    deleted and the pages pointed at the one kept. Returns the number of copies removed."""
    kept: dict[bytes, str] = {}
    renamed: dict[str, str] = {}
    for image in sorted((site / "_images").glob("*"), key=lambda p: (len(p.name), p.name)):
        digest = hashlib.sha256(image.read_bytes()).digest()
        if digest in kept:
            renamed[image.name] = kept[digest]
            image.unlink()
        else:
            kept[digest] = image.name
    if renamed:
        pattern = re.compile(
            r"_images/(" + "|".join(re.escape(n) for n in renamed) + r")(?=[\"'?#\s)])"
        )
        for page in site.rglob("*.html"):
            text = page.read_text("utf-8")
            new = pattern.sub(lambda m: f"_images/{renamed[m.group(1)]}", text)
            if new != text:
                page.write_text(new, "utf-8")
    return len(renamed)


def folder_size(path: Path) -> int:
    """Bytes in the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def jupyter_book() -> list[str]:
    """The ``jupyter-book`` command of this Python environment."""
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    if shutil.which("jupyter-book"):
        return ["jupyter-book"]
    raise SystemExit("site: jupyter-book is not installed; run: pip install -e '.[site]'")


def build(out: Path = ROOT / "build" / "site", results: Path = ROOT / "results") -> Site:
    """Stage and build the site into ``out``; raise ``SystemExit`` when the build warns or
    fails, or when the site is larger than :data:`SIZE_LIMIT`."""
    tic = time.perf_counter()
    out = out.resolve()
    src = out.with_name(out.name + "-src")
    stage(src, results)
    command = [*jupyter_book(), "build", str(src), "--path-output", str(src)]
    command += ["--builder", "html", "-W", "--keep-going", "--all"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-20000:] + done.stderr[-20000:])
        lines = (done.stdout + done.stderr).splitlines()
        problems = [line for line in lines if "WARNING" in line or "ERROR" in line][:30]
        raise SystemExit(
            f"site: jupyter-book build failed (exit {done.returncode}; warnings are errors):\n"
            + "\n".join(problems or lines[-30:])
        )
    if out.exists():
        shutil.rmtree(out)
    shutil.move(src / "_build" / "html", out)
    dedupe_images(out)
    site = Site(out, time.perf_counter() - tic, folder_size(out))
    if site.size > SIZE_LIMIT:
        mb = site.size / 2**20
        raise SystemExit(f"site: {mb:.1f} MB is over the {SIZE_LIMIT >> 20} MB limit")
    return site


def main(argv: list[str] | None = None) -> int:
    """Command line: build the site and say where it is, how long it took, how large it is."""
    parser = argparse.ArgumentParser(prog="site", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="output folder")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="results folder")
    args = parser.parse_args(argv)
    site = build(args.out, args.results)
    print(
        f"site: built in {site.seconds:.1f} s; {site.size / 2**20:.1f} MB "
        f"(limit {SIZE_LIMIT >> 20} MB) in {site.path}"
    )
    print(f"site: open {site.path / 'index.html'} in a browser,")
    print(f"      or serve it: python -m http.server --directory {site.path} 8000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
