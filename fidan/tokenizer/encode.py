"""`fidan tokenizer encode`: a data folder → memory-mapped token files for training."""

from __future__ import annotations

from pathlib import Path

from fidan.artifacts.token_encode import encode_splits  # not .tokens: that imports torch
from fidan.artifacts.tokenizer import load_tokenizer


def encode_data(data: str, tokenizer: str, workers: int | None = None, force: bool = False) -> Path:
    """Tokenize every split of a data folder into uint16/uint32 token files under DATA/tokens/.

    Args:
        data: a data folder made by `fidan data prepare`.
        tokenizer: a tokenizer folder made by `fidan tokenizer train`.
        workers: processes that encode pieces (about 8 MB) of the shards side by side; 1 encodes in this
            process, on the tokenizer's own threads. Default: one per CPU core for 16 MB of text or more.
        force: re-encode from the start, even if token files (or pieces of an interrupted run) exist.
    """
    return encode_splits(data, load_tokenizer(tokenizer), force=force, workers=workers)
