"""Settings in groups, each declared once: a dataclass per group, each field with its default and help.

Everything else is derived from the fields by one flattener (:func:`flat_fields`): the flat keywords of
``fidan.pretrain(max_steps=...)``, the CLI's flags and the titled sections of ``--help``, the nested
``args:`` of a run's config.yaml and ``--config`` (which reads that nested form and today's flat one).

A stage function takes its own parameters and one keyword per group, annotated with the group's class::

    @stage_settings(batch_size=8, eval_every=50)          # the stage's defaults, by flat name
    def sft(model: str, data: str, out: str, *, tune: TuneArgs, train: TrainArgs, eval: EvalArgs, ...):
        ... train.lr ... eval.every ...

and is called with groups (``sft(..., train=TrainArgs(lr=1e-4))``), flat keywords (``sft(..., lr=1e-4)``)
or both: a flat keyword sets that field of the group given, or of the stage's default group. A group given
whole is taken as it is: start from the stage's own defaults (``sft.groups["train"]``) to keep them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass

from fidan.errors import FidanError
from fidan.runtime.lock import folder_lock

GROUPS: dict[str, type] = {}  # key → group class, for reading config.yaml's args without the command


class Group:
    """A settings group, declared ``class TrainArgs(Group, key="train", title="training: ...")``: ``key`` is its
    keyword and its name in config.yaml, ``title`` heads its --help section."""

    key: typing.ClassVar[str]
    title: typing.ClassVar[str]

    def __init_subclass__(cls, *, key: str, title: str, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.key, cls.title = key, title
        GROUPS.setdefault(key, cls)

    def check(self) -> None:
        """Refuse bad values with one line (FidanError)."""


def option(default: object, help: str, *, flag: str | None = None):
    """A group's field: its default, its help and its flat name when that is not the field's own
    (``EvalArgs.every`` is ``eval_every``: ``--eval-every``)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class Flat:
    """One field of a group as a flat keyword (and flag)."""

    name: str  # the keyword; the flag is ``--`` + name with dashes
    attr: str  # the field in the group
    type: object
    default: object
    help: str


@functools.cache
def flat_fields(cls: type) -> tuple[Flat, ...]:
    """The one flattener: a group's fields as flat keywords."""
    hints = typing.get_type_hints(cls)
    return tuple(Flat(f.metadata.get("flag") or f.name, f.name, hints[f.name], f.default, f.metadata.get("help", ""))
                 for f in dataclasses.fields(cls))


def to_flat(group: Group) -> dict:
    return {f.name: getattr(group, f.attr) for f in flat_fields(type(group))}


def with_flat(group: Group, values: dict) -> Group:
    """``group`` with the fields named (by flat name) in ``values`` replaced; other names are ignored."""
    changes = {f.attr: values[f.name] for f in flat_fields(type(group)) if f.name in values}
    return dataclasses.replace(group, **changes) if changes else group


def record(own: dict, *groups: Group) -> dict:
    """A call's arguments as config.yaml's ``args:`` records them: the stage's own, then each group nested."""
    return {**own, **{g.key: dataclasses.asdict(g) for g in groups}}


def nested(func: Callable, flat: dict) -> dict:
    """Flat keywords of stage ``func`` (its defaults for the rest of each group) as :func:`record` nests them."""
    names = {f.name for g in func.groups.values() for f in flat_fields(type(g))}
    return record({k: v for k, v in flat.items() if k not in names}, *(with_flat(g, flat) for g in func.groups.values()))


