"""Work units of a preparation: the pieces of the sources that processes read in parallel.

A unit is a built-in corpus, a hub dataset, one local file (a ``code:`` source's files among them), or a
byte range of a large uncompressed
``.txt`` / ``.jsonl`` file cut at a document boundary (fidan.artifacts.documents.split_points). The units
of a preparation are listed once, in order, and the output is the same for any number of workers: each
unit is processed alone and the results are joined in unit order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from fidan.artifacts.documents import (
    LOCAL_SUFFIXES,
    SPLITTABLE,
    file_kind,
    read_documents,
    read_range,
    split_points,
)
from fidan.corpus.sources import CODE, code_files, is_record_file, iter_source, read_code
from fidan.errors import BadInput

UNIT_BYTES = 64 * 2**20  # a large uncompressed file is read in pieces of about this size


@dataclass(frozen=True)
class Unit:
    """One piece of one source; ``path`` is None for built-in and hub sources."""

    source: str  # the --source it came from
    path: str | None = None
    start: int = 0
    end: int | None = None  # None: to the end of the file
    size: int = 0  # bytes on disk (of the range), 0 where unknown
    mtime_ns: int = 0

    @property
    def name(self) -> str:
        """How messages name the unit: the file, with its byte range when it is a piece of one."""
        if self.path is None:
            return self.source
        return f"{self.path} (bytes {self.start:,}-{self.end:,})" if self.end is not None else self.path

    @property
    def code(self) -> bool:
        """Source code (a ``code:`` source): kept byte for byte, no prose filters."""
        return self.source.startswith(CODE)

    def key(self) -> str:
        """A fingerprint: the same unit of an unchanged file has the same key."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def documents(self, text_field: str) -> Iterator[str]:
        if self.path is None:
            return iter_source(self.source, text_field)
        if self.end is not None:
            return read_range(self.path, self.start, self.end, text_field)
        if self.code:
            return read_code(self.path, text_field)
        return read_documents(self.path, text_field)


def list_units(sources: list[str], text_field: str = "text", unit_bytes: int | None = None,
               say=print) -> list[Unit]:
    """Every source's units, in order; a source that does not exist is a BadInput here, before any work."""
    unit_bytes = unit_bytes or UNIT_BYTES
    units: list[Unit] = []
    for spec in sources:
        if spec.startswith(CODE):
            for f in code_files(spec, say):
                if is_record_file(f):  # by records, cut into byte ranges like any large .jsonl
                    units.extend(_file_units(spec, f, unit_bytes))
                else:  # one document: never cut
                    st = f.stat()
                    units.append(Unit(spec, str(f), size=st.st_size, mtime_ns=st.st_mtime_ns))
            continue
        path = Path(spec)
        if spec.startswith("hf:") or not (path.is_file() or path.is_dir()):
            iter_source(spec, text_field)  # validates the name (raises BadInput) without reading
            units.append(Unit(spec))
            continue
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and file_kind(p))
            if not files:
                raise BadInput(f"folder {path} has no {', '.join(LOCAL_SUFFIXES)} files")
        else:
            read_documents(path, text_field)  # an unsupported suffix is refused here
            files = [path]
        for f in files:
            units.extend(_file_units(spec, f, unit_bytes))
    return units


def _file_units(spec: str, path: Path, unit_bytes: int) -> list[Unit]:
    st = path.stat()
    if file_kind(path) not in SPLITTABLE or st.st_size <= unit_bytes:
        return [Unit(spec, str(path), size=st.st_size, mtime_ns=st.st_mtime_ns)]
    points = split_points(path, unit_bytes)
    return [Unit(spec, str(path), a, b, b - a, st.st_mtime_ns) for a, b in zip(points, points[1:], strict=False)]
