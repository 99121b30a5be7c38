"""fidan: grow Turkish language models from seed to chat.

Every CLI command is also a function here, with the same name and arguments, e.g.
``fidan.prepare_data(source=["tr-speeches"], out="data")`` or ``fidan.pretrain(...)``.
Functions import lazily so that ``import fidan`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

from fidan.registry import API as _API  # one table feeds the CLI and these functions

__version__ = "0.1.0"

__all__ = sorted(_API) + ["FidanError", "__version__"]


def __getattr__(name: str):
    if name == "FidanError":
        from fidan.errors import FidanError

        return FidanError
    if name in _API:
        function = getattr(importlib.import_module(_API[name]), name)
        # `fidan.chat` is a package as well as a command: importing binds the package to the name, so the
        # package is made callable (fidan/chat/__init__.py) and is what the name gives, in any order.
        package = sys.modules.get(f"{__name__}.{name}")
        return package if callable(package) else function
    raise AttributeError(f"module 'fidan' has no attribute {name!r}")
