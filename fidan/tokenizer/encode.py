"""`fidan tokenizer encode`: a data folder → memory-mapped token files for training."""

from __future__ import annotations

from pathlib import Path

from fidan.artifacts.tokenizer import load_tokenizer
from fidan.artifacts.tokens import encode_splits


def encode_data(data: str, tokenizer: str, force: bool = False) -> Path:
    """Tokenize every split of a data folder into uint16/uint32 token files under DATA/tokens/.

    Args:
        data: a data folder made by `fidan data prepare`.
        tokenizer: a tokenizer folder made by `fidan tokenizer train`.
        force: re-encode even if token files for this tokenizer already exist.
    """
    return encode_splits(data, load_tokenizer(tokenizer), force=force)
