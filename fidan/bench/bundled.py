"""The bundled Turkish corpus and a tokenizer for it, prepared once in a work folder and reused."""

from __future__ import annotations

from pathlib import Path

from fidan.corpus.prepare import prepare_data
from fidan.tokenizer.train import train_tokenizer

BUNDLED_SOURCES = ["tr-speeches", "tr-treebank"]


def bundled_data(work: str | Path, vocab_size: int = 8000) -> tuple[str, str]:
    """``(data folder, tokenizer folder)`` under ``work``: built on first use, then reused."""
    work = Path(work)
    data, tok = work / "data", work / f"tokenizer-{vocab_size}"
    if not (data / "manifest.json").exists():
        prepare_data(source=BUNDLED_SOURCES, out=str(data), val_fraction=0.05, force=True)
    if not (tok / "tokenizer.json").exists():
        train_tokenizer(data=str(data), out=str(tok), vocab_size=vocab_size, force=True)
    return str(data), str(tok)
