"""``extension.json``: what `fidan vocab extend` added to a model (written by adapt/extend.py, read by
`--only-new-embeddings` when training starts from the folder, copied into the run, read by the report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fidan.artifacts.schema import Record
from fidan.errors import FidanError

EXTENSION_FILE = "extension.json"


@dataclass
class Extension(Record):
    KIND = "extension"
    FILE = EXTENSION_FILE
    FIX = "extend the vocabulary again with `fidan vocab extend`"

    base: str  # the model that was extended
    data: str  # the text the new merges were learned on
    init: str  # how the new embedding rows started
    new_ids: list[int]
    embedding_rows: list[int] = field(default_factory=list)  # [before, after]
    held_out: dict = field(default_factory=dict)  # tokens per word, bytes per token, bits per byte, before/after
    new_tokens: list[dict] = field(default_factory=list)  # {"id", "text", "pieces"}, most tokens saved first
    add: int | None = None
    min_frequency: int | None = None
    select: str | None = None  # how the new tokens were chosen (balanced or frequency)
    sample_chars: int | None = None  # characters of each source they were chosen on (0: all)
    merges_added: int | None = None
    seconds: float | None = None


def new_token_ids(folder: str | Path) -> list[int]:
    """The ids `fidan vocab extend` added to the model in ``folder``."""
    record = Extension.read(folder)
    if record is None:
        raise FidanError(f"--only-new-embeddings: {folder} has no {EXTENSION_FILE}; it trains the rows that "
                         "`fidan vocab extend` added, so start from a folder that command wrote")
    if not record.new_ids:
        raise FidanError(f"{Path(folder) / EXTENSION_FILE} lists no new token ids")
    return [int(i) for i in record.new_ids]
