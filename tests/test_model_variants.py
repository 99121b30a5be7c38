"""Model variants (rotary, RMSNorm, QK-norm, ReLU²/SwiGLU, tied, zero-init), the size dial, Muon."""

from __future__ import annotations

import pytest
import torch

from fidan.artifacts.loader import load_model
from fidan.artifacts.runs import read_metrics, save_weights
from fidan.errors import FidanError
from fidan.model.gpt import GPT, GPTConfig, config_from_preset, relu_squared
from fidan.model.loss import chunked_cross_entropy
from fidan.training.optim import MuonAdamW, OwnMuon, make_optimizer
from fidan.training.pretrain import pretrain

VARIANTS = {
    "gpt2": dict(),
    "rope-rms-relu2": dict(pos_emb="rope", norm="rmsnorm", mlp="relu2", bias=False),
    "rope-qknorm-swiglu-tied": dict(pos_emb="rope", qk_norm=True, mlp="swiglu", mlp_ratio=8 / 3, tie_embeddings=True),
    "learned-zero-init": dict(zero_init=True, norm="rmsnorm", qk_norm=True),
}


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=97, block_size=24, n_layer=2, n_head=2, n_embd=32, dropout=0.0), **kw})


@pytest.mark.parametrize("name", VARIANTS)
def test_packed_documents_do_not_see_each_other(name):
    torch.manual_seed(0)
    model = GPT(tiny(**VARIANTS[name])).eval()
    if model.config.zero_init:  # give the blocks something to do
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.05)
    a, b = torch.randint(0, 97, (1, 9)), torch.randint(0, 97, (1, 11))
    packed = torch.cat([a, b], dim=1)
    doc_ids = torch.tensor([[0] * 9 + [1] * 11])
    with torch.no_grad():
        logits, _ = model(packed, doc_ids=doc_ids)
        alone_a, _ = model(a)
        alone_b, _ = model(b)
    torch.testing.assert_close(logits[:, :9], alone_a, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits[:, 9:], alone_b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_chunked_loss_and_gradients_match_the_full_logits(name):
    torch.manual_seed(0)
    model = GPT(tiny(**VARIANTS[name]))
    x, y = torch.randint(0, 97, (3, 24)), torch.randint(0, 97, (3, 24))
    y[0, :7] = -100  # ignored positions
    grads = []
    for return_logits in (True, False):
        model.zero_grad()
        logits, loss = model(x, y, return_logits=return_logits)
        assert (logits is None) == (not return_logits)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (la, ga), (lb, gb) = grads
    torch.testing.assert_close(la, lb)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], atol=1e-6, rtol=1e-4, msg=n)


def test_chunking_does_not_change_the_loss():
    torch.manual_seed(0)
    h, w, t = torch.randn(50, 16), torch.randn(40, 16), torch.randint(0, 40, (50,))
    full = torch.nn.functional.cross_entropy(h @ w.T, t)
    for chunk in (7, 50, 64):
        out = chunked_cross_entropy(h, w, t, chunk=chunk)
        torch.testing.assert_close(out, full)


def test_old_config_files_load_as_gpt2():
    """config.json written before the variant fields existed: same model as before."""
    old = dict(vocab_size=500, block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.1, bias=True)
    cfg = GPTConfig.from_dict(old)
    assert (cfg.pos_emb, cfg.norm, cfg.mlp, cfg.qk_norm, cfg.tie_embeddings, cfg.zero_init) == \
        ("learned", "layernorm", "gelu", False, False, False)
    assert GPT(cfg).num_params() == 937_728
    # the same architecture; its dropout keeps torch's masks, so a run it started resumes with them
    assert cfg.dropout_masks == "torch" and config_from_preset("ders", 500).dropout_masks == "lanes"
    assert cfg == config_from_preset("ders", 500, dropout_masks="torch")


def test_size_dial_and_hizli_preset():
    cfg = config_from_preset("hizli", 1000, depth=6)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head) == (6, 384, 6)
    assert (cfg.pos_emb, cfg.norm, cfg.mlp, cfg.qk_norm, cfg.bias, cfg.zero_init) == \
        ("rope", "rmsnorm", "relu2", True, False, True)
    small, big = GPT(config_from_preset("hizli", 1000, depth=2)), GPT(cfg)
    assert small.num_params() < big.num_params()
    assert not [n for n, _ in big.named_parameters() if n.endswith(".bias")]  # no biases
    assert config_from_preset("ders", 500, depth=2).n_layer == 2


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [(dict(mlp="tanh"), "mlp must be one of"), (dict(pos_emb="alibi"), "pos_emb"), (dict(norm="batch"), "norm"),
     (dict(pos_emb="rope", n_embd=30, n_head=2), "even head size"), (dict(mlp_ratio=0), "mlp_ratio")],
)
def test_invalid_variant(overrides, needle):
    with pytest.raises(FidanError, match=needle):
        tiny(**overrides)


