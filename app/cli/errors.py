"""User mistakes on the command line as one line that says what to do next, not a 40-60 line traceback.

``main`` runs the `attnlab` command (``app.cli.commands.app``); an error a person can fix (a bad option value,
an unknown name, a missing optional package or file, a model not available here) ends the command with exit
status 2 and one line on stderr: ``attnlab: error: <what is wrong>; <what to do next>``. ``ATTNLAB_DEBUG=1``
shows the full traceback instead. Anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence

from attnlab.models import UnavailableModel
from attnlab.models.data.corpora import CorpusUnavailable

from .commands import app

# what a person can fix: values, names, files, optional packages, models not available here
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError, NotADirectoryError,
                                                 ModuleNotFoundError, CorpusUnavailable, UnavailableModel)

# (pattern of the message, what to do next); the first match wins, and a message that already says what to do
# (`pip install ...`, `known: ...`) needs no hint
HINTS: tuple[tuple[str, str], ...] = (
    (r"needs steps \((\d+)\) > warmup \((\d+)\)",
     "pass a --warmup below --steps (e.g. --warmup {half}) or more --steps"),
    (r"unknown model '", "`attnlab models` lists the models available here"),
    (r"unknown schedule '", "`attnlab train --plot-lr --schedule NAME` shows a schedule's curve"),
    (r"^No module named '(\w+)'", "install it: pip install {0}"),
    (r"No such file or directory", "check the path (relative paths start from the current directory)"),
)
DO_NEXT = re.compile(r"(pip install|known:|run `|; use |--\w)")


def one_line(err: BaseException) -> str:
    """The error as one line: its message (a KeyError's without the quotes repr adds) and a hint."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    message = " ".join(str(message).split())  # rich wraps long messages; a terminal does that itself
    for pattern, hint in HINTS:
        found = re.search(pattern, message)
        if found:
            groups = found.groups()
            half = max(1, int(groups[0]) // 2) if pattern.startswith("needs steps") else None
            return f"{message}; {hint.format(*groups, half=half)}"
    if DO_NEXT.search(message):
        return message
    return f"{message}; `attnlab COMMAND --help` lists the options"


def main(argv: Sequence[str] | None = None) -> None:
    """The `attnlab` command: typer's app, with user mistakes as one line (exit status 2)."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="attnlab")
    except USER_ERRORS as err:
        if os.environ.get("ATTNLAB_DEBUG"):
            raise
        sys.stderr.write(f"attnlab: error: {one_line(err)}\n")
        sys.exit(2)
