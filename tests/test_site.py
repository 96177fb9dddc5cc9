"""The course website (``docs/``, ``bash course.sh site``), built once and read in a real browser.

The site is built once per session with warnings as errors, served on 127.0.0.1 and opened in
headless Chromium (Playwright driving the system's Chromium: no browser download). Every page
must load without a console error and without asking anything of another host (the site works
offline); every equation must be typeset by the site's own MathJax; every image must load;
every internal link must resolve; the search must find the course's words; every Colab link
must open an existing notebook at the release tag. The Results page must come from
``results/``: a changed copy of it gives a changed page.

Without Chromium (or Playwright, or the site's packages) the browser tests skip and say how to
install them; CI sets ``FERLIB_REQUIRE_BROWSER=1``, which turns every such skip into a failure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from ferlib.course import COURSE_REF, REPO_URL

ROOT = Path(__file__).resolve().parents[1]
REQUIRE = os.environ.get("FERLIB_REQUIRE_BROWSER", "") == "1"
INSTALL = (
    "install the site's tools with `.venv/bin/python -m pip install -e '.[site]'` and Chromium "
    "with `sudo apt-get install chromium` (Debian/Ubuntu; or set FERLIB_CHROMIUM to a Chrome "
    "or Chromium executable)"
)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
COLAB = re.compile(
    r"^https://colab\.research\.google\.com/github/(?P<repo>[^/]+/[^/]+)/blob/"
    r"(?P<ref>[^/]+)/(?P<path>[^?#]+\.ipynb)$"
)
#: TeX left in the text of a page means an equation was not typeset.
TEX_LEFT = re.compile(r"\\\(|\\\[|\$\$")

pytestmark = pytest.mark.slow


def unavailable(what: str) -> None:
    """Skip (fail under ``FERLIB_REQUIRE_BROWSER=1``) because ``what`` is missing."""
    message = f"site test: {what} is not available; {INSTALL}"
    if REQUIRE:
        pytest.fail(message + " (FERLIB_REQUIRE_BROWSER=1: this must run)", pytrace=False)
    pytest.skip(message)


def load_module(name: str, path: Path) -> ModuleType:
    """A module of ``docs/`` (not a package), by file."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def site_build() -> ModuleType:
    """``docs/build.py``, once the packages it needs are there."""
    for module, what in (("jupyter_book", "jupyter-book"), ("mathjax", "django-static-mathjax")):
        if importlib.util.find_spec(module) is None:
            unavailable(f"the Python package {what}")
    return load_module("ferlib_docs_build", ROOT / "docs" / "build.py")


@pytest.fixture(scope="session")
def pages_module() -> ModuleType:
    """``docs/site_pages.py``: the generated pages."""
    return load_module("ferlib_docs_site_pages", ROOT / "docs" / "site_pages.py")


_BUILD: dict[str, str] = {}


@pytest.fixture(scope="session")
def site(site_build: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The site, built once (warnings are errors: a warning fails the build)."""
    if "error" in _BUILD:  # a failed build fails every test that needs it, once
        pytest.fail(_BUILD["error"], pytrace=False)
    out = tmp_path_factory.mktemp("site") / "site"
    try:
        built = site_build.build(out)
    except SystemExit as err:
        _BUILD["error"] = f"the site build failed: {err}"
        pytest.fail(_BUILD["error"], pytrace=False)
    print(f"site: built in {built.seconds:.1f} s, {built.size / 2**20:.1f} MB")
    return built


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # the test reports what matters
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that stops reading a response (a page left early) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="session")
def server(site: Any) -> Iterator[str]:
    """The site served over HTTP on 127.0.0.1 (as GitHub Pages would serve it)."""
    handler = partial(_Quiet, directory=str(site.path))
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def chromium_executable() -> str | None:
    """``$FERLIB_CHROMIUM``, else the first Chromium or Chrome on the PATH."""
    env = os.environ.get("FERLIB_CHROMIUM")
    if env:
        return env if Path(env).is_file() or shutil.which(env) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium, driven by Playwright."""
    executable = chromium_executable()
    if executable is None:
        unavailable("Chromium")
    if importlib.util.find_spec("playwright") is None:
        unavailable("the Python package playwright")
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if hasattr(os, "getuid") and os.getuid() == 0 else []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=args)
        yield chromium
        chromium.close()


