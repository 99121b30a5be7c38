"""The one exception type users see: a clear, single-line message and exit status 2."""

from __future__ import annotations


class FidanError(Exception):
    """Bad input or a state fidan cannot continue from.

    The message says what went wrong, where, and how to fix it, in one line.
    The CLI prints it without a traceback and exits with status 2.
    """

    exit_code = 2
