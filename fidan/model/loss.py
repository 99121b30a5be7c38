"""The next-token loss through the output head, a chunk of rows at a time: training's mean (with its
gradients) and scoring's per-token nats, never the full (rows, vocab) logits of a large vocabulary."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T`` against targets, in row chunks, gradients included.

    The (rows, vocab) logits are the largest tensor of a small model's step: materialized in full,
    cast to fp32 and kept for the backward pass, they cost more memory traffic than the matmuls that
    make them. Here each chunk's logits are made, turned into loss and gradient (softmax - one-hot),
    and dropped at once; the backward pass only scales the saved gradients.
    """

    @staticmethod
    def forward(ctx, h, weight, targets, dtype, chunk):
        w = weight.to(dtype)
        hd = h.to(dtype)
        valid = targets != -100
        n = valid.sum().clamp(min=1).to(torch.float32)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(hd)
        # a frozen head (LoRA, QLoRA) needs no (vocab, width) fp32 gradient: 2.5 GB for an 8B model's head
        head_trains = ctx.needs_input_grad[1]
        grad_w = None  # fp32, summed over chunks in place (no second (vocab, width) fp32 temporary per chunk)
        for i in range(0, h.size(0), chunk):
            hc, tc, vc = hd[i:i + chunk], targets[i:i + chunk], valid[i:i + chunk]
            logits = (hc @ w.T).float()
            safe_t = tc.clamp(min=0)[:, None]
            target = logits.gather(1, safe_t)[:, 0]
            # one exp pass serves the loss (log of the sum) and the gradient (softmax), in place
            top = logits.amax(dim=-1, keepdim=True)
            e = logits.sub_(top).exp_()
            total = e.sum(dim=-1, keepdim=True)
            loss += ((top[:, 0] + total[:, 0].log() - target) * vc).sum()
            # d loss / d logits = (softmax - one_hot) / n, zero for ignored rows
            scale = (vc / n)[:, None]
            g = e.mul_(scale / total)
            g.scatter_add_(1, safe_t, -scale)
            g = g.to(dtype)
            grad_h[i:i + chunk] = g @ w
            if head_trains:
                part = g.T @ hc
                grad_w = part.float() if grad_w is None else grad_w.add_(part)
        if grad_w is None:
            grad_w = torch.zeros(weight.shape if head_trains else (0,), dtype=torch.float32, device=weight.device)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.h_dtype, ctx.w_dtype = h.dtype, weight.dtype
        return loss / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        grad_weight = (grad_w * grad_out).to(ctx.w_dtype) if ctx.needs_input_grad[1] else None
        return (grad_h * grad_out).to(ctx.h_dtype), grad_weight, None, None, None


LOGIT_CHUNK_ELEMENTS = 1 << 26  # a chunk's fp32 logits take at most 256 MiB (a 152k vocabulary: 441 rows)


def chunked_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 1024):
    """Mean next-token loss of hidden states ``h`` (N, d) through the output head ``weight`` (V, d), ``chunk``
    rows at a time (fewer for a large vocabulary, so one chunk's logits stay within 256 MiB)."""
    chunk = max(64, min(chunk, LOGIT_CHUNK_ELEMENTS // weight.size(0)))
    device = h.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    with torch.autocast(device_type=device, enabled=False):
        return _ChunkedLinearCrossEntropy.apply(h, weight, targets, dtype, chunk)


def chunked_token_nll(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Nats of each target (N,) (0 where it is -100) through the output head, a chunk of rows at a time: what
    scoring needs, without the (N, vocab) logits of a large vocabulary (autocast applies to the product)."""
    chunk = max(64, min(chunk, LOGIT_CHUNK_ELEMENTS // weight.size(0)))
    out = torch.empty(h.size(0), dtype=torch.float32, device=h.device)
    for i in range(0, h.size(0), chunk):
        logits = F.linear(h[i:i + chunk], weight).float()
        out[i:i + chunk] = F.cross_entropy(logits, targets[i:i + chunk], ignore_index=-100, reduction="none")
    return out
