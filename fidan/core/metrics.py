"""Held-out loss and bits per byte: the measure that compares models across tokenizers."""

from __future__ import annotations

import math

import numpy as np
import torch

from fidan.core.tokens import TokenSplit


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module,
    split: TokenSplit,
    token_bytes: np.ndarray,
    block_size: int,
    batch_size: int,
    max_windows: int,
    device: str = "cpu",
    autocast: torch.autocast | None = None,
) -> dict:
    """Mean loss (nats/token) and bits per byte over a fixed, evenly spaced set of windows.

    bpb = Σ nats / ln 2 / Σ UTF-8 bytes of the predicted tokens; special tokens (0 bytes) are left out
    of both sums, so the figure means the same thing for every tokenizer.
    """
    was_training = model.training
    model.eval()
    tb = torch.from_numpy(token_bytes.astype(np.int64))
    starts = split.fixed_windows(max_windows, block_size)
    nats = tokens = 0.0
    byte_count = 0
    for i in range(0, len(starts), batch_size):
        x, y = split.windows(starts[i:i + batch_size], block_size)
        x, y = x.to(device), y.to(device)
        if autocast is not None:
            with autocast:
                _, loss = model(x, y, reduction="none")
        else:
            _, loss = model(x, y, reduction="none")
        loss = loss.float().cpu().reshape(-1)
        nbytes = tb[y.cpu().reshape(-1)]
        mask = nbytes > 0
        nats += float(loss[mask].sum())
        tokens += float(mask.sum())
        byte_count += int(nbytes.sum())
    model.train(was_training)
    mean = nats / max(tokens, 1)
    return {"val_loss": mean, "val_bpb": nats / math.log(2) / max(byte_count, 1), "val_ppl": math.exp(min(mean, 50)),
            "val_tokens": int(tokens)}