def html_pages(site: Path) -> list[Path]:
    """Every HTML page of the site (``_static`` holds the theme's templates, not pages)."""
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)


# A page's check, run in the browser after it loaded: typeset the math, load every image,
# then report what is wrong.
PAGE_CHECK = """
async () => {
  const report = {math: 0, typeset: 0, merror: 0, images: 0, broken: [], tex: []};
  if (document.querySelector('script[src*="mathjax"]')) {
    const start = Date.now();
    while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
      if (Date.now() - start > 20000) { report.tex.push('MathJax did not start'); break; }
      await new Promise(r => setTimeout(r, 50));
    }
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
      await MathJax.startup.promise;
    }
  }
  const maths = [...document.querySelectorAll('.math')];
  report.math = maths.length;
  report.typeset = maths.filter(m => m.querySelector('mjx-container')).length;
  report.merror = document.querySelectorAll('mjx-merror').length;
  const images = [...document.images];
  report.images = images.length;
  for (const img of images) img.loading = 'eager';
  await Promise.all(images.map(img => img.complete ? null : new Promise(r => {
    img.addEventListener('load', r); img.addEventListener('error', r); setTimeout(r, 10000);
  })));
  report.broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  const skip = 'PRE,CODE,SCRIPT,STYLE,TEXTAREA,MJX-CONTAINER,MJX-ASSISTIVE-MML';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const tex = /\\\\\\(|\\\\\\[|\\$\\$/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    if (tex.test(n.textContent)) report.tex.push(n.textContent.trim().slice(0, 120));
  }
  await document.fonts.ready;  // MathJax's fonts load after typesetting
  return report;
}
"""


@pytest.fixture(scope="session")
def page_reports(site: Any, server: str, browser: Any) -> dict[str, dict[str, Any]]:
    """Every page opened once: console errors, requests to other hosts or that failed, and
    :data:`PAGE_CHECK`'s report, by page (path under the site)."""
    context = browser.new_context()
    reports: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(server) or url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            current["external"].append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and current["console"].append(m.text))
    page.on("pageerror", lambda e: current["console"].append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: current["failed"].append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and current["failed"].append(r.url))
    for path in html_pages(site.path):
        rel = path.relative_to(site.path).as_posix()
        if rel == "index.html":  # a redirect to the first page (test_index_opens_the_book)
            continue
        current.clear()
        current.update(console=[], external=[], failed=[])
        page.goto(server + rel, wait_until="load")
        current.update(page.evaluate(PAGE_CHECK))
        reports[rel] = dict(current)
    context.close()
    return reports


