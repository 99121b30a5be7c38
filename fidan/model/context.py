"""A longer context for a trained fidan GPT: tune at a longer block than the base was pretrained at.

Learned position tables grow by repetition: the row for position p is a copy of the base's row for
p mod (the base's block size), as Longformer extended RoBERTa's 512 positions. Each new row starts as a
position the model already knows, so the grown model reads its first block exactly as before and the
rest starts from familiar rows that tuning then separates. Rotary positions have no weights: their
tables are computed for the new length, and the model is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from fidan.model.gpt import GPT, rope_tables


def grow_context(model: GPT, block_size: int) -> str:
    """Let ``model`` read ``block_size`` tokens (in place); returns one line saying what changed."""
    cfg = model.config
    old = cfg.block_size
    if block_size <= old:
        return f"block size {old} kept"
    if cfg.pos_emb == "learned":
        weight = model.wpe.weight
        rows = torch.arange(block_size, device=weight.device) % old
        grown = nn.Embedding(block_size, cfg.n_embd, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            grown.weight.copy_(weight[rows])
        grown.weight.requires_grad_(weight.requires_grad)
        model.wpe = grown
        how = f"positions {old}..{block_size - 1} start as copies of rows 0..{old - 1} (row p = row p mod {old})"
    else:
        cos, sin = rope_tables(cfg.n_embd // cfg.n_head, block_size, cfg.rope_base)
        model.rope_cos = cos.to(model.rope_cos.device)
        model.rope_sin = sin.to(model.rope_sin.device)
        how = "rotary positions: no new weights"
    cfg.block_size = block_size
    return f"block size {old} → {block_size}: {how}"
