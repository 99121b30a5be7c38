"""Who reads the output: a command prints its results; a function called from Python returns them quietly.

``fidan.cli.main`` marks the process as running a command. A stage whose ``quiet`` is None then prints what
it finds (texts, figures, progress bars); called from Python (a notebook, a script) it prints nothing unless
``quiet=False`` asks for it. ``quiet=True`` silences a command too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_command = False


@contextlib.contextmanager
def as_command() -> Iterator[None]:
    """Within this block stages speak as commands do (``fidan ...`` on the command line, the demos)."""
    global _command
    before, _command = _command, True
    try:
        yield
    finally:
        _command = before


def speaks(quiet: bool | None) -> bool:
    """Whether a stage prints: ``quiet`` when given, else only when run as a command."""
    return _command if quiet is None else not quiet
