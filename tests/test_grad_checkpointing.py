"""--grad-checkpointing: blocks recompute their activations in backward (fidan's GPT and transformers models),
with the same loss and gradients as without (memory figures: benchmarks/grad_checkpointing.py)."""

from __future__ import annotations

import pytest
import torch

from fidan.artifacts.runs import read_metrics
from fidan.model.gpt import GPT, config_from_preset
from fidan.model.hf import HFCausalLM
from fidan.model.memory import grad_checkpointing
from fidan.training.pretrain import pretrain


def fidan_model() -> GPT:
    torch.manual_seed(0)
    return GPT(config_from_preset("hizli", 64, n_layer=2, n_head=2, n_embd=32, block_size=16, dropout=0.1))


def hf_model() -> HFCausalLM:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, max_position_embeddings=16, attention_dropout=0.1)
    return HFCausalLM(Qwen3ForCausalLM(cfg), 16)


def step(model, checkpointing: bool) -> tuple[float, dict, int]:
    """Loss, gradients and how many times the first block ran forward, for one training step."""
    model.train()
    model.zero_grad()
    if checkpointing:
        grad_checkpointing(model)
    calls = []
    # the attention inside the first block: a recomputed block calls it again (a pre-hook: recomputation may
    # stop early, before a forward hook would run)
    first = model.blocks[0].attn if hasattr(model, "blocks") else model.net.model.layers[0].self_attn
    hook = first.register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)  # the same dropout masks
    _, loss = model(x, torch.roll(x, -1, 1), return_logits=False)
    loss.backward()
    hook.remove()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)


@pytest.mark.parametrize("make", [fidan_model, hf_model], ids=["fidan", "transformers"])
def test_same_loss_and_gradients_with_blocks_recomputed(make):
    loss_a, grads_a, calls_a = step(make(), False)
    loss_b, grads_b, calls_b = step(make(), True)
    assert (calls_a, calls_b) == (1, 2)  # with checkpointing, the block runs again in backward
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6), name


def test_a_run_with_checkpointing_logs_the_same_losses(tmp_path, data_dir, tokenizer_dir):
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), preset="hizli", block_size=32, max_steps=3,
                  batch_size=2, eval_every=10, precision="fp32", quiet=True)
    pretrain(out=str(tmp_path / "a"), **common)
    pretrain(out=str(tmp_path / "b"), grad_checkpointing=True, **common)
    a = [r["loss"] for r in read_metrics(tmp_path / "a") if r["kind"] == "train"]
    b = [r["loss"] for r in read_metrics(tmp_path / "b") if r["kind"] == "train"]
    assert a == pytest.approx(b, abs=1e-5)
