"""Growing a vocabulary: new special tokens in a tokenizer folder, new rows in a model's embeddings.

New rows start at the mean of the existing rows (input embedding and output head alike), so a new
token begins as an "average" token: its logit is ordinary rather than random, and the loss at the
first fine-tuning step stays close to the pretrained model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from tokenizers import AddedToken, Tokenizer

from fidan.core.io import atomic_dir
from fidan.core.tokenizer_io import TokenizerBundle, load_tokenizer


def add_special_tokens(src: str | Path, dst: str | Path, tokens: list[str], chat_template: str | None = None
                       ) -> TokenizerBundle:
    """Copy the tokenizer folder ``src`` to ``dst`` with ``tokens`` added as special tokens.

    Tokens already present keep their ids; new ones get the next ids. ``chat_template`` (Jinja) is stored
    in ``tokenizer_config.json``, where ``transformers.AutoTokenizer`` finds it.
    """
    src, dst = Path(src), Path(dst)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    new = [t for t in tokens if tok.token_to_id(t) is None]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new])
    cfg_file = src / "tokenizer_config.json"
    config = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.exists() else {}
    extra = list(config.get("extra_special_tokens") or [])
    config["extra_special_tokens"] = extra + [t for t in tokens if t not in extra]
    if chat_template is not None:
        config["chat_template"] = chat_template
    with atomic_dir(dst) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    return load_tokenizer(dst)


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
