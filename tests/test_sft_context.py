"""`fidan sft --block-size`: tuning at a longer context than the base was pretrained at."""

from __future__ import annotations

import json

import pytest
import torch

from fidan.artifacts.runs import copy_tokenizer, save_weights
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.errors import FidanError
from fidan.model.context import grow_context
from fidan.model.gpt import GPT, GPTConfig
from fidan.training.sft import sft


def small(vocab: int, pos_emb: str) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, block_size=32, n_layer=1, n_head=2, n_embd=32, pos_emb=pos_emb)).eval()


@pytest.mark.parametrize("pos_emb", ["learned", "rope"])
def test_a_grown_context_reads_the_first_block_as_before(pos_emb):
    net = small(100, pos_emb)
    x = torch.randint(0, 100, (2, 32))
    before = net(x)[0]
    note = grow_context(net, 80)
    after = net(x)[0]
    assert net.config.block_size == 80 and "32 → 80" in note
    assert torch.equal(before, after)  # positions 0..31 are what they were
    if pos_emb == "learned":
        w = net.wpe.weight
        assert w.shape[0] == 80 and torch.equal(w[32:64], w[:32]) and torch.equal(w[64:], w[:16])
    long = torch.randint(0, 100, (1, 80))
    assert torch.isfinite(net(long)[0]).all()


def test_sft_tunes_at_a_longer_block_than_the_base(tmp_path, tokenizer_dir):
    tok = load_tokenizer(tokenizer_dir)
    base = tmp_path / "base"
    save_weights(small(tok.vocab_size, "learned"), base)
    copy_tokenizer(tok, base)
    data = tmp_path / "d.jsonl"
    answer = "Ankara, Türkiye Cumhuriyeti'nin başkentidir ve İç Anadolu'da yer alır. " * 3
    data.write_text("".join(json.dumps({"instruction": f"Başkent neresidir? ({i})", "output": answer},
                                       ensure_ascii=False) + "\n" for i in range(12)), encoding="utf-8")
    common = dict(model=str(base), data=str(data), max_steps=1, eval_every=1, batch_size=2, precision="fp32",
                  val_fraction=0, quiet=True)
    with pytest.raises(FidanError, match="shorter than"):
        sft(out=str(tmp_path / "short"), block_size=16, **common)
    sft(out=str(tmp_path / "long"), block_size=96, **common)
    cfg = json.loads((tmp_path / "long" / "config.json").read_text())
    assert cfg["block_size"] == 96
    assert len(tok.encode(answer)) > 32  # the conversations did not fit the base's block: now they are whole
    from fidan.artifacts.loader import load

    tuned = load(str(tmp_path / "long")).model
    assert tuned.wpe.weight.shape[0] == 96
