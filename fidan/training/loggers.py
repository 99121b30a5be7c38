"""Experiment tracking: the records of ``metrics.jsonl`` mirrored to TensorBoard, W&B or a CSV file.

The training loop writes ``metrics.jsonl`` itself; it stays the source of truth. A :class:`Logger`
only mirrors each record the loop writes there::

    logger = make_logger(["tensorboard", "csv"], run, config)   # rank 0, after the run folder is opened
    logger.log({"kind": "train", "step": 12, "loss": 3.2, "lr": 6e-4})
    logger.close()

A record's numbers become scalars named ``<kind>/<key>`` (``train/loss``, ``eval/val_bpb``) at its
``step``; strings (the evaluation sample) become text.

Resume: every sink is rebuilt from ``metrics.jsonl`` as it stands when the logger is made. The loop
has already cut that file back to the checkpoint on ``--resume`` (or cleared the folder on a fresh
start), so ``RUN/tensorboard/`` and ``RUN/metrics.csv`` are rewritten to hold exactly those records and
then follow the live ones: a resumed run never logs a step twice, and a replaced run keeps nothing of
the old one. W&B is not replayed: a resumed run continues the same W&B run (its id is kept in
``RUN/wandb-run.json``), and W&B itself ignores steps it already holds, which exact resume logs again
with the same values.
"""

from __future__ import annotations

import csv
import io
import json
import netrc
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from fidan.artifacts.runs import read_metrics
from fidan.errors import FidanError
from fidan.runtime.io import atomic_write_json, atomic_write_text

KINDS = ("tensorboard", "wandb", "csv")
TENSORBOARD_DIR = "tensorboard"
CSV_FILE = "metrics.csv"
WANDB_FILE = "wandb-run.json"


class Sink(Protocol):
    def log(self, record: dict) -> None: ...

    def close(self) -> None: ...


def parse_kinds(kinds: list[str] | str | None) -> list[str]:
    """``"tensorboard,csv"``, ``["tensorboard", "csv"]`` or a repeated flag's list of such strings → names."""
    items = [kinds] if isinstance(kinds, str) else list(kinds or [])
    out: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if name and name != "none" and name not in out:
                out.append(name)
    unknown = [n for n in out if n not in KINDS]
    if unknown:
        raise FidanError(f"--logger: unknown logger {unknown[0]!r}; choose from {', '.join(KINDS)} "
                         "(repeat the flag or separate names by commas)")
    return out


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl file; a line cut short by a crash is skipped."""
    return read_metrics(path.parent)


def _fields(record: dict) -> Iterable[tuple[str, Any]]:
    """(key, value) pairs of a record apart from kind and step; nested dicts as ``outer/inner``."""
    for key, value in record.items():
        if key in ("kind", "step"):
            continue
        if isinstance(value, dict):
            for k, v in _fields(value):
                yield f"{key}/{k}", v
        else:
            yield key, value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN is skipped


class Logger:
    """Sends each metrics record to every configured sink; with no sinks it does nothing."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks

    def log(self, record: dict) -> None:
        for sink in self.sinks:
            sink.log(record)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TensorBoardSink:
    """Event files under ``RUN/tensorboard/`` through ``torch.utils.tensorboard``."""

    def __init__(self, run: Path, config: dict, history: list[dict]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise FidanError("--logger tensorboard needs the tensorboard package; "
                             "install it with: pip install 'fidan[track]' (or pip install tensorboard)") from None
        folder = run / TENSORBOARD_DIR
        shutil.rmtree(folder, ignore_errors=True)  # rebuilt from metrics.jsonl: see the module docstring
        self.writer = SummaryWriter(log_dir=str(folder))
        if config:
            text = json.dumps(config, indent=2, ensure_ascii=False, default=str)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)  # indented: shown as code
        for record in history:
            self.log(record)
        self.writer.flush()

    def log(self, record: dict) -> None:
        kind, step = record.get("kind", "metrics"), int(record.get("step", 0))
        for key, value in _fields(record):
            if _is_number(value):
                self.writer.add_scalar(f"{kind}/{key}", value, step)
            elif isinstance(value, str) and value:
                self.writer.add_text(f"{kind}/{key}", value, step)
        if kind != "train":  # evaluations are rare and worth seeing at once; training steps flush in batches
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class CsvSink:
    """One wide ``RUN/metrics.csv``: a row per record, columns ``kind, step`` then each key as first seen.

    A record with a key not yet in the header rewrites the file (atomically) with the wider header,
    so every row always lines up with it.
    """

    def __init__(self, run: Path, history: list[dict]):
        self.path = run / CSV_FILE
        self.columns: list[str] = ["kind", "step"]
        self.rows: list[dict] = []
        self.fh: io.TextIOWrapper | None = None
        for record in history:
            self._add(record)
        self._rewrite()

    def _add(self, record: dict) -> bool:
        row = {"kind": record.get("kind", ""), "step": record.get("step", "")}
        row.update((k, v) for k, v in _fields(record) if v is not None)
        new = [k for k in row if k not in self.columns]
        self.columns += new
        self.rows.append(row)
        return bool(new)

    def _rewrite(self) -> None:
        if self.fh:
            self.fh.close()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())
        self.fh = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - kept open across records

    def log(self, record: dict) -> None:
        if self._add(record):
            self._rewrite()
            return
        assert self.fh is not None
        csv.DictWriter(self.fh, self.columns, lineterminator="\n").writerow(self.rows[-1])
        self.fh.flush()

    def close(self) -> None:
        if self.fh:
            self.fh.close()
            self.fh = None


