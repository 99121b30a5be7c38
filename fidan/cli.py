"""The command line: one table from command name to stage function (``fidan.registry``); parsing only.

Each command's options are read from its function's signature, type hints and Google-style docstring,
and from its settings groups (fidan.training.settings: each group is a titled section of ``--help``), so
the CLI and the Python API (``fidan.pretrain(...)``) always take the same arguments. Every command
also takes ``--config FILE.yaml``: the file gives argument values by their Python names (under a
top-level ``args:`` mapping when it has one, as a run's ``config.yaml`` does, nested by group or flat as
older runs wrote it), flags on the command line override them, so
``fidan pretrain --config runs/x/config.yaml`` replays a run.

The parser is a small argparse builder rather than a typed-CLI library: the spellings users and docs
rely on (``--max-steps``, ``--no-stream``, bare ``--force``, repeated ``--source``) are not what
jsonargparse derives from a signature (``--max_steps``, ``--force true``, ``--source+``).
"""

from __future__ import annotations

import argparse
import errno
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

from fidan.errors import BadConfig, FidanError
from fidan.registry import COMMANDS, Command, load_function
from fidan.training.settings import Param, flatten_record, parameters

__all__ = ["COMMANDS", "Command", "build_command_parser", "load_config", "load_function", "main", "parse_command"]

