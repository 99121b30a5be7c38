"""What a document is in a local file: one rule for every stage that reads text.

- ``.txt`` (or ``.txt.gz``): each blank-line-separated paragraph is one document; a paragraph's
  lines keep their line breaks, the blank lines between paragraphs belong to no document.
- ``.jsonl`` / ``.jsonl.gz``: each record's text field is one document.
- ``.csv`` / ``.parquet``: each non-empty value of the text column is one document.

``data prepare``, ``tokenizer eval`` and ``eval bpb`` all read files through :func:`read_documents`,
so the same file is the same documents everywhere. Decoding is strict: a file that is not UTF-8 is
refused with its name and the offending byte.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from fidan.errors import BadInput, MissingExtra

LOCAL_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".csv", ".parquet")


def paragraphs(lines: Iterable[str]) -> Iterator[str]:
    """Blank-line-separated paragraphs of text given line by line (a whitespace-only line is blank)."""
    buf: list[str] = []
    for line in lines:
        if line.strip():
            buf.append(line.rstrip("\r\n"))
        elif buf:
            yield "\n".join(buf)
            buf = []
    if buf:
        yield "\n".join(buf)


def file_kind(path: str | Path) -> str | None:
    """The suffix fidan reads ``path`` by, or None when it is not a text file fidan knows."""
    name = Path(path).name.lower()
    return next((s for s in LOCAL_SUFFIXES if name.endswith(s)), None)


def _decode_error(path: Path, e: UnicodeDecodeError, line: int | None = None) -> BadInput:
    where = f"{path}:{line}" if line else str(path)
    return BadInput(
        f"{where} is not valid UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
        "convert it first, e.g. iconv -f windows-1254 -t utf-8"
    )


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="strict")
    return open(path, encoding="utf-8", errors="strict")


def _read_txt(path: Path) -> Iterator[str]:
    try:
        with _open_text(path) as f:
            yield from paragraphs(f)
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None


def _read_jsonl(path: Path, field: str) -> Iterator[str]:
    with (gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")) as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise _decode_error(path, e, lineno) from None
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{lineno}: malformed JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(record, dict) or field not in record:
                raise BadInput(f"{path}:{lineno}: record has no field '{field}'; pass --text-field NAME")
            value = record[field]
            if not isinstance(value, str):
                raise BadInput(f"{path}:{lineno}: field '{field}' is {type(value).__name__}, not a string")
            yield value


def _read_csv(path: Path, field: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="strict", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or field not in reader.fieldnames:
                raise BadInput(f"{path}: no column '{field}' (columns: {reader.fieldnames}); pass --text-field NAME")
            for row in reader:
                if row[field]:
                    yield row[field]
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None


def _read_parquet(path: Path, field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise MissingExtra("reading .parquet needs pyarrow; install it with: pip install 'fidan[datasets]'") from None
    pf = pq.ParquetFile(path)
    if field not in pf.schema_arrow.names:
        raise BadInput(f"{path}: no column '{field}' (columns: {pf.schema_arrow.names}); pass --text-field NAME")
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            if value:
                yield value


def read_documents(path: str | Path, text_field: str = "text") -> Iterator[str]:
    """The documents of one local file, by the rule in this module's docstring (streamed)."""
    path = Path(path)
    kind = file_kind(path)
    if kind in (".txt", ".txt.gz"):
        return _read_txt(path)
    if kind in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path, text_field)
    if kind == ".csv":
        return _read_csv(path, text_field)
    if kind == ".parquet":
        return _read_parquet(path, text_field)
    raise BadInput(f"{path}: unsupported file type; fidan reads {', '.join(LOCAL_SUFFIXES)}")