def problems(reports: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    """The pages whose report has something under ``key``."""
    return {page: r[key] for page, r in reports.items() if r[key]}


# --------------------------------------------------------------------------- the build


def test_build_time_and_size(site: Any, site_build: ModuleType) -> None:
    """The build (warnings as errors) succeeded, and the site is small enough to publish."""
    assert site.size < site_build.SIZE_LIMIT, f"{site.size / 2**20:.1f} MB"
    assert (site.path / "index.html").is_file()


def test_figures_stored_once(site: Any) -> None:
    """No figure is embedded in a page (base64) and no image file is stored twice."""
    inline = [
        p.name for p in html_pages(site.path) if "data:image/png;base64" in p.read_text("utf-8")
    ]
    assert not inline, f"pages with base64 images: {inline}"
    seen: dict[str, str] = {}
    twice = []
    for img in sorted(site.path.rglob("*.png")):
        digest = hashlib.sha256(img.read_bytes()).hexdigest()
        if digest in seen:
            twice.append((seen[digest], img.relative_to(site.path).as_posix()))
        seen.setdefault(digest, img.relative_to(site.path).as_posix())
    assert not twice, f"the same image stored twice: {twice}"


def test_every_chapter_and_page_is_there(site: Any) -> None:
    """The pages the course promises, in the book, with the MathJax the site serves."""
    for page in ("intro", "teachers", "results", "datasets", "gpu", "losses", "api/index"):
        assert (site.path / f"{page}.html").is_file(), page
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert (site.path / "notebooks" / f"{nb.stem}.html").is_file(), nb.name
    assert (site.path / "_static" / "mathjax" / "tex-chtml-full.js").is_file()
    for page in html_pages(site.path):
        text = page.read_text("utf-8")
        assert "cdn.jsdelivr.net" not in text and "mathjax@" not in text, page.name


def test_api_reference_is_rendered(site: Any) -> None:
    """The API pages hold autodoc's descriptions (not reStructuredText left as text), one page
    per public module, and the other pages' references to the library resolve to them."""
    modules = sorted(p.stem for p in (site.path / "api").glob("ferlib.*.html"))
    assert {"ferlib.losses", "ferlib.training", "ferlib.data.rafdb", "ferlib.course"} <= set(
        modules
    )
    for page in html_pages(site.path):
        text = page.read_text("utf-8")
        for left in (".. py:", ".. automodule::", ":members:"):
            assert left not in text, f"{page.name}: {left!r} left as text"
    losses = (site.path / "api" / "ferlib.losses.html").read_text("utf-8")
    assert 'id="ferlib.losses.center_loss"' in losses
    assert 'id="ferlib.losses.CenterDDALoss"' in losses
    glance = (site.path / "losses.html").read_text("utf-8")
    assert "api/ferlib.losses.html#ferlib.losses.center_loss" in glance


# --------------------------------------------------------------------------- in the browser


def test_index_opens_the_book(browser: Any, server: str) -> None:
    """The site's address opens the first page, Start here."""
    page = browser.new_page()
    try:
        page.goto(server, wait_until="load")
        page.wait_for_url("**/intro.html", timeout=15000)
        assert page.title().startswith("Start here")
    finally:
        page.close()


def test_pages_load_without_console_errors(page_reports: dict[str, dict[str, Any]]) -> None:
    """Every page loads, and logs no error and no uncaught exception."""
    assert len(page_reports) >= 15
    assert not problems(page_reports, "console")


def test_pages_ask_nothing_of_other_hosts(page_reports: dict[str, dict[str, Any]]) -> None:
    """Every page works offline: no request leaves the site, and none of the site's fails."""
    assert not problems(page_reports, "external")
    assert not problems(page_reports, "failed")


def test_equations_are_typeset(page_reports: dict[str, dict[str, Any]]) -> None:
    """Every equation is typeset by the site's MathJax: no TeX left in the text, no TeX
    error, every math element holds MathJax's output."""
    assert not problems(page_reports, "tex")
    assert not problems(page_reports, "merror")
    untypeset = {p: r for p, r in page_reports.items() if r["typeset"] != r["math"]}
    assert not untypeset, {p: f"{r['typeset']} of {r['math']}" for p, r in untypeset.items()}
    with_math = [p for p, r in page_reports.items() if r["math"]]
    for page in ("losses.html", "notebooks/02_center_loss.html", "notebooks/03_dda_loss.html"):
        assert page in with_math, f"{page} shows no equation"


def test_images_load(page_reports: dict[str, dict[str, Any]]) -> None:
    """Every image of every page loads (a non-zero natural width)."""
    assert not problems(page_reports, "broken")
    assert page_reports["results.html"]["images"] >= 5
    assert page_reports["notebooks/04_wmnist_study.html"]["images"] >= 3


def search_results(browser: Any, server: str, query: str) -> list[str]:
    """The links that the site's search page lists for ``query``."""
    page = browser.new_page()
    try:
        page.goto(f"{server}search.html?q={query.replace(' ', '+')}", wait_until="load")
        page.wait_for_function(
            "() => { const s = document.querySelector('#search-results');"
            " return s && (s.querySelectorAll('li').length > 0"
            " || /did not match|found 0|no results/i.test(s.textContent)); }",
            timeout=30000,
        )
        return page.eval_on_selector_all(
            "#search-results li a", "links => links.map(a => a.getAttribute('href'))"
        )
    finally:
        page.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [("center loss", "notebooks/02_center_loss"), ("Wen", "notebooks/02_center_loss")],
)
def test_search_finds(browser: Any, server: str, query: str, expected: str) -> None:
    """The site's search finds the course's words, in the chapter that teaches them."""
    links = search_results(browser, server, query)
    assert any(expected in link for link in links), f"{query!r}: {links}"