def test_zero_init_blocks_start_as_identity():
    model = GPT(tiny(zero_init=True, norm="rmsnorm"))
    x = torch.randn(2, 5, 32)
    for block in model.blocks:
        torch.testing.assert_close(block(x), x)


def test_tied_rope_model_saves_and_loads(tmp_path, tokenizer_dir):
    from fidan.artifacts.runs import copy_tokenizer
    from fidan.artifacts.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    model = GPT(config_from_preset("hizli", tok.vocab_size, depth=1, block_size=16, tie_embeddings=True))
    assert model.lm_head.weight is model.wte.weight
    save_weights(model, tmp_path)
    copy_tokenizer(tok, tmp_path)
    loaded, _ = load_model(tmp_path)
    assert loaded.lm_head.weight is loaded.wte.weight
    x = torch.randint(0, tok.vocab_size, (1, 20))  # longer than the block: generation crops the context
    torch.testing.assert_close(loaded(x[:, :16])[0], model.eval()(x[:, :16])[0])
    from fidan.inference import Engine, Sampling

    out = Engine(loaded).generate([x[0].tolist()], 5, Sampling(temperature=0))
    assert len(out[0].tokens) == 5


def test_own_muon_matches_torch():
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("this torch has no torch.optim.Muon to compare with")
    torch.manual_seed(0)
    start = torch.randn(24, 40)
    results = []
    for cls in (torch.optim.Muon, OwnMuon):
        p = torch.nn.Parameter(start.clone())
        opt = cls([p], lr=0.02, weight_decay=0.1, momentum=0.95)
        for k in range(4):
            p.grad = torch.sin(p.detach() * (k + 1))
            opt.step()
        results.append(p.detach())
    torch.testing.assert_close(results[0], results[1], atol=1e-3, rtol=1e-3)
    assert not torch.allclose(results[1], start, atol=1e-3)  # it moved


def test_muon_takes_block_matrices_adamw_the_rest():
    model = GPT(config_from_preset("hizli", 100, depth=2, tie_embeddings=True))
    opt = make_optimizer(model, "muon", lr=1e-3, weight_decay=0.0, muon_lr=0.05)
    assert isinstance(opt, MuonAdamW)
    muon_ids = {id(p) for g in opt.muon.param_groups for p in g["params"]}
    adam_ids = {id(p) for g in opt.adamw.param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(".blocks." in f".{names[i]}" for i in muon_ids)
    assert id(model.wte.weight) in adam_ids and not muon_ids & adam_ids
    assert len(muon_ids | adam_ids) == len(list(model.parameters()))
    assert {round(g["lr"], 6) for g in opt.muon.param_groups} == {0.05}


def test_hizli_with_muon_trains_and_resumes_exactly(tmp_path, data_dir, tokenizer_dir):
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), preset="hizli", depth=2, block_size=32,
                  batch_size=4, max_steps=10, warmup_steps=2, eval_every=5, eval_windows=4, checkpoint_every=4,
                  quiet=True)
    pretrain(out=str(tmp_path / "a"), **common)
    pretrain(out=str(tmp_path / "b"), until_step=4, **common)
    pretrain(out=str(tmp_path / "b"), resume=True, **common)
    la = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "a") if r["kind"] == "train"}
    lb = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "b") if r["kind"] == "train"}
    assert la == pytest.approx(lb, abs=1e-6)
    evals = [r["val_loss"] for r in read_metrics(tmp_path / "a") if r["kind"] == "eval"]
    assert evals[-1] < evals[0]
    assert all(0 <= r["mfu"] < 1 for r in read_metrics(tmp_path / "a") if r["kind"] == "train")
    with pytest.raises(FidanError, match="--optimizer muon"):
        pretrain(out=str(tmp_path / "b"), resume=True, **{**common, "optimizer": "adamw", "max_steps": 12})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_relu_squared_and_its_gradient_are_autograds_bit_for_bit(dtype):
    """The ReLU² MLP's own backward (2·relu(x)·g from the saved relu(x)) gives what autograd through
    relu and square gives, at zero and below it too."""
    torch.manual_seed(4)
    x = torch.cat([torch.randn(997), torch.zeros(3)]).to(dtype).requires_grad_()
    g = torch.randn(1000).to(dtype)
    ref = torch.nn.functional.relu(x).square()
    got = relu_squared(x)
    assert torch.equal(got, ref)
    assert torch.equal(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(ref, x, g)[0])