class WandbSink:
    """A Weights & Biases run (project ``$WANDB_PROJECT``, default ``fidan``), files under ``RUN/wandb/``.

    ``WANDB_MODE`` is respected as set; when it is unset and no API key is configured (``WANDB_API_KEY``
    or ``wandb login``), the run is logged offline instead of prompting, to be sent later with
    ``wandb sync``.
    """

    def __init__(self, run: Path, config: dict, history: list[dict]):
        try:
            import wandb
        except ImportError:
            raise FidanError("--logger wandb needs the wandb package; install it with: pip install wandb") from None
        id_file = run / WANDB_FILE
        run_id = None
        if history and id_file.exists():  # a resumed run continues its W&B run
            run_id = json.loads(id_file.read_text(encoding="utf-8")).get("id")
        run_id = run_id or wandb.util.generate_id()
        mode = os.environ.get("WANDB_MODE")
        if mode is None and not _wandb_key():
            mode = "offline"
            print(f"wandb: no API key (WANDB_API_KEY or `wandb login`): logging offline under {run}/wandb; "
                  "send it later with `wandb sync`", file=sys.stderr)
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "fidan"), name=run.resolve().name,
                                  id=run_id, resume="allow", dir=str(run), config=config, mode=mode)
        except Exception as e:  # noqa: BLE001 - wandb raises many types (network, auth, settings)
            raise FidanError(f"wandb could not start a run ({str(e).splitlines()[0][:200]}); "
                             "set WANDB_MODE=offline to log locally") from None
        atomic_write_json(id_file, {"id": run_id, "project": os.environ.get("WANDB_PROJECT", "fidan")})

    def log(self, record: dict) -> None:
        values = {f"{record.get('kind', 'metrics')}/{k}": v for k, v in _fields(record)
                  if _is_number(v) or (isinstance(v, str) and v)}
        if values:
            self.run.log(values, step=int(record.get("step", 0)))

    def close(self) -> None:
        self.run.finish()


def _wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def make_logger(kinds: list[str] | str | None, run: Path, config: dict) -> Logger:
    """The loggers named by ``--logger`` for a run folder, rebuilt from its ``metrics.jsonl``.

    Call it on rank 0 only, after the run folder is opened (a fresh start cleared, or ``--resume`` cut
    ``metrics.jsonl`` back to the checkpoint), and pass it every record written to ``metrics.jsonl``.

    Args:
        kinds: tensorboard, wandb, csv: a list, a comma-separated string, or None for no logger.
        run: the run folder.
        config: the run's resolved settings (shown by TensorBoard as text, by W&B as the run config).
    """
    names = parse_kinds(kinds)
    run = Path(run)
    if not names:
        return Logger([])
    run.mkdir(parents=True, exist_ok=True)
    history = read_records(run / "metrics.jsonl")
    sinks: list[Sink] = []
    try:
        for name in names:
            if name == "tensorboard":
                sinks.append(TensorBoardSink(run, config, history))
            elif name == "csv":
                sinks.append(CsvSink(run, history))
            else:
                sinks.append(WandbSink(run, config, history))
    except BaseException:
        Logger(sinks).close()
        raise
    return Logger(sinks)
