"""Running one pass of a preparation over its units: in this process or in N worker processes, resumably.

Each unit's result is a folder written under a temporary name and renamed into place when complete, so
a crash or kill leaves finished units behind and no half-written one; the next run with the same
settings finds them and does only the rest. A progress bar counts the bytes read (MB/s).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from fidan.corpus.units import Unit

_counter = None  # in a worker process: the shared count of bytes read, set by _init


class _LocalCounter:
    """The shared counter's interface, for work done in this process."""

    def __init__(self) -> None:
        self.value = 0
        self.bar = None
        self._lock = threading.Lock()

    def get_lock(self):
        return self._lock


_local = _LocalCounter()


def _init(counter) -> None:
    global _counter
    _counter = counter
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one process per core; no library should spread wider


def add_bytes(n: int) -> None:
    """Count ``n`` bytes read toward the progress bar (cheap; call it every megabyte or so)."""
    if _counter is None:  # in this process: move the bar itself
        _local.value += n
        if _local.bar is not None:
            _local.bar.update(n)
        return
    with _counter.get_lock():
        _counter.value += n


def run_unit(task: Callable, i: int, size: int, folder: str | Path) -> None:
    """Run ``task(i, tmp_folder, count)`` and rename its folder into place; the bytes it counted are topped
    up to the unit's size so the bar ends at 100%."""
    final = Path(folder)
    tmp = final.with_name(final.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counted = _Counted()
    task(i, tmp, counted)
    os.replace(tmp, final)
    if size and counted.n < size:
        add_bytes(size - counted.n)


class _Counted:
    """Passes byte counts to the progress counter in batches, never beyond the unit's size."""

    def __init__(self) -> None:
        self.n = self._pending = 0

    def __call__(self, n: int) -> None:
        self._pending += n
        if self._pending >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        self.n += self._pending
        add_bytes(self._pending)
        self._pending = 0


def run_pass(name: str, task: Callable, units: list[Unit], folders: list[Path], workers: int,
             talk: bool = True) -> None:
    """Run ``task(i, folder, count)`` for every unit whose folder does not exist yet, in this process
    (one worker) or in ``workers`` processes; finished units of a stopped pass stay on disk."""
    todo = [i for i, f in enumerate(folders) if not f.exists()]
    done = len(units) - len(todo)
    if done and todo and talk:
        print(f"data: {name}: resuming, {done} of {len(units)} units done")
    if not todo:
        return
    sized = all(u.size for u in units)
    bar = tqdm(total=sum(units[i].size for i in todo) if sized else None, desc=name, unit="B", unit_scale=True,
               unit_divisor=1024, dynamic_ncols=True,
               disable=None if talk else True)  # None: no bar when not a terminal

    def finished() -> None:
        nonlocal done
        done += 1
        bar.set_postfix_str(f"units {done}/{len(units)}")

    bar.set_postfix_str(f"units {done}/{len(units)}")
    try:
        if workers <= 1 or len(todo) == 1:
            _local.value, _local.bar = 0, bar
            try:
                for i in todo:
                    run_unit(task, i, units[i].size, folders[i])
                    finished()
            finally:
                _local.bar = None
            return
        context = mp.get_context("spawn")  # not fork: the parent may hold threads (tqdm, torch, tokenizers)
        counter = context.Value("q", 0)
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context, initializer=_init,
                                 initargs=(counter,)) as executor:
            pending = {executor.submit(run_unit, task, i, units[i].size, str(folders[i])) for i in todo}
            try:
                while pending:
                    ready, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    bar.update(counter.value - bar.n)
                    for fut in ready:
                        fut.result()  # a unit's error stops the pass
                        finished()
            except BaseException:  # an error, Ctrl-C: stop the other units now, not when they finish
                for process in (getattr(executor, "_processes", None) or {}).values():
                    process.terminate()
                executor.shutdown(wait=False, cancel_futures=True)
                raise
            bar.update(counter.value - bar.n)
    finally:
        bar.close()


def clean(folder: Path, keep: set[str]) -> None:
    """Remove what a pass folder holds besides the results named in ``keep`` (other settings, leftovers of
    a killed run)."""
    if not folder.exists():
        return
    for p in folder.iterdir():
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
