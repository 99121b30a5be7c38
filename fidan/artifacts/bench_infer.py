"""``bench-infer/infer.json``: what `fidan bench infer` measured (written by bench/infer.py, shown again by
the run's report). Its tables and plots are drawn from the result alone, in fidan.artifacts.infer_tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from fidan.artifacts.schema import Record

INFER_DIR = "bench-infer"  # inside a measured run folder


@dataclass
class InferResult(Record):
    """Speed per (precision, batch, prompt length) in ``results``; settings, load times, memory and the machine
    in the other fields (``extra`` holds them as written)."""

    KIND = "bench-infer"
    FILE = "infer.json"
    FIX = "measure again with `fidan bench infer --force`"

    model: str
    results: list[dict]
    task: str | None = None  # "classification" for an encoder; absent for a model that generates
    plots: list[str] = field(default_factory=list)
