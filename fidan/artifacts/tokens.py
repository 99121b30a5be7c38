"""Token files: a data folder's splits encoded once into flat memory-mapped uint16/uint32 arrays.

Layout: ``DATA/tokens/<tokenizer sha256[:12]>/{train,val}.bin`` and ``meta.json``. Each document is
followed by the end-of-text token. Training reads random windows straight from the memory map.
Writing them (in pieces, in parallel, resumable) is `fidan.artifacts.token_encode`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fidan.artifacts.schema import check
from fidan.artifacts.token_encode import dtype_for, encode_splits, tokens_dir
from fidan.errors import FidanError

__all__ = ["TokenSplit", "dtype_for", "encode_splits", "tokens_dir"]


class TokenSplit:
    """One split's tokens as a read-only memory map, with batch sampling that does no per-token Python work."""

    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        check("tokens", meta, folder / "meta.json")
        self.meta = meta
        path, dtype = folder / f"{split}.bin", np.dtype(meta["dtype"])
        # An empty split (e.g. data prepared with --val-fraction 0) cannot be memory-mapped.
        self.tokens = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.zeros(0, dtype)

    def __len__(self) -> int:
        return len(self.tokens)

    def check_block(self, block_size: int, split: str) -> None:
        if len(self.tokens) <= block_size + 1:
            raise FidanError(
                f"the {split} split has only {len(self.tokens)} tokens, fewer than one block of {block_size}; "
                "add data or lower the block size"
            )

    def windows(self, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets for windows starting at ``starts``."""
        idx = starts.numpy()[:, None] + np.arange(block_size + 1)
        chunk = torch.from_numpy(self.tokens[idx].astype(np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def random_batch(self, batch_size: int, block_size: int, generator: torch.Generator):
        starts = torch.randint(0, len(self.tokens) - block_size - 1, (batch_size,), generator=generator)
        return self.windows(starts, block_size)

