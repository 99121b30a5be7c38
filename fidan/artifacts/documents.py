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
import zlib
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
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _decode_error(path, e, lineno) from None
            yield _record_text(line, field, f"{path}:{lineno}")


def _record_text(line: str, field: str, where: str) -> str:
    """The text field of one JSON line; ``where`` names the file and line in an error."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadInput(f"{where}: malformed JSON ({e.msg}); fix or remove that line") from None
    if not isinstance(record, dict) or field not in record:
        raise BadInput(f"{where}: record has no field '{field}'; pass --text-field NAME")
    value = record[field]
    if not isinstance(value, str):
        raise BadInput(f"{where}: field '{field}' is {type(value).__name__}, not a string")
    return value


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
    """The documents of one local file, by the rule in this module's docstring (streamed).

    A corrupt or truncated compressed file (or parquet file) is a BadInput naming the file, raised where
    the damage is met, after the documents before it."""
    path = Path(path)
    kind = file_kind(path)
    if kind in (".txt", ".txt.gz"):
        return _guarded(path, _read_txt(path))
    if kind in (".jsonl", ".jsonl.gz"):
        return _guarded(path, _read_jsonl(path, text_field))
    if kind == ".csv":
        return _read_csv(path, text_field)
    if kind == ".parquet":
        return _guarded(path, _read_parquet(path, text_field))
    raise BadInput(f"{path}: unsupported file type; fidan reads {', '.join(LOCAL_SUFFIXES)}")


def _corrupt(path: Path, e: BaseException) -> BadInput:
    return BadInput(f"{path} is corrupt or truncated ({type(e).__name__}: {e}); replace the file, or remove it "
                    "(data prepare: --skip-bad-files goes on without it)")


def _guarded(path: Path, docs: Iterator[str]) -> Iterator[str]:
    """Turn the errors of a damaged gzip or parquet file into one BadInput that names the file."""
    errors: tuple[type[BaseException], ...] = (gzip.BadGzipFile, EOFError, zlib.error)
    try:
        import pyarrow

        errors += (pyarrow.ArrowException,)
    except ModuleNotFoundError:
        pass
    try:
        yield from docs
    except errors as e:
        raise _corrupt(path, e) from None


# Byte ranges of one large uncompressed file, so that several processes can read it in parallel.
SPLITTABLE = (".txt", ".jsonl")


def split_points(path: str | Path, piece_bytes: int) -> list[int]:
    """Offsets that cut an uncompressed .txt or .jsonl file into pieces of about ``piece_bytes``, each
    starting at a document's first line: after a newline (.jsonl) or after a blank line (.txt). The list
    starts with 0 and ends with the file size."""
    path = Path(path)
    size = path.stat().st_size
    kind = file_kind(path)
    points = [0]
    with open(path, "rb") as f:
        nominal = piece_bytes
        while nominal < size:
            f.seek(nominal - 1)
            f.readline()  # to the start of the next line (stays put when a line starts at `nominal`)
            if kind == ".txt":  # on to the line after the next blank one: a paragraph starts there
                while True:
                    line = f.readline()
                    if not line or not line.strip():
                        break
            at = f.tell()
            if at >= size:
                break
            if at > points[-1]:
                points.append(at)
            nominal = max(at, nominal) + piece_bytes
    points.append(size)
    return points


def read_range(path: str | Path, start: int, end: int, text_field: str = "text") -> Iterator[str]:
    """The documents of bytes [start, end) of an uncompressed .txt or .jsonl file cut at ``split_points``."""
    path = Path(path)
    kind = file_kind(path)
    if kind not in SPLITTABLE:
        raise BadInput(f"{path}: only uncompressed {' and '.join(SPLITTABLE)} files are read by byte range")

    def lines() -> Iterator[tuple[int, str]]:
        with open(path, "rb") as f:
            f.seek(start)
            pos = start
            while pos < end:
                raw = f.readline()
                if not raw:
                    break
                try:
                    yield pos, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise BadInput(
                        f"{path} (byte {pos + e.start}) is not valid UTF-8 (byte 0x{raw[e.start]:02x}); "
                        "convert it first, e.g. iconv -f windows-1254 -t utf-8") from None
                pos += len(raw)

    if kind == ".txt":
        yield from paragraphs(line for _, line in lines())
        return
    for pos, line in lines():
        if line.strip():
            yield _record_text(line, text_field, f"{path} (the line at byte {pos})")
