"""fidan: grow Turkish language models from seed to chat.

Every CLI command is also a function here, with the same name and arguments, e.g.
``fidan.prepare_data(source=["tr-speeches"], out="data")`` or ``fidan.pretrain(...)``.
Functions import lazily so that ``import fidan`` stays fast.
"""

from __future__ import annotations

import importlib

from fidan.registry import API as _API  # one table feeds the CLI and these functions

__version__ = "0.1.0"

__all__ = sorted(_API) + ["FidanError", "__version__"]


def __getattr__(name: str):
    if name == "FidanError":
        from fidan.errors import FidanError

        return FidanError
    if name in _API:
        # no module of the package shares a command's name (tests/test_architecture.py), so importing a
        # module never hides a function
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fidan' has no attribute {name!r}")
