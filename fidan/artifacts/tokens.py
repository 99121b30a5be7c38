"""Token files: a data folder's splits encoded once into flat memory-mapped uint16/uint32 arrays.

Layout: ``DATA/tokens/<tokenizer sha256[:12]>/{train,val}.bin`` and ``meta.json``. Each document is
followed by the end-of-text token. Training reads random windows straight from the memory map.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fidan.artifacts.datadir import SPLITS, iter_split, load_manifest
from fidan.artifacts.schema import check, stamp
from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import FidanError
from fidan.runtime.io import atomic_dir, atomic_write_json

BATCH_DOCS = 512


def tokens_dir(data: str | Path, tok: TokenizerBundle) -> Path:
    return Path(data) / "tokens" / tok.sha256[:12]


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def encode_splits(data: str | Path, tok: TokenizerBundle, force: bool = False) -> Path:
    """Encode every split of a data folder with the tokenizer (once; reused until the tokenizer changes)."""
    manifest = load_manifest(data)
    out = tokens_dir(data, tok)
    if (out / "meta.json").exists() and not force:
        return out
    dtype = dtype_for(tok.vocab_size)
    eos = tok.eos_id
    meta = {"tokenizer": str(tok.path), "tokenizer_sha256": tok.sha256, "vocab_size": tok.vocab_size,
            "eos_id": eos, "dtype": dtype.name, "splits": {}}
    start = time.time()
    with atomic_dir(out) as tmp:
        for split in SPLITS:
            n_docs = manifest["splits"][split]["documents"]
            count = 0
            with open(tmp / f"{split}.bin", "wb") as f, tqdm(total=n_docs, desc=f"encode {split}", unit="doc") as bar:
                batch: list[str] = []

                def flush(batch: list[str]) -> int:
                    encs = tok.tokenizer.encode_batch(batch, add_special_tokens=False)
                    ids = np.fromiter((i for e in encs for i in (*e.ids, eos)), dtype=np.int64)
                    f.write(ids.astype(dtype).tobytes())
                    bar.update(len(batch))
                    return len(ids)

                for doc in iter_split(data, split):
                    batch.append(doc)
                    if len(batch) == BATCH_DOCS:
                        count += flush(batch)
                        batch = []
                if batch:
                    count += flush(batch)
            meta["splits"][split] = {"tokens": count, "bytes": manifest["splits"][split]["bytes"],
                                     "documents": n_docs}
        meta["seconds"] = round(time.time() - start, 2)
        atomic_write_json(tmp / "meta.json", stamp("tokens", meta))
    tr = meta["splits"]["train"]
    print(f"tokens: {tr['tokens']:,} train ({tr['bytes'] / max(tr['tokens'], 1):.2f} bytes/token), "
          f"{meta['splits']['val']['tokens']:,} val → {out}")
    return out


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

    def fixed_windows(self, n: int, block_size: int) -> torch.Tensor:
        """Evenly spaced window starts: a deterministic evaluation set that needs no RNG."""
        last = len(self.tokens) - block_size - 1
        n = max(1, min(n, last // block_size + 1))
        return torch.linspace(0, last, n).long()
