"""One writer per output folder: a run, tuning or data preparation holds an exclusive lock on it.

The lock is ``fcntl.flock`` on a small file beside the folder (``.NAME.lock``, holding the owner's pid, host
and start time), so the operating system drops it when its process ends for any reason: a run killed
with ``kill -9`` never leaves a folder locked. A second writer is refused at once with one line naming the
owner. The file is removed when the owner finishes. (On systems without ``fcntl`` there is no lock.)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from fidan.errors import BadRunState

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

_HELD: dict[str, int] = {}  # lock file → open descriptor, for folders this process already holds


def lock_path(folder: str | os.PathLike) -> Path:
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "run") -> Iterator[None]:
    """Hold ``folder`` for the block; refuse (BadRunState) when another live process holds it. Re-entrant
    within one process (a demo's stages write into folders it already holds)."""
    path = lock_path(folder)
    key = str(path)
    if fcntl is None or key in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = _owner(fd)
        os.close(fd)
        raise BadRunState(f"{what} folder {folder} is being written by another fidan process ({owner}); wait for it "
                          "to finish or stop it, or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
    _HELD[key] = fd
    try:
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking: a waiting writer then locks a fresh file, never this one
        os.close(fd)


def _owner(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "owner unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"


def locks_out(what: str):
    """Decorate a command whose ``out`` argument is the folder it writes: it holds that folder's lock."""
    import functools
    import inspect

    def wrap(func):
        sig = inspect.signature(func)

        @functools.wraps(func)
        def locked(*args, **kwargs):
            out = sig.bind_partial(*args, **kwargs).arguments.get("out")
            with folder_lock(out, what) if out else contextlib.nullcontext():
                return func(*args, **kwargs)

        return locked

    return wrap
