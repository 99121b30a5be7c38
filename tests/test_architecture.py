"""The layout's rules, checked on every module: imports point down the layers, and no stage imports
another stage (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fidan"
# Lowest first. A module imports from its own package and from lower layers only.
LAYERS = [
    {"errors"},
    {"runtime"},
    {"text"},
    {"model"},
    {"artifacts"},
    {"inference"},
    {"training"},
    {"corpus", "tokenizer", "evaluation", "conversation", "serving", "reporting", "adapt", "classify"},  # stages: never each other
    {"demos", "bench"},  # composite commands: they run other stages end to end
    {"registry", "cli", "__init__", "__main__"},  # the entry points
]
TOP = LAYERS[-1]
MODULES = sorted(PACKAGE.rglob("*.py"))


def layer_of(name: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if name in names)


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``fidan`` import that runs, i.e. not under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fidan":
            names = [node.module] if node.module != "fidan" else [f"fidan.{a.name}" for a in node.names]
            found += [(node.lineno, n) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("fidan.")]
    return found


def part(module: str) -> str:
    """The top-level package or module of ``fidan.X.y``; ``fidan.__version__`` and the like are the root's."""
    parts = module.split(".")
    if len(parts) == 1 or (not (PACKAGE / parts[1]).is_dir() and not (PACKAGE / f"{parts[1]}.py").exists()):
        return "__init__"
    return parts[1]


def test_every_package_has_a_layer():
    names = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
    assert names <= set().union(*LAYERS), sorted(names - set().union(*LAYERS))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    rel = path.relative_to(PACKAGE)
    here = rel.parts[0].removesuffix(".py")
    for line, module in runtime_imports(path):
        there = part(module)
        if there == "__init__" and here != "__init__":  # the root holds the version and the lazy API
            assert module == "fidan.__version__", f"fidan/{rel}:{line} imports {module} from the package root"
            continue
        ok = there == here or layer_of(there) < layer_of(here) or {here, there} <= TOP
        assert ok, f"fidan/{rel}:{line} imports {module}: `{there}` is not below `{here}`"


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fidan.training import loop\n"
                   "from fidan.reporting.report import report\n", encoding="utf-8")
    assert runtime_imports(bad) == [(4, "fidan.reporting.report")]


def test_no_module_shares_a_commands_python_name():
    """``fidan.chat``, ``fidan.report``, ``fidan.demo`` ... are the commands' functions, whatever was
    imported before: a module or package of that name would take the attribute over once imported."""
    from fidan.registry import API

    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    assert not top & set(API), sorted(top & set(API))