def flatten_record(args: dict, groups: dict[str, type] | None = None) -> dict:
    """config.yaml's ``args:`` (nested by group, or flat as older runs wrote it) as flat keywords, for a
    command whose ``groups`` are given (a mapping there that is not one of them stays as it is, for the
    caller to refuse), or for any command (every mapping is a group; its fields keep their names unless a
    known group renames them). A field unknown to its group keeps its own name."""
    flat = {}
    for key, value in args.items():
        if isinstance(value, dict) and (groups is None or key in groups):
            cls = (GROUPS if groups is None else groups).get(key)
            names = {f.attr: f.name for f in flat_fields(cls)} if cls is not None else {}
            flat.update({names.get(k, k): v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _group_class(annotation) -> type | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, Group) else None


def stage_settings(**defaults: object) -> Callable[[Callable], Callable]:
    """Give a stage function taking groups (keyword-only, annotated with their classes) its flat keywords too,
    with these defaults (by flat name) for this stage; the stage's default groups are ``func.groups``. The
    call holds the lock of its ``out`` folder (rank 0 writes for all ranks under torchrun)."""

    def wrap(func: Callable) -> Callable:
        sig = inspect.signature(func)
        hints = typing.get_type_hints(func)
        classes = {n: c for n in sig.parameters if (c := _group_class(hints.get(n))) is not None}
        for name, cls in classes.items():
            assert name == cls.key, f"{func.__name__}: the {cls.__name__} keyword must be named {cls.key}"
        owner = {f.name: key for key, cls in classes.items() for f in flat_fields(cls)}
        unknown = set(defaults) - set(owner)
        if unknown:
            raise TypeError(f"{func.__name__}: not fields of its groups: {sorted(unknown)}")
        base = {key: with_flat(cls(), defaults) for key, cls in classes.items()}
        own = sig.replace(parameters=[p for n, p in sig.parameters.items() if n not in classes])

        @functools.wraps(func)
        def stage(*args, **kwargs):
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in classes}
            flat = {k: kwargs.pop(k) for k in list(kwargs) if k in owner}
            try:
                bound = own.bind(*args, **kwargs)
            except TypeError as e:
                raise FidanError(f"{func.__name__}: {e}") from None
            bound.apply_defaults()
            groups = {}
            for key, cls in classes.items():
                group = given.get(key, base[key])
                if not isinstance(group, cls):
                    raise FidanError(f"{func.__name__}: {key}= takes a {cls.__name__}, got {type(group).__name__}")
                groups[key] = with_flat(group, flat)
            out = bound.arguments.get("out")
            held = folder_lock(out, "run") if out and os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
            with held:
                return func(*bound.args, **bound.kwargs, **groups)

        stage.__signature__ = sig.replace(
            parameters=[*own.parameters.values(),
                        *(p.replace(default=base[n]) for n, p in sig.parameters.items() if n in classes),
                        inspect.Parameter("options", inspect.Parameter.VAR_KEYWORD)])
        stage.groups = base
        stage.__doc__ = (inspect.cleandoc(func.__doc__ or "") + "\n\nSettings groups (or their fields as keywords):\n"
                         + "\n".join(f"    {key}: {cls.__name__} ({cls.title}): "
                                     f"{', '.join(f.name for f in flat_fields(cls))}." for key, cls in classes.items())
                         + "\n")
        return stage

    return wrap


@dataclass(frozen=True)
class Param:
    """One flat parameter of a command, as the CLI and --config see it."""

    name: str
    default: object  # inspect.Parameter.empty when required
    type: object
    help: str  # from the group's declaration ("" for a function's own: its docstring has it)
    section: str | None  # the --help section: the group's title (None: the command's own options)


def parameters(func: Callable) -> list[Param]:
    """Every flat parameter of a command: its own, then each group's fields with the command's defaults."""
    hints = typing.get_type_hints(func)
    groups = getattr(func, "groups", {})
    out = [Param(n, p.default, hints.get(n, str), "", None) for n, p in inspect.signature(func).parameters.items()
           if n not in groups and p.kind is not inspect.Parameter.VAR_KEYWORD and not n.startswith("_")]
    for group in groups.values():
        out += [Param(f.name, getattr(group, f.attr), f.type, f.help, group.title) for f in flat_fields(type(group))]
    return out