_PARAM_RE = re.compile(r"^(\s*)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def _doc_params(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and its ``Args:`` descriptions.

    A parameter line sits at the Args block's own indentation; deeper lines continue the description
    above them (even when they look like ``default: ...``); a line back at the margin ends the block.
    """
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    head, _, args = doc.partition("\nArgs:\n")
    params: dict[str, str] = {}
    current: str | None = None
    indent: int | None = None
    for line in args.splitlines():
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if width == 0:  # the next section (Returns:, Raises:, ...) or prose after the block
            break
        if indent is None:
            indent = width
        m = _PARAM_RE.match(line)
        if width == indent and m:
            current = m.group(2)
            params[current] = m.group(3).strip()
        elif current is not None:
            params[current] = (params[current] + " " + line.strip()).strip()
    return head.strip(), params


def _unwrap_optional(tp):
    """``X | None`` → ``X``; ``list[str] | str`` → ``list[str]`` (one string is a list of one)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        lists = [a for a in args if typing.get_origin(a) in (list, tuple)]
        if len(args) == 1 or lists:
            return (lists or args)[0]
    return tp


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_param(parser, name: str, default, tp, help_text: str, positional: bool, preset: bool = False) -> None:
    """One parameter as an argument of ``parser`` (or of a section of it). Nothing is stored unless given, so
    a --config file's values and the function's own defaults fill the rest (``preset``: the file gives it)."""
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    help_text = help_text.strip()
    required = default is inspect.Parameter.empty and not preset
    if default is not inspect.Parameter.empty and default is not None and tp is not bool:
        help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
    kwargs: dict = {"help": help_text or None, "default": argparse.SUPPRESS}
    if tp is bool:
        on, off = _flag(name), "--no-" + name.replace("_", "-")
        what = help_text.rstrip(".") or name.replace("_", " ")
        if default is True:
            parser.add_argument(off, dest=name, action="store_false", default=argparse.SUPPRESS,
                                help=f"turn this off (it is on by default): {what}")
            parser.add_argument(on, dest=name, action="store_true", default=argparse.SUPPRESS,
                                help=f"{what} (the default; overrides a --config file)")
        elif default is None:  # left to fidan unless one of the two is given
            parser.add_argument(on, dest=name, action="store_true", default=argparse.SUPPRESS, help=help_text or None)
            parser.add_argument(off, dest=name, action="store_false", default=argparse.SUPPRESS,
                                help=f"turn this off (by default fidan decides): {what}")
        else:
            parser.add_argument(on, dest=name, action="store_true", default=argparse.SUPPRESS, help=help_text or None)
            # only a --config file can turn such a flag on, so --help does not list its negation
            parser.add_argument(off, dest=name, action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        return
    if origin is typing.Literal:
        kwargs["choices"] = list(typing.get_args(tp))
    elif origin in (list, tuple):
        item = typing.get_args(tp)[0] if typing.get_args(tp) else str
        kwargs["type"] = item
        kwargs["action"] = "append"
    elif tp in (int, float):
        kwargs["type"] = tp
    if positional:
        if kwargs.pop("action", None) == "append":  # a positional list takes every word given (`compare A B C`)
            kwargs["nargs"] = "+" if required else "*"
        elif not required:
            kwargs["nargs"] = "?"
        parser.add_argument(name, metavar=name.upper(), **kwargs)
        return
    parser.add_argument(_flag(name), dest=name, required=required, **kwargs)


def _parameters(func: Callable) -> dict[str, Param]:
    return {p.name: p for p in parameters(func)}


def build_command_parser(parser: argparse.ArgumentParser, name: str, preset: dict | None = None) -> Callable:
    """Add the command's arguments (and ``--config``) to ``parser``, a group's in its own titled section;
    return the stage function. The function's docstring may say more about a group's field for it."""
    func = load_function(name)
    summary, docs = _doc_params(func.__doc__)
    parser.description = summary or COMMANDS[name].summary
    sections: dict[str | None, argparse._ActionsContainer] = {None: parser}
    for p in parameters(func):
        if p.section not in sections:
            sections[p.section] = parser.add_argument_group(p.section)
        _add_param(sections[p.section], p.name, p.default, p.type, docs.get(p.name, p.help),
                   p.name in COMMANDS[name].positional, preset=p.name in (preset or {}))
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="read argument values from a YAML file (a run's config.yaml replays the run); "
                             "flags given here override it")
    return func


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(where: str, name: str, value, tp):
    """A value from a config file, checked against the parameter's type hint."""
    if value is None:
        return None
    inner = _unwrap_optional(tp)
    origin = typing.get_origin(inner)
    bad = BadConfig(f"{where}: `{name}` must be {_type_name(inner)}, got {value!r}; fix the value in the file")
    if origin is typing.Literal:
        choices = typing.get_args(inner)
        if value not in choices:
            raise BadConfig(f"{where}: `{name}` must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin in (list, tuple):
        item = (typing.get_args(inner) or (str,))[0]
        values = [value] if isinstance(value, str | int | float) else value
        if not isinstance(values, list):
            raise bad
        return [_coerce(where, name, v, item) for v in values]
    if inner is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if inner in (int, float) and isinstance(value, str):  # YAML reads `1e-3` (no dot) as a string
        try:
            return inner(value)
        except ValueError:
            raise bad from None
    if inner is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if inner is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if inner is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if inner in (int, float, str):
        raise bad
    return value


def load_config(path: str | Path, name: str) -> dict:
    """Argument values for command ``name`` from a YAML file, by Python name (``args:`` if present)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BadConfig(f"config file not found: {path}; pass the path of a YAML file (e.g. a run's config.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadConfig(f"config file {path} is not valid YAML ({first}); fix it") from None
    if data is None:
        return {}
    in_run = isinstance(data, dict) and isinstance(data.get("args"), dict) and _is_run_folder(path.parent)
    if isinstance(data, dict) and isinstance(data.get("args"), dict):
        data = data["args"]
    if not isinstance(data, dict):
        raise BadConfig(f"config file {path} must hold a mapping of argument names to values (or an `args:` mapping)")
    func = load_function(name)
    params = _parameters(func)
    groups = {key: type(group) for key, group in getattr(func, "groups", {}).items()}
    values = {str(k).replace("-", "_"): v for k, v in flatten_record(data, groups).items()}
    unknown = sorted(k for k in values if k not in params)
    if unknown:
        raise BadConfig(f"config file {path}: unknown key(s) {', '.join(unknown)} for `fidan {name}`; "
                        f"valid names: {', '.join(params)}")
    for k, v in values.items():
        if v is None and params[k].default is not None and type(None) not in typing.get_args(params[k].type):
            raise BadConfig(f"config file {path}: `{k}` cannot be empty (null); give it a value or leave the key out")
    if in_run and "out" in values and Path(str(values["out"])).resolve() != path.parent.resolve():
        values["out"] = str(path.parent)  # a run folder moved or copied: its config.yaml replays into itself
    return {k: _coerce(str(path), k, v, params[k].type) for k, v in values.items()}


def _is_run_folder(folder: Path) -> bool:
    return (folder / "metrics.jsonl").is_file() or (folder / "checkpoints").is_dir() or (folder / "config.json").is_file()


def _config_path(argv: list[str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    return known.config


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as fidan's: one line (no usage block) and exit status 2."""

    def error(self, message: str):
        raise BadConfig(f"{self.prog}: {message}; see `{self.prog} --help`")


def parse_command(name: str, argv: list[str]) -> tuple[Callable, dict]:
    """The stage function of ``name`` and its keyword arguments from ``argv`` (and any --config file).

    --help prints and exits as usual; a bad or missing flag is a one-line BadConfig.
    """
    config = _config_path(argv)
    preset = load_config(config, name) if config else {}
    parser = _Parser(prog=f"fidan {name}")
    func = build_command_parser(parser, name, preset)
    given = vars(parser.parse_args(argv))
    given.pop("config", None)
    return func, {**preset, **given}


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<18} {cmd.summary}" for name, cmd in COMMANDS.items()]
    parser = argparse.ArgumentParser(
        prog="fidan",
        description="fidan grows Turkish language models from seed to chat.",
        epilog="commands:\n" + "\n".join(lines) + "\n\nRun `fidan COMMAND --help` for a command's options; "
               "every command also takes --config FILE.yaml.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print fidan's version and exit")
    return parser


def _nearest(word: str) -> str | None:
    """The command a mistyped one most likely meant (`pretrian` → `pretrain`), or None."""
    import difflib

    names = list(COMMANDS) + sorted({n.split()[0] for n in COMMANDS})
    found = difflib.get_close_matches(word, names, n=1, cutoff=0.7)
    return found[0] if found else None


def _match_command(argv: list[str]) -> tuple[str | None, list[str]]:
    for words in (2, 1):
        name = " ".join(argv[:words])
        if name in COMMANDS:
            return name, argv[words:]
    return None, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        from fidan import __version__

        print(f"fidan {__version__}")
        return 0
    name, rest = _match_command(argv)
    if name is None:
        if not argv or argv[0] in ("-h", "--help"):
            _top_parser().print_help()
            return 0
        subs = ", ".join(n for n in COMMANDS if n.startswith(argv[0] + " "))
        if subs:
            print(f"fidan: error: `{argv[0]}` needs a subcommand: {subs}", file=sys.stderr)
        elif _nearest(argv[0]):
            print(f"fidan: error: unknown command `{argv[0]}`; did you mean `fidan {_nearest(argv[0])}`? "
                  "(`fidan --help` lists them all)", file=sys.stderr)
        else:
            print(f"fidan: error: unknown command `{argv[0]}`; run `fidan --help` for the list", file=sys.stderr)
        return 2
    try:
        func, kwargs = parse_command(name, rest)
        from fidan.runtime.console import as_command

        with as_command():
            func(**kwargs)
    except FidanError as e:
        print(f"fidan: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fidan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`fidan ... | head`): stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except Exception as e:  # a failed write, reported by the OS or wrapped by a library ("os error 28")
        from fidan.runtime.io import as_os_error

        err = as_os_error(e, "")
        if not isinstance(err, OSError) or err.errno not in STORAGE_ERRORS:
            raise
        print(f"fidan: error: {storage_message(err)}", file=sys.stderr)
        return 2
    return 0


# Writing failed for a reason the user fixes outside fidan: one line, exit 2. Every artifact is written
# under a temporary name and renamed, so the files from before are intact and nothing half-written stays.
STORAGE_ERRORS = {errno.ENOSPC: "no space left on the disk", errno.EDQUOT: "disk quota exceeded",
                  errno.EFBIG: "file size limit exceeded", errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted", errno.EROFS: "read-only file system"}


def storage_message(e: OSError) -> str:
    what = STORAGE_ERRORS[e.errno]
    where = f" writing {e.filename}" if e.filename else " while writing"
    fix = ("free some space or choose another --out" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
           else "check the folder's permissions or choose another --out")
    return f"{what}{where}; {fix} (files written before are unchanged)"


if __name__ == "__main__":
    sys.exit(main())
