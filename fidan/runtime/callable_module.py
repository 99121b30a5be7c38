"""Modules that are also their command's function: ``fidan.chat``, ``fidan.report`` and ``fidan.demo``.

``fidan.<command>(...)`` is the Python face of every command. When the command's name is also a module
of the package, importing that module binds the name to the module, so the module is made callable: it
runs the command's function, and its own contents (``fidan.chat.repl.ChatSession``) stay reachable, in
whichever order they are used.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types


def make_callable(module_name: str, target: str) -> None:
    """Make the module ``module_name`` call ``target`` ("package.module:function") when called."""
    where, function = target.split(":")

    class CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(importlib.import_module(where), function)(*args, **kwargs)

    module = sys.modules[module_name]
    module.__class__ = CallableModule
    if where == module_name:  # the function is defined in the module itself: show its signature
        module.__signature__ = inspect.signature(getattr(module, function))
