"""Small, safe file helpers: atomic writes, output-directory guards, hashing, JSONL."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fidan.errors import BadInput, BadRunState


def _umask_mode(base: int) -> int:
    # mkstemp/mkdtemp create private (0600/0700) entries; give results the usual permissions.
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place when the block succeeds; a folder
    already there is first renamed aside (``.NAME.*.old.tmp``, deleted after), never deleted in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _umask_mode(0o777))
    try:
        yield tmp
        old = _aside(path) if path.exists() else None
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _aside(path: Path) -> Path:
    """Rename a folder to a hidden ``.NAME.*.old.tmp`` next to it, in one step: a kill never leaves a half-deleted
    folder under its real name (what is left is hidden, and cleaned up by whoever owns the parent)."""
    old = path.parent / f".{path.name}.{uuid.uuid4().hex}.old.tmp"
    os.rename(path, old)
    return old


def remove_dir(path: str | os.PathLike) -> None:
    """Delete a folder so that it is either whole under its name or gone (renamed aside, then deleted)."""
    shutil.rmtree(_aside(Path(path)), ignore_errors=True)


def prepare_out_dir(path: str | os.PathLike, force: bool, what: str = "output") -> Path:
    """Refuse to write into a non-empty directory unless the user passed --force."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadRunState(f"{what} path {path} is a file, not a directory; choose another --out")
    if path.exists() and any(path.iterdir()):
        if not force:
            raise BadRunState(
                f"{what} directory {path} already exists and is not empty; "
                "pass --force to replace it or choose another --out"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_path(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    path = Path(path)
    if not path.exists():
        msg = f"{what} not found: {path}"
        raise BadInput(msg + (f"; {hint}" if hint else ""))
    return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_text(path: str | os.PathLike):
    """Open a (possibly gzipped) UTF-8 text file strictly: decoding errors raise."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="strict", newline="")
    return open(path, encoding="utf-8", errors="strict", newline="")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    path = require_path(path, what)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{what} {path} is not valid JSON ({e}); regenerate or fix it") from None


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def as_list(value: str | os.PathLike | list | tuple | None) -> list:
    """A list argument given as one value (``source="tr-speeches"`` from Python) is a list of that value.

    Without this a string would be iterated letter by letter.
    """
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [value]
    return list(value)


def as_os_error(e: BaseException, path: str | os.PathLike) -> BaseException:
    """A library's wrapped I/O failure (safetensors reports "... (os error 28)") as the OSError it is;
    any other exception unchanged."""
    if isinstance(e, OSError):
        return e
    import re

    m = re.search(r"os error (\d+)", str(e))
    if not m:
        return e
    code = int(m.group(1))
    return OSError(code, os.strerror(code), str(path))
