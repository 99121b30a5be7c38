"""Chat with an instruction-tuned model: a session that keeps history (``repl.ChatSession``) and the REPL.

``fidan.chat`` names both this package and the ``fidan chat`` command, so the package is callable:
``fidan.chat(model=...)`` runs the command and ``fidan.chat.repl.ChatSession`` is the session class,
whichever is used first.
"""

from __future__ import annotations

import inspect

from fidan.runtime.callable_module import make_callable

make_callable(__name__, "fidan.chat.repl:chat")

from fidan.chat import repl  # noqa: E402  (after: the package must be callable while repl loads)

__signature__ = inspect.signature(repl.chat)  # what `inspect` and help() show for fidan.chat(...)
__all__ = ["repl"]
