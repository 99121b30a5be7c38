"""LoRA through peft on tiny fidan and transformers models: what trains, what stays, merging, errors."""

from __future__ import annotations

import copy
import sys

import pytest
import torch

from fidan.errors import FidanError, MissingExtra
from fidan.model.gpt import GPT, GPTConfig, config_from_preset
from fidan.model.lora import (
    LoraSpec,
    apply_lora,
    default_targets,
    has_lora,
    linear_layers,
    load_lora_state_dict,
    lora_state_dict,
    merge_lora,
    trainable_share,
)
from fidan.training.optim import make_adamw

pytest.importorskip("peft")

VOCAB, T = 64, 16


def fidan_gpt(kind: str) -> GPT:
    torch.manual_seed(0)
    if kind == "gpt2":
        return GPT(GPTConfig(vocab_size=VOCAB, block_size=T, n_layer=2, n_head=2, n_embd=32))
    mlp = "swiglu" if kind == "hizli-swiglu" else None
    return GPT(config_from_preset("hizli", VOCAB, block_size=T, n_layer=2, n_head=2, n_embd=32, mlp=mlp))


def hf_model(kind: str) -> torch.nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "qwen3":
        cfg = transformers.Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                       max_position_embeddings=T)
        return transformers.Qwen3ForCausalLM(cfg).eval()
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=T, n_embd=32, n_layer=2, n_head=2,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                                  eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB, (4, T), generator=g)
    return x, torch.roll(x, -1, dims=1)


def expected_lora_params(model: torch.nn.Module, targets: list[str], r: int) -> int:
    """r · (in + out) for every targeted linear layer (Linear or GPT-2 Conv1D: the two weight dims)."""
    layers = linear_layers(model)
    chosen = [m for n, m in layers.items() if any(n == t or n.endswith("." + t) for t in targets)]
    return sum(r * sum(m.weight.shape) for m in chosen)


def base_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


FIDAN_KINDS = ["gpt2", "hizli", "hizli-swiglu"]


@pytest.mark.parametrize("kind", FIDAN_KINDS)
def test_fidan_only_adapters_train_and_share_is_small(kind):
    model = fidan_gpt(kind)
    targets = default_targets(model)
    want = ["attn.qkv", "attn.proj", "mlp.fc"] + (["mlp.gate"] if kind == "hizli-swiglu" else []) + ["mlp.proj"]
    assert targets == want
    base_total = sum(p.numel() for p in model.parameters())
    lora_n = expected_lora_params(model, targets, r=1)
    out = apply_lora(model, LoraSpec(r=1, alpha=2))
    assert out is model and isinstance(model, GPT)  # adapted in place: the class and its methods stay
    assert model.config.block_size == T and model.num_params() > 0 and model.flops_per_token() > 0
    trainable, total = trainable_share(model)
    assert trainable == lora_n and total == base_total + lora_n
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    # r=1 at width 32: 3.29% (gpt2-like), 3.43% (hizli), 3.50% (hizli with SwiGLU)
    assert trainable / total < 0.05
    groups = make_adamw(model, 1e-3, 0.1, (0.9, 0.95), fused=False).param_groups
    assert sum(p.numel() for g in groups for p in g["params"]) == trainable  # the optimizer sees adapters only


@pytest.mark.parametrize("kind", FIDAN_KINDS)
def test_fidan_training_changes_only_adapters_and_merges(kind, tmp_path):
    from fidan.artifacts.runs import load_weights, save_weights

    model = fidan_gpt(kind)
    pristine = copy.deepcopy(model)
    keys = list(model.state_dict())
    apply_lora(model, LoraSpec(r=2, alpha=4))
    before = base_params(model)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    x, y = batch()
    model.eval()
    with torch.no_grad():
        start = model(x, y)[1].item()
        assert model(x, y, return_logits=False)[1].item() == pytest.approx(start, abs=1e-5)
    opt = make_adamw(model, 1e-2, 0.0, (0.9, 0.95), fused=False)
    model.train()
    for _ in range(8):
        _, loss = model(x, y, return_logits=False)  # the chunked loss path, as the training loop runs it
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _, loss = model(x, y, return_logits=False)
    loss.backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None and p.grad.abs().sum() > 0) == ("lora_" in n), n
    model.eval()
    with torch.no_grad():
        end = model(x, y)[1].item()
        adapted = model(x)[0]
    assert end < start - 0.05
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if "lora_" not in n)
    assert all(not torch.equal(p, lora_before[n]) for n, p in model.named_parameters() if "lora_B" in n)

    adapters = lora_state_dict(model)
    assert adapters and all("lora_" in k and ".default." not in k for k in adapters)
    merged = merge_lora(model)
    assert isinstance(merged, GPT) and not has_lora(merged) and not hasattr(merged, "peft_config")
    assert list(merged.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(merged(x)[0], adapted, atol=1e-5, rtol=0)
    save_weights(merged, tmp_path)  # an ordinary model for fidan's own files
    fresh = fidan_gpt(kind).eval()
    load_weights(fresh, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[0], adapted, atol=1e-5, rtol=0)

    again = apply_lora(pristine, LoraSpec(r=2, alpha=4)).eval()  # adapters alone, onto the untouched base
    load_lora_state_dict(again, adapters)
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], adapted, atol=1e-5, rtol=0)
    wrong_rank = apply_lora(fidan_gpt(kind), LoraSpec(r=4, alpha=4))
    with pytest.raises(FidanError, match="rank"):
        load_lora_state_dict(wrong_rank, adapters)


