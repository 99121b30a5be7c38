"""The exceptions users see: a clear, single-line message and exit status 2.

``FidanError`` is the base; raise the subclass that says whose fault it is, so callers of the Python
API can catch one kind (``except fidan.errors.BadInput``) and the CLI prints any of them the same way:
``fidan: error: <message>`` and exit status 2, no traceback.
"""

from __future__ import annotations


class FidanError(Exception):
    """Bad input or a state fidan cannot continue from.

    The message says what went wrong, where, and how to fix it, in one line.
    The CLI prints it without a traceback and exits with status 2.
    """

    exit_code = 2


class BadInput(FidanError):
    """A file, folder or value the user gave is missing, unreadable or out of range."""


class BadConfig(FidanError):
    """Settings that do not fit together, or a config file fidan cannot use."""


class BadRunState(FidanError):
    """An output or run folder that cannot be written, resumed or overwritten as asked."""


class MissingExtra(FidanError):
    """An optional dependency (a ``fidan[...]`` extra) is not installed."""


class Interrupted(FidanError):
    """Training was stopped by Ctrl-C or SIGTERM after saving a checkpoint; ``--resume`` continues it."""

    exit_code = 130
