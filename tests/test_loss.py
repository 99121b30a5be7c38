"""The chunked output head and loss: the same loss and gradients as torch's cross-entropy over full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fidan.model import loss as L


def _reference(h, w, t):
    h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    out = F.cross_entropy(h @ w.T, t, ignore_index=-100)
    out.backward()
    return out.detach(), h.grad, w.grad


def _chunked(h, w, t, chunk=1024, head_trains=True):
    h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_(head_trains)
    out = L.chunked_cross_entropy(h, w, t, chunk=chunk)
    out.backward()
    return out.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk", [7, 64, 1024])
def test_loss_and_gradients_equal_full_cross_entropy(chunk):
    torch.manual_seed(0)
    h, w, t = torch.randn(300, 16), torch.randn(500, 16), torch.randint(0, 500, (300,))
    t[::7] = -100  # ignored targets count neither in the mean nor in the gradients
    ref, got = _reference(h, w, t), _chunked(h, w, t, chunk)
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)


def test_a_frozen_head_gets_no_gradient_and_the_input_still_does():
    torch.manual_seed(1)
    h, w, t = torch.randn(40, 8), torch.randn(30, 8), torch.randint(0, 30, (40,))
    ref, got = _reference(h, w, t), _chunked(h, w, t, chunk=16, head_trains=False)
    assert got[2] is None
    torch.testing.assert_close(got[1], ref[1], atol=1e-6, rtol=1e-5)


def test_a_target_far_below_the_rest_keeps_its_exact_loss():
    """Its probability underflows fp32 (exp(-200)): the loss is its exact 200-odd nats, not inf."""
    h, w = torch.eye(4), torch.eye(4) * 300
    w[3] = -300  # row i's logit for target 3 is 300 below its largest (or 300 below 0 for row 3's own, negative)
    t = torch.tensor([3, 3, 1, 2])
    ref, got = _reference(h, w, t), _chunked(h, w, t)
    assert torch.isfinite(got[0]) and got[0] > 100
    for a, b in zip(ref, got, strict=True):
        torch.testing.assert_close(b, a)


def test_the_cpu_chunks_compute_what_the_generic_ones_do():
    """What the CPU runs eagerly (cache-sized chunks, torch's softmax in place) and what GPUs and torch.compile run
    (one exp pass, the scale folded into the gradient) give the same nats and gradients, in fp32 and in bf16."""
    torch.manual_seed(2)
    h, w = torch.randn(50, 16), torch.randn(70, 16)
    t = torch.randint(0, 70, (50,))
    t[3] = -100
    valid = t != -100
    n = valid.sum().float()
    for dtype in (torch.float32, torch.bfloat16):
        hc, wc = h.to(dtype), w.to(dtype)
        gh_cpu, gh_gen = torch.empty_like(hc), torch.empty_like(hc)
        gw_cpu = torch.zeros(70, 16)
        loss_cpu = L._cpu_chunks(hc, wc, t, valid, n, 16, True, gh_cpu, gw_cpu)
        loss_gen, gw_gen = L._generic_chunks(hc, wc, t, valid, n, 16, True, gh_gen, None)
        torch.testing.assert_close(loss_cpu, loss_gen)
        torch.testing.assert_close(gh_cpu, gh_gen)
        torch.testing.assert_close(gw_cpu, gw_gen)


def test_bf16_autocast_loss_is_close_to_the_fp32_one():
    torch.manual_seed(3)
    h, w, t = torch.randn(200, 32), torch.randn(300, 32) * 0.2, torch.randint(0, 300, (200,))
    ref = _reference(h, w, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _chunked(h, w, t, chunk=64)
    assert got[1].dtype == torch.float32 and got[2].dtype == torch.float32
    torch.testing.assert_close(got[0], ref[0], atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(got[1], ref[1], atol=2e-4, rtol=5e-2)


def test_cpu_chunks_stay_in_cache_and_other_devices_keep_large_ones():
    assert L.chunk_rows(8000, 1024, "cpu") == 262  # 8 MiB of fp32 logits
    assert L.chunk_rows(152_000, 1024, "cpu") == 128  # never fewer rows than that (the weight is re-read per chunk)
    assert L.chunk_rows(8000, 7, "cpu") == 7  # an explicit smaller chunk is kept
    assert L.chunk_rows(8000, 1024, "cuda") == 1024
    assert L.chunk_rows(152_000, 1024, "cuda") == 441  # 256 MiB of fp32 logits
