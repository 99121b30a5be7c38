"""Results one stage writes into a run folder for the report and `fidan compare`: `fidan eval` results in
``eval/*.json`` (``bpb``, ``mc``, ``mc-suite``, ``samples``; `fidan eval lm-eval` writes ``lm-eval``) and
``timings.json`` (how long each stage of `fidan demo` took, and on what machine)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from fidan.artifacts.schema import Record, check, kind_of, read_object
from fidan.runtime.environment import environment

EVAL_DIR = "eval"
TIMINGS_FILE = "timings.json"


@dataclass
class EvalResult(Record):
    """One evaluation: which task, of which model, when; the task's figures (``bpb``, ``accuracy``, ``sets``,
    ``samples``, ...) are in ``extra``, as the task wrote them."""

    KIND = "eval"
    FIX = "run the evaluation again (`fidan eval ...`) or remove the file"

    task: str
    model: str | None = None
    model_kind: str | None = None
    date: str | None = None
    seconds: float | None = None
    environment: dict = field(default_factory=dict)


def save_result(path: Path, result: dict, started: float) -> dict:
    """Write an evaluation's result with its time, date and machine; returns what was written."""
    result = {**result, "seconds": round(time.time() - started, 2), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "environment": environment()}
    return EvalResult.from_dict(result, path).save(path)


def eval_results(run: Path, tasks: tuple[str, ...] | None = None) -> list[tuple[Path, EvalResult]]:
    """Every evaluation result in ``RUN/eval/`` (of ``tasks``, if given), by file name. Other files there (a
    classifier's figures) are passed over; a damaged result or one from a newer fidan is refused with one line."""
    folder = Path(run) / EVAL_DIR
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        raw = read_object(path, EvalResult.FIX)
        if kind_of(raw) not in (None, EvalResult.KIND) or (kind_of(raw) is None and "task" not in raw):
            continue  # another kind of record (a classifier's figures), stamped or written before stamps
        check(EvalResult.KIND, raw, path)
        result = EvalResult.from_dict(raw, path)
        if tasks is None or result.task in tasks:
            found.append((path, result))
    return found


@dataclass
class Timings(Record):
    KIND = "timings"
    FILE = TIMINGS_FILE
    FIX = "remove it (`fidan demo` writes it again)"

    stages: dict[str, float]  # stage → seconds
    environment: dict = field(default_factory=dict)
    date: str | None = None


def save_timings(run: str | Path, timings: dict[str, float]) -> Path:
    """Record how long each stage took, with the machine it ran on, for the report."""
    Timings({k: round(v, 1) for k, v in timings.items()}, environment(),
            time.strftime("%Y-%m-%dT%H:%M:%S%z")).write(run)
    return Path(run) / TIMINGS_FILE
