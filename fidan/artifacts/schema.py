"""One versioned schema per artifact kind: every file that describes an artifact says what it is and in
which version of its layout, and every reader checks it.

``"artifact": "fidan-<kind>", "artifact_version": N`` sits in a data folder's ``manifest.json`` (kinds
``data`` and ``instructions``), a token folder's ``meta.json`` (``tokens``), a model's ``config.json``
(``model``) and a checkpoint's state (``checkpoint``), and in every file one stage writes for another:
a run's ``config.yaml`` (``run``), ``extension.json``, evaluation results, a classifier's figures,
``bench-infer/infer.json`` and ``timings.json``, each a ``Record`` with one owner module in artifacts/.
Files written before the field existed read as version 1. A reader refuses, with one line, a file of another kind or of a newer version than it knows:
the fix is to point it at the right folder or to upgrade fidan.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from fidan.errors import BadInput
from fidan.runtime.io import atomic_write_json

VERSIONS = {"data": 1, "instructions": 1, "tokens": 1, "model": 1, "checkpoint": 1,
            # files one stage writes for another (fidan.artifacts.results, extension, run_config)
            "run": 1, "extension": 1, "eval": 1, "classifier-metrics": 1, "classifier-summary": 1,
            "bench-infer": 1, "timings": 1}


def stamp(kind: str, record: dict) -> dict:
    """``record`` with its kind and layout version first."""
    return {"artifact": f"fidan-{kind}", "artifact_version": VERSIONS[kind],
            **{k: v for k, v in record.items() if k not in ("artifact", "artifact_version")}}


def check(kinds: str | tuple[str, ...], record: dict, where: object) -> str:
    """The kind ``record`` declares (one of ``kinds``; a file without the field counts as the first)."""
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    declared = record.get("artifact")
    kind = kinds[0] if declared is None else str(declared).removeprefix("fidan-")
    if kind not in kinds:
        wanted = " or ".join(f"fidan-{k}" for k in kinds)
        raise BadInput(f"{where} describes a {declared} artifact, not {wanted}; pass the right folder")
    version = record.get("artifact_version", 1)
    if not isinstance(version, int) or version > VERSIONS[kind]:
        raise BadInput(f"{where} is fidan-{kind} version {version}, newer than this fidan reads "
                       f"(up to {VERSIONS[kind]}); upgrade fidan")
    return kind


@dataclass
class Record:
    """A file one stage writes and other stages read, as a dataclass: ``KIND`` (its ``fidan-<kind>`` stamp),
    ``FILE`` (its name in a folder, where it has a fixed one) and ``FIX`` (how to write it again, for the
    one-line error). Keys the class does not name are kept in ``extra`` and written back as they were."""

    KIND: ClassVar[str]
    FILE: ClassVar[str] = ""
    FIX: ClassVar[str] = "write it again"
    extra: dict = field(default_factory=dict, kw_only=True)

    def to_dict(self) -> dict:
        """The fields, then ``extra``; an optional field left at None is not written (as before it existed)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name != "extra" and not (f.default is None and getattr(self, f.name) is None)}
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, raw: dict, where: object = "a record"):
        known = {f.name for f in fields(cls)} - {"extra"}
        required = [f.name for f in fields(cls) if f.name in known and f.default is MISSING
                    and f.default_factory is MISSING]
        missing = [name for name in required if name not in raw]
        if missing:
            raise BadInput(f"{where} lacks {', '.join(missing)}; {cls.FIX}")
        extra = {k: v for k, v in raw.items() if k not in known and k not in ("artifact", "artifact_version")}
        return cls(**{k: v for k, v in raw.items() if k in known}, extra=extra)

    def save(self, path: str | Path) -> dict:
        """Write the record (stamped) atomically to ``path``; returns what was written."""
        record = stamp(self.KIND, self.to_dict())
        atomic_write_json(path, record)
        return record

    def write(self, folder: str | Path) -> dict:
        return self.save(Path(folder) / self.FILE)

    @classmethod
    def load(cls, path: str | Path):
        """The record in ``path``; None when there is no such file. A file that is not valid JSON, of another
        kind or of a newer version is refused with one line."""
        raw = read_record(path, cls.KIND, cls.FIX)
        return None if raw is None else cls.from_dict(raw, path)

    @classmethod
    def read(cls, folder: str | Path):
        return cls.load(Path(folder) / cls.FILE)


def read_record(path: str | Path, kind: str, fix: str) -> dict | None:
    """The JSON object in ``path``, checked to be a ``kind`` record; None when the file does not exist."""
    raw = read_object(path, fix)
    if raw is not None:
        check(kind, raw, path)
    return raw


def read_object(path: str | Path, fix: str) -> dict | None:
    """The JSON object in ``path`` (None when there is no such file), or one line saying what is wrong and ``fix``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(f"{path} is unreadable or not valid JSON ({str(e).splitlines()[0][:100]}); {fix}") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path} holds a JSON {type(raw).__name__}, not an object; {fix}")
    return raw


def kind_of(record: dict) -> str | None:
    """The kind a record declares (``fidan-`` taken off), or None for a file written before the field."""
    declared = record.get("artifact")
    return None if declared is None else str(declared).removeprefix("fidan-")
