"""Run folders for training stages: start, resume or refuse; the metrics log; the replayable config.

A run folder holds ``config.yaml`` (an ``args`` block that `--config` replays, then the resolved run:
model, settings in groups, data and tokenizer hashes), ``config.json`` + ``model.safetensors``,
``tokenizer/``, ``metrics.jsonl`` (the source of truth for every logger and plot), ``plots/`` and
``checkpoints/step-N/``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from fidan.artifacts.run_config import RunConfig
from fidan.artifacts.runs import checkpoint_dirs, clear_run, is_run, newest_sound_checkpoint, read_metrics
from fidan.errors import BadRunState, FidanError
from fidan.runtime.io import atomic_write_text

if TYPE_CHECKING:
    from fidan.training.args import TrainArgs


def open_run(run: Path, resume: bool, force: bool, main: bool = True, quiet: bool = False) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start (the folder is then cleared on rank 0).

    ``--resume`` on a run that was stopped before its first checkpoint (no checkpoint, no final weights;
    or no folder yet) starts it from step 0, so a killed run is never a dead end and a requeued job can
    always pass --resume. Refused with one line: an existing run without --resume or --force, or
    --resume on a finished run that kept no checkpoint.
    """
    if resume:
        for stale in (run / "checkpoints").glob(".step-*.tmp") if main else ():
            shutil.rmtree(stale, ignore_errors=True)  # a checkpoint whose writing was cut off by a crash
        ckpts = checkpoint_dirs(run)
        if ckpts:
            sound = newest_sound_checkpoint(run, say=print if main and not quiet else lambda _: None)
            if sound is not None:
                if main and not quiet:
                    print(f"resuming from step {int(sound.name.removeprefix('step-'))} ({sound})")
                return sound
            raise BadRunState(f"--resume: every checkpoint in {run}/checkpoints is damaged (see above); start the "
                              "run again with --force")
        if not (run / "model.safetensors").exists():  # stopped before its first checkpoint, or before it began
            if main and not quiet:
                print(f"note: no checkpoint yet in {run}; starting the run from step 0")
            return None
        raise BadRunState(f"--resume: no checkpoint in {run}/checkpoints; start without --resume "
                          "(add --force to replace a finished run)")
    if is_run(run) and not force:
        raise BadRunState(f"run folder {run} already exists; pass --resume to continue it, --force to replace it, "
                          "or choose another --out")
    return None


def start_fresh(run: Path) -> None:
    clear_run(run)
    run.mkdir(parents=True, exist_ok=True)


def truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop records logged after the checkpoint: the steps are trained, and logged, again.
    A line cut short by a crash is dropped too, and so is a ``final`` record: the run is not over."""
    if not path.exists():
        return
    keep = [r for r in read_metrics(path.parent) if r.get("step", 0) <= step and r.get("kind") != "final"]
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))


PATH_ARGS = ("data", "tokenizer", "out", "model", "val_data")


def write_config(run: Path, args: dict, resolved: dict) -> None:
    """``config.yaml``: ``args`` (the command's arguments, its settings nested by group, replayed by
    ``--config``) and the resolved run."""
    RunConfig({"args": _plain(_replayable(args)), **_plain(resolved)}).write(run)


def _replayable(args: dict) -> dict:
    """Paths made absolute, so the run replays from any working folder (names that are not paths, such as
    ``--model tfidf`` or a hub name, stay as given); --until-step, --resume and --force steer one sitting,
    not the run: a replay runs the whole run, and never overwrites or continues one by accident."""
    replay = {}
    for key, value in args.items():
        if key.startswith("_") or key == "until_step":
            continue
        if isinstance(value, dict):
            value = _replayable(value)
        elif key in PATH_ARGS and isinstance(value, str) and value and Path(value).exists():
            value = str(Path(value).resolve())
        elif key in ("resume", "force"):
            value = False
        replay[key] = value
    return replay


def _plain(value):
    """Values YAML can write safely: paths and tuples become strings and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def check_resume(state: dict, args: TrainArgs, global_batch: int, main: bool) -> None:
    saved = state.get("settings", {})
    saved_global = saved.get("batch_size", 0) * saved.get("grad_accum", 1) * saved.get("world_size", 1)
    if main and (saved_global != global_batch or saved.get("max_steps") != args.max_steps):
        print(f"note: resuming with a global batch of {global_batch} and max_steps {args.max_steps}; the checkpoint "
              f"used {saved_global} and {saved.get('max_steps')} (the run will not be exact)")
    if saved.get("optimizer", "adamw") != args.optimizer:
        raise FidanError(f"--resume: the checkpoint was trained with --optimizer {saved.get('optimizer', 'adamw')}, "
                         f"not {args.optimizer}; pass --optimizer {saved.get('optimizer', 'adamw')}")