# --------------------------------------------------------------------------- links


class _Links(HTMLParser):
    """The ids and the link targets (``href``, ``src``) of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif name in ("href", "src") and tag in ("a", "link", "script", "img", "iframe"):
                self.targets.append(value)


def parse(page: Path) -> _Links:
    """:class:`_Links` of ``page``."""
    parser = _Links()
    parser.feed(page.read_text("utf-8"))
    return parser


def test_internal_links_resolve(site: Any) -> None:
    """Every link, script, stylesheet and image of every page that stays on the site points
    at a file that exists, and at an id that exists on the page it names."""
    parsed = {page: parse(page) for page in html_pages(site.path)}
    broken = []
    checked = 0
    for page, links in parsed.items():
        for target in links.targets:
            parts = urlsplit(target)
            if parts.scheme or target.startswith("//"):
                continue  # another host (or mailto:, data:, javascript:)
            path = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if path.is_dir():
                path = path / "index.html"
            checked += 1
            where = f"{page.relative_to(site.path)} -> {target}"
            if not path.is_file():
                broken.append(f"{where} (no file)")
            elif parts.fragment and path.suffix == ".html":
                ids = parsed[path].ids if path in parsed else parse(path).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no id)")
    assert checked > 100
    assert not broken, "\n".join(broken)


def test_colab_links_open_the_release(site: Any) -> None:
    """Every Colab link opens an existing notebook of this repository at the release tag, and
    every chapter links to both of its editions and offers its student notebook."""
    repo = REPO_URL.removeprefix("https://github.com/")
    links: dict[str, list[str]] = {}
    for page in html_pages(site.path):
        for target in parse(page).targets:
            if target.startswith("https://colab.research.google.com/"):
                links.setdefault(page.relative_to(site.path).as_posix(), []).append(target)
    assert links
    for page, targets in links.items():
        for target in targets:
            found = COLAB.match(target)
            assert found, f"{page}: {target} is not a Colab link to a notebook on GitHub"
            assert found["repo"] == repo, f"{page}: {target}"
            assert found["ref"] == COURSE_REF, f"{page}: {target} is not at {COURSE_REF}"
            assert (ROOT / found["path"]).is_file(), f"{page}: {target}: no such notebook"
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = f"notebooks/{nb.stem}.html"
        paths = {COLAB.match(t)["path"] for t in links.get(page, [])}
        assert paths >= {f"notebooks/{nb.name}", f"notebooks/student/{nb.name}"}, page
        downloads = [t for t in parse(site.path / page).targets if t.endswith(nb.name)]
        assert any("_downloads" in t for t in downloads), f"{page}: no student download"
        (got,) = {t for t in downloads if "_downloads" in t}
        stored = (site.path / "notebooks" / got).resolve().read_bytes()
        assert stored == (ROOT / "notebooks" / "student" / nb.name).read_bytes()


# --------------------------------------------------------------------------- results


def scratch_results(tmp_path: Path) -> Path:
    """A copy of ``results/``: its JSON files and figures."""
    out = tmp_path / "results"
    shutil.copytree(
        ROOT / "results", out, ignore=shutil.ignore_patterns("*.npz", "*.log", "checkpoints")
    )
    return out


def test_results_page_shows_the_committed_numbers(site: Any) -> None:
    """The built Results page holds the numbers of the committed JSON, with their origin."""
    table = json.loads((ROOT / "results" / "wmnist-published" / "table1.json").read_text())
    html = (site.path / "results.html").read_text("utf-8")
    assert f"{table['runs']['softmax']['test_acc']:.2f}" in html
    assert "results/wmnist-published/table1.json" in html
    assert "synthetic stand-in" in html.lower()


def study(page: str, folder: str) -> str:
    """The section of a Results page that shows ``results/<folder>/table1.json``."""
    (section,) = [
        s for s in page.split("\n### ") if s.startswith(f"`results/{folder}/table1.json`")
    ]
    return section


def test_results_page_is_generated_from_results(tmp_path: Path, pages_module: ModuleType) -> None:
    """Change one number in a copy of results/, regenerate: the page changes with it."""
    results = scratch_results(tmp_path)
    before = tmp_path / "before.md"
    pages_module.results_page(results, before)
    path = results / "wmnist-published" / "table1.json"
    table = json.loads(path.read_text())
    old = table["runs"]["softmax"]["test_acc"]
    row = "| softmax | – | – | {paper:.2f} | {acc:.2f} |"
    paper = table["paper_table1"]["softmax"]
    assert row.format(paper=paper, acc=old) in study(before.read_text(), "wmnist-published")
    table["runs"]["softmax"]["test_acc"] = 12.34
    path.write_text(json.dumps(table))
    after = tmp_path / "after.md"
    pages_module.results_page(results, after)
    text = study(after.read_text(), "wmnist-published")
    assert row.format(paper=paper, acc=12.34) in text
    assert row.format(paper=paper, acc=old) not in text
    by_seed = after.read_text().split("## W-MNIST: each study")[0]
    assert "| softmax | 96.78 | 12.34 |" in by_seed


def test_results_page_names_what_is_missing(tmp_path: Path, pages_module: ModuleType) -> None:
    """Studies that are missing or still running are named, never fatal; paired tests are
    shown once they exist."""
    results = scratch_results(tmp_path)
    shutil.rmtree(results / "wmnist-published-seed2")
    repro = results / "wmnist-repro"
    shutil.rmtree(repro, ignore_errors=True)
    (repro / "paper-seed1").mkdir(parents=True)  # a study still running
    (repro / "paper-seed0").mkdir()
    shutil.copy(results / "wmnist" / "table1.json", repro / "paper-seed0" / "table1.json")
    out = tmp_path / "page.md"
    pages_module.results_page(results, out)
    text = out.read_text()
    assert "Not found: `results/wmnist-published-seed2/`" in text
    assert "classifier, seed 2" not in text.split("## W-MNIST: each study")[0]
    assert "| `results/wmnist-repro/paper-seed0/` | paper | 0 | done |" in text
    assert "| `results/wmnist-repro/paper-seed1/` | paper | 1 | running or unfinished" in text
    assert "| `results/wmnist-repro/published-seed2/` | published | 2 | missing" in text
    assert "`results/wmnist-repro/paired.json` is missing" in text

    seeds = [{"seed": 0, "diff": 1.25, "p_value": 0.001}, {"seed": 1, "diff": -0.5, "p_value": 0.4}]
    report = {
        "seeds": [0, 1],
        "alpha": 0.05,
        "n_resamples": 2000,
        "comparisons": [
            {"a": "dda-7", "b": "softmax", "rule": "classifier", "group": "minority"}
            | {"seeds": seeds, "mean_diff": 0.38, "a_better": 1, "b_better": 0}
            | {"not_significant": 1}
        ],
        "mean_class_acc_noise": {"softmax": [{"seed": 0, "value": 90.0, "ci": [89.5, 90.5]}]},
    }
    (repro / "paired.json").write_text(json.dumps(report))
    pages_module.results_page(results, out)
    text = out.read_text()
    assert (
        "| dda-7 vs softmax | classifier | minority | +1.25* | -0.50 | +0.38 | 1 / 0 / 1 |" in text
    )
    assert "90.00 [89.50, 90.50]" in text
