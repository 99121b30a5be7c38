"""fidan's CPU dropout: four 16-bit lanes per random word, the drop rate asked for in every lane, the usual
scaling and gradient, attention written out equal to torch's kernel, and masks reproducible from the seed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fidan.model.dropout as fd


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_every_lane_drops_at_the_rate_asked(p):
    torch.manual_seed(0)
    keep = fd.keep_mask((400_000,), p)
    assert keep.dtype == torch.bool and keep.shape == (400_000,)
    for lane in range(fd.LANES):  # each 16-bit lane of the 64-bit words, the sign-bit lane included
        rate = 1 - keep[lane::fd.LANES].float().mean().item()
        assert abs(rate - p) < 0.005, (lane, rate)


def test_dropout_scales_what_it_keeps_and_its_gradient_follows_the_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 257, requires_grad=True)
    y = fd.dropout(x, 0.25, True)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    assert abs(1 - kept.float().mean().item() - 0.25) < 0.02
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    assert fd.dropout(x, 0.25, False) is x and fd.dropout(x, 0.0, True) is x


def test_masks_come_from_the_global_seed():
    torch.manual_seed(7)
    a = fd.keep_mask((3, 1000), 0.1)
    torch.manual_seed(7)
    b = fd.keep_mask((3, 1000), 0.1)
    assert torch.equal(a, b) and not torch.equal(a, fd.keep_mask((3, 1000), 0.1))


@pytest.mark.parametrize("masked", [False, True])
def test_written_out_attention_equals_torchs_kernel(monkeypatch, masked):
    """With the dropout masks made to keep everything, the written-out path is torch's attention."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 16, 8) for _ in range(3))
    mask = None
    if masked:  # two packed documents: block-diagonal causal
        doc = torch.tensor([0] * 9 + [1] * 7)
        mask = (torch.ones(16, 16, dtype=torch.bool).tril() & (doc[:, None] == doc[None, :]))[None, None]
    monkeypatch.setattr(fd, "dropout", lambda x, p, training: x)
    ours = fd.attention(q, k, v, mask, mask is None, 0.1, True)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_attention_drops_weights_when_training():
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 32, 8) for _ in range(3))
    train = fd.attention(q, k, v, None, True, 0.5, True)
    torch.testing.assert_close(fd.attention(q, k, v, None, True, 0.5, False),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert not torch.allclose(train, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_models_from_older_config_files_keep_torchs_masks():
    """dropout_masks="torch" (what a config.json without the field means) draws exactly torch's masks."""
    from fidan.model.gpt import GPTConfig

    x = torch.randn(8, 64)
    torch.manual_seed(5)
    ref = F.dropout(x, 0.1, True)
    torch.manual_seed(5)
    assert torch.equal(fd.Dropout(0.1, "torch").train()(x), ref)
    torch.manual_seed(5)
    assert not torch.equal(fd.Dropout(0.1).train()(x), ref)
    old = GPTConfig.from_dict(dict(vocab_size=50, block_size=8, n_layer=1, n_head=1, n_embd=8))
    assert old.dropout_masks == "torch" and GPTConfig(vocab_size=50).dropout_masks == "lanes"


def test_compiled_dropout_drops_at_the_rate_asked_in_every_lane():
    pytest.importorskip("torch._inductor")
    f = torch.compile(lambda x: fd.dropout(x, 0.1, True))
    torch.manual_seed(0)
    keep = f(torch.ones(400_000)) != 0
    for lane in range(fd.LANES):
        assert abs(1 - keep[lane::fd.LANES].float().mean().item() - 0.1) < 0.005


def test_bf16_training_attention_on_the_cpu_runs_in_fp32():
    """Under bf16 autocast, training's attention (no dropout) is torch's fp32 kernel's result, cast back."""
    torch.manual_seed(4)
    q, k, v = (torch.randn(2, 2, 16, 8).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fd.attention(q, k, v, None, True, 0.0, True)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).bfloat16()
    assert y.dtype == torch.bfloat16 and torch.equal(y, ref)
    y.float().sum().backward()
    assert q.grad is not None and q.grad.dtype == torch.bfloat16


def test_fp32_factors_are_the_same_draw_as_the_bool_mask():
    torch.manual_seed(11)
    keep = fd.keep_mask((5, 3000), 0.1)
    torch.manual_seed(11)
    factors = fd.scaled_mask((5, 3000), 0.1)
    assert factors.dtype == torch.float32
    assert torch.equal(factors != 0, keep)
    assert torch.equal(factors[keep], torch.full_like(factors[keep], 1 / 0.9))


def test_bf16_dropout_scales_by_the_exact_factor():
    """A bf16 factor would be 1.109 for 1 / 0.9: bf16 activations keep a bool mask and the exact scale."""
    torch.manual_seed(4)
    x = torch.randn(64, 300).to(torch.bfloat16)
    y = fd.dropout(x, 0.1, True)
    kept = y != 0
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y[kept], (x[kept].float() / 0.9).to(torch.bfloat16), rtol=0, atol=0)


def test_written_out_attention_under_bf16_autocast_is_torchs(monkeypatch):
    """The causal mask added inside the product follows autocast's dtype; the result is torch's kernel's."""
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 3, 16, 8) for _ in range(3))
    monkeypatch.setattr(fd, "dropout", lambda x, p, training: x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = fd.attention(q, k, v, None, True, 0.1, True)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2e-2, atol=2e-2)


def test_bf16_training_attention_runs_in_fp32_except_for_older_models():
    """Without dropout, bf16 training attention is torch's fp32 kernel on the CPU (faster backward); a model
    whose config predates that (dropout_masks "torch") keeps torch's bf16 kernel, so its runs resume exactly."""
    torch.manual_seed(8)
    q, k, v = (torch.randn(2, 3, 16, 8).to(torch.bfloat16) for _ in range(3))
    in_fp32 = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).to(torch.bfloat16)
    in_bf16 = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert not torch.equal(in_fp32, in_bf16)  # the two kernels round differently: the test can tell them apart
    assert torch.equal(fd.attention(q, k, v, None, True, 0.0, True), in_fp32)
    assert torch.equal(fd.attention(q, k, v, None, True, 0.0, True, masks="torch"), in_bf16)


def test_a_large_mask_is_drawn_on_two_threads_alike_whatever_the_thread_count():
    """Half the words on a second thread, from seeds the global generator gives: the same mask with one torch
    thread or two, a new one for the next draw, and two halves that are different draws."""
    n = fd.LANES * fd.SPLIT_FROM * 2
    threads = torch.get_num_threads()
    masks = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            torch.manual_seed(11)
            masks.append((fd.keep_mask((n,), 0.1), fd.keep_mask((n,), 0.1)))
    finally:
        torch.set_num_threads(threads)
    (a, a_next), (b, _) = masks
    assert torch.equal(a, b) and not torch.equal(a, a_next)
    assert not torch.equal(a[: n // 2], a[n // 2:])
    assert abs(1 - a.float().mean().item() - 0.1) < 0.005
