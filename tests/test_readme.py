"""The README is a front page: short, with the two commands that work, and links that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_is_a_front_page_of_about_120_lines():
    lines = README.splitlines()
    assert len(lines) <= 130, f"README.md has {len(lines)} lines; the book holds the rest"


def test_the_two_commands_are_the_quick_start():
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["bash course.sh lab", "bash course.sh test"]
    course = (ROOT / "course.sh").read_text()
    assert "    lab)" in course and "    test)" in course and "    site)" in course


def test_every_path_the_readme_names_exists():
    named = set(
        re.findall(r"`((?:docs|results|notebooks|benchmarks|ferlib|tests)/[^`*\s]*)`", README)
    )
    assert named, "the README names no files"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"
