"""What every ferlib command line shares: how bad input is reported.

``python -m ferlib ...`` (:mod:`ferlib.cli`) and ``python -m ferlib.classroom ...``
(:mod:`ferlib.classroom.cli`) run each command through :func:`run_command`: bad input (a
missing dataset or file, a wrong layout or value, a checkpoint of another run) ends the
command with one line on stderr, ``<prog> <command>: error: <what was expected and
where>``, and exit code 2, as argparse does for bad arguments. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["INPUT_ERRORS", "fail", "run_command", "writable"]

#: Exceptions that mean bad input. ``DatasetNotFoundError`` is a ``FileNotFoundError``.
INPUT_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, FileExistsError)

A = TypeVar("A")


def fail(prog: str, error: BaseException | str, code: int = 2) -> int:
    """Print ``<prog>: error: <error>`` to stderr; return ``code`` (2: bad input)."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return code


def run_command(prog: str, handler: Callable[[A], int], args: A) -> int:
    """``handler(args)``; an :data:`INPUT_ERRORS` exception becomes :func:`fail`'s line."""
    try:
        return handler(args)
    except INPUT_ERRORS as err:
        return fail(prog, err)


def writable(folder: Path, option: str) -> Path:
    """``folder``, created if needed, after checking that a file can be written in it:
    a ``ValueError`` naming ``option`` and the reason otherwise, so that a command fails
    before it spends time on work it could not save."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(
            f"{option} {folder}: cannot write there ({err.strerror or err}); "
            "pass a folder you can write to"
        ) from err
    return folder
