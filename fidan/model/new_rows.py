"""Growing a vocabulary: new rows in a model's embeddings (the tokens are added by
fidan.artifacts.tokenizer.add_special_tokens).

New rows start at the mean of the existing rows (input embedding and output head alike), so a new
token begins as an "average" token: its logit is ordinary rather than random, and the loss at the
first fine-tuning step stays close to the pretrained model's.
"""

from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def _grown(weight: torch.Tensor, new_rows: int) -> torch.Tensor:
    mean = weight.float().mean(dim=0, keepdim=True).to(weight.dtype)
    return torch.cat([weight, mean.expand(new_rows, -1)], dim=0)


@torch.no_grad()
def grow_embeddings(model: nn.Module, new_vocab_size: int) -> nn.Module:
    """Resize every vocabulary-sized layer of ``model`` in place to ``new_vocab_size`` rows.

    Embeddings and output layers whose size is the old vocabulary get the new rows set to the mean of
    their existing rows (an output bias gets its mean too). ``model.config.vocab_size`` is updated.
    """
    old = model.config.vocab_size
    extra = new_vocab_size - old
    if extra < 0:
        raise ValueError(f"cannot shrink a vocabulary from {old} to {new_vocab_size}")
    if extra == 0:
        return model
    grown: dict[int, nn.Parameter] = {}  # a weight shared by two layers (tied) stays shared

    def grow(p: nn.Parameter) -> nn.Parameter:
        if id(p) not in grown:
            grown[id(p)] = nn.Parameter(_grown(p, extra))
        return grown[id(p)]

    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings == old:
            module.weight = grow(module.weight)
            module.num_embeddings = new_vocab_size
        elif isinstance(module, nn.Linear) and module.out_features == old:
            module.weight = grow(module.weight)
            if module.bias is not None:
                module.bias = nn.Parameter(_grown(module.bias[:, None], extra)[:, 0])
            module.out_features = new_vocab_size
    model.config.vocab_size = new_vocab_size
    return model
