"""A local Sphinx extension of the course website.

* Every page loads each script once: sphinx-thebe (loaded by Jupyter Book 1.x) registers its
  inline configuration script once per ``env-before-read-docs`` event, which can fire more
  than once in a build; the second copy redeclares a ``const`` and the browser reports a
  ``SyntaxError`` on every page.
* ferlib's docstrings write absolute values as ``|a - b|``, which reStructuredText reads as
  an undefined substitution: outside literal blocks such bars are escaped.
"""

from __future__ import annotations

import re
from typing import Any

#: ``|x|`` in running text (not a table row, not ``||``).
BARS = re.compile(r"(?<![|\\])\|(?=[^\s|])([^|`\n]*?[^\s|\\])\|(?!\|)")


def _key(script: Any) -> tuple[str, str]:
    attributes = getattr(script, "attributes", {}) or {}
    return str(getattr(script, "filename", script) or ""), str(attributes.get("body", ""))


def dedupe_scripts(
    app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    """Drop the second and later copies of a script from a page's ``script_files``."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in context.get("script_files", []):
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def escape_bars(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Escape ``|x|`` in a docstring's text (literal blocks and table rows are left alone)."""
    literal_indent: int | None = None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not line.strip() or indent > literal_indent:
                continue
            literal_indent = None
        if line.rstrip().endswith("::"):
            literal_indent = indent
        if line.lstrip().startswith(("|", "+")):
            continue
        lines[i] = BARS.sub(lambda m: f"\\|{m.group(1)}\\|", line)


def setup(app: Any) -> dict[str, Any]:
    """Register the fixes (late, after the extensions that add scripts)."""
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("autodoc-process-docstring", escape_bars)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