@pytest.mark.parametrize("kind", ["qwen3", "gpt2"])
def test_hf_model_lora_train_and_merge(kind):
    model = hf_model(kind)
    cls, keys = type(model), list(model.state_dict())
    targets = default_targets(model)
    if kind == "qwen3":
        assert targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    else:
        assert targets == ["c_attn", "c_proj", "c_fc"]
    base_total = sum(p.numel() for p in model.parameters())
    lora_n = expected_lora_params(model, targets, r=2)
    apply_lora(model, LoraSpec(r=2, alpha=4))
    assert type(model) is cls
    assert trainable_share(model) == (lora_n, base_total + lora_n)
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    before = base_params(model)
    x, _ = batch()
    with torch.no_grad():
        start = model(input_ids=x, labels=x).loss.item()
    opt = make_adamw(model, 1e-2, 0.0, (0.9, 0.95), fused=False)
    for _ in range(8):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        assert model(input_ids=x, labels=x).loss.item() < start - 0.05
        adapted = model(input_ids=x).logits
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if "lora_" not in n)
    merged = merge_lora(model)
    assert type(merged) is cls and not has_lora(merged) and list(merged.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=x).logits, adapted, atol=1e-5, rtol=0)


def test_hf_wrapper_chunked_loss_reaches_adapters():
    hf = pytest.importorskip("fidan.model.hf")
    model = hf.HFCausalLM(hf_model("qwen3"), block_size=T)
    keys = list(model.net.state_dict())
    apply_lora(model, LoraSpec(r=2, alpha=4))
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())
    x, y = batch()
    with torch.no_grad():  # B starts at zero: nudge it so the adapters change the output
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
        full = model(x, y)[1]
    _, loss = model(x, y, return_logits=False)
    assert loss.item() == pytest.approx(full.item(), abs=1e-5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_" in n)
    with torch.no_grad():
        adapted = model(x)[0]
    merge_lora(model)
    assert list(model.net.state_dict()) == keys
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], adapted, atol=1e-5, rtol=0)


def test_bad_targets_and_specs_are_one_line_errors():
    with pytest.raises(FidanError, match=r"nope match no linear layer; linear layers: blocks\.N\.attn\.qkv, "):
        apply_lora(fidan_gpt("gpt2"), LoraSpec(targets=("qkv", "nope")))
    with pytest.raises(FidanError, match="output head cannot take LoRA"):
        apply_lora(fidan_gpt("gpt2"), LoraSpec(targets=("lm_head",)))
    assert LoraSpec(targets="attn.qkv, mlp.fc").targets == ("attn.qkv", "mlp.fc")
    for bad in (dict(r=0), dict(alpha=0), dict(dropout=1.0), dict(targets=())):
        with pytest.raises(FidanError):
            LoraSpec(**bad)
    model = apply_lora(fidan_gpt("gpt2"), LoraSpec(r=1, targets=("attn.proj",)))
    assert {n.split(".lora_")[0] for n, p in model.named_parameters() if p.requires_grad} == {
        "blocks.0.attn.proj", "blocks.1.attn.proj"}  # a dotted ending picks attn.proj, not mlp.proj
    with pytest.raises(FidanError, match="already has LoRA"):
        apply_lora(model, LoraSpec(r=1))


def test_new_token_rows_can_train_beside_adapters():
    model = fidan_gpt("hizli")
    keys = list(model.state_dict())
    apply_lora(model, LoraSpec(r=1), train_also=("wte", "lm_head"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"wte.weight", "lm_head.weight"} <= trainable and all("lora_" in n for n in trainable - {
        "wte.weight", "lm_head.weight"})
    x, y = batch()
    model(x, y, return_logits=False)[1].backward()
    assert model.wte.weight.grad is not None and model.lm_head.weight.grad is not None
    assert list(merge_lora(model).state_dict()) == keys
    with pytest.raises(FidanError, match="match no module"):
        apply_lora(fidan_gpt("gpt2"), LoraSpec(r=1), train_also=("embeddings",))


def test_lora_without_peft_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as if the extra were not installed
    with pytest.raises(MissingExtra, match=r"pip install 'fidan\[lora\]'"):
        apply_lora(fidan_gpt("gpt2"), LoraSpec())
