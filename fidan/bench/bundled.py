"""The bundled Turkish corpus and a tokenizer for it, prepared once in a work folder and reused."""

from __future__ import annotations

from pathlib import Path

from fidan.corpus.prepare import prepare_data
from fidan.corpus.sources import BUILTIN
from fidan.errors import BadInput
from fidan.tokenizer.train import train_tokenizer

BUNDLED_SOURCES = ["tr-speeches", "tr-treebank"]
HELD_OUT_FRACTION = 0.2  # of a held-out source, the part measured (its "val" split)


def bundled_data(work: str | Path, vocab_size: int = 8000, sources: list[str] | None = None) -> tuple[str, str]:
    """``(data folder, tokenizer folder)`` under ``work`` for these built-in sources (default: the speeches
    and the treebank): built on first use, then reused."""
    sources = list(sources or BUNDLED_SOURCES)
    key = "" if sources == BUNDLED_SOURCES else "-" + "+".join(sources)
    work = Path(work)
    data, tok = work / f"data{key}", work / f"tokenizer-{vocab_size}{key}"
    if not (data / "manifest.json").exists():
        prepare_data(source=sources, out=str(data), val_fraction=0.05, force=True)
    if not (tok / "tokenizer.json").exists():
        train_tokenizer(data=str(data), out=str(tok), vocab_size=vocab_size, force=True)
    return str(data), str(tok)


def held_out_split(work: str | Path, source: str, sources: list[str] | None) -> tuple[list[str], str]:
    """The training sources without ``source`` (default: every other built-in source) and a data folder of
    ``source`` alone under ``work`` whose "val" split is the text measured out of domain."""
    if source not in BUILTIN:
        raise BadInput(f"--held-out {source}: not a built-in source; choose one of {', '.join(BUILTIN)}")
    training = [s for s in (sources or BUILTIN) if s != source]
    if not training:
        raise BadInput(f"--held-out {source} leaves no source to train on; add --source")
    folder = Path(work) / f"held-out-{source}"
    if not (folder / "manifest.json").exists():
        prepare_data(source=[source], out=str(folder), val_fraction=HELD_OUT_FRACTION, force=True)
    return training, str(folder)
