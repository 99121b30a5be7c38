"""The next-token loss through the output head, a chunk of rows at a time: training's mean (with its
gradients) and scoring's per-token nats, never the full (rows, vocab) logits of a large vocabulary."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOGIT_CHUNK_ELEMENTS = 1 << 26  # a chunk's fp32 logits take at most 256 MiB (a 152k vocabulary: 441 rows)
# On the CPU a chunk's logits should stay in cache from the product that makes them through the softmax to the
# two products that read them: 8 MiB of fp32 (an 8,000 vocabulary: 262 rows), and at least 128 rows, so that
# the head's weight is not read again every few rows. Measured at width 128 (benchmarks/RESULTS.md): with the
# in-place softmax below, 1.5x the speed of 1,024-row chunks for an 8,000 vocabulary, 1.3x for 152,000.
CPU_CHUNK_ELEMENTS, CPU_MIN_ROWS = 1 << 21, 128
_TINY = torch.finfo(torch.float32).tiny  # below it a probability is subnormal and its log loses precision


def _cpu_eager(device: str) -> bool:
    """Whether the loss runs its CPU loop (cache-sized chunks, softmax in place): not under torch.compile, which
    unrolls the chunk loop (more chunks, a longer compile) and fuses the passes itself."""
    return device == "cpu" and not torch.compiler.is_compiling()


def _memory_rows(vocab: int, chunk: int) -> int:
    return max(64, min(chunk, LOGIT_CHUNK_ELEMENTS // vocab))


def chunk_rows(vocab: int, chunk: int, device: str) -> int:
    """Rows per chunk of the loss through a head of ``vocab`` rows, at most ``chunk``: cache-sized on the CPU in
    eager mode, within 256 MiB of logits elsewhere."""
    if _cpu_eager(device):
        return min(chunk, max(CPU_MIN_ROWS, CPU_CHUNK_ELEMENTS // vocab))
    return _memory_rows(vocab, chunk)


def _cpu_chunks(h, w, targets, valid, n, chunk, head_trains, grad_h, grad_w):
    """CPU, eager: each chunk's softmax over one reused fp32 buffer (torch's row-wise kernel takes a row's max,
    exps and sum while the row is in cache; no fresh pages to fault in), the fp32 per-row scale on the narrow side
    of the two products. A target whose probability underflows (more than 87 nats) gets its exact nats from its
    row's logits made again. Returns the summed nats."""
    rows, fp32 = min(chunk, h.size(0)), w.dtype == torch.float32
    probs = torch.empty(rows, w.size(0), dtype=torch.float32)
    low = None if fp32 else torch.empty(rows, w.size(0), dtype=w.dtype)
    scale = valid.to(torch.float32) / n
    nll = torch.empty(h.size(0), dtype=torch.float32)
    for i in range(0, h.size(0), chunk):
        hc, safe_t = h[i:i + chunk], targets[i:i + chunk].clamp(min=0)[:, None]
        r = hc.size(0)
        if fp32:  # the product writes straight into the buffer
            logits = torch.mm(hc, w.T, out=probs[:r])
        else:  # bf16: the product in bf16, widened into the fp32 buffer
            logits = probs[:r].copy_(torch.mm(hc, w.T, out=low[:r]))
        p = torch.ops.aten._softmax.out(logits, -1, False, out=logits)
        pt = p.gather(1, safe_t)[:, 0]
        nll[i:i + r] = pt.log().neg_()
        under = (pt < _TINY).nonzero()[:, 0]
        if under.numel():
            again = (hc[under] @ w.T).float()
            nll[i + under] = again.logsumexp(-1) - again.gather(1, safe_t[under])[:, 0]
        g = p.scatter_add_(1, safe_t, torch.full(safe_t.shape, -1.0))  # softmax - one-hot
        s = scale[i:i + r, None]
        if fp32:
            torch.mm(g, w, out=grad_h[i:i + r]).mul_(s)
            if head_trains:
                grad_w.addmm_(g.T, hc * s)
        else:  # scaled in fp32, then rounded once to bf16 (as autograd through full logits does)
            g = torch.mul(g, s, out=low[:r])
            torch.mm(g, w, out=grad_h[i:i + r])
            if head_trains:
                grad_w.add_(g.T @ hc)
    return torch.where(valid, nll, 0.0).sum()


def _generic_chunks(h, w, targets, valid, n, chunk, head_trains, grad_h, grad_w):
    """GPU or torch.compile (inductor fuses these passes itself): softmax and nats from one exp pass, the scale
    folded into the (rows, vocab) gradient. Returns the summed nats."""
    loss = torch.zeros((), dtype=torch.float32, device=h.device)
    for i in range(0, h.size(0), chunk):
        hc, tc, vc = h[i:i + chunk], targets[i:i + chunk], valid[i:i + chunk]
        logits = (hc @ w.T).float()
        safe_t = tc.clamp(min=0)[:, None]
        target = logits.gather(1, safe_t)[:, 0]
        top = logits.amax(dim=-1, keepdim=True)
        e = logits.sub_(top).exp_()
        total = e.sum(dim=-1, keepdim=True)
        loss += ((top[:, 0] + total[:, 0].log() - target) * vc).sum()
        # d loss / d logits = (softmax - one_hot) / n, zero for ignored rows
        scale = (vc / n)[:, None]
        g = e.mul_(scale / total)
        g.scatter_add_(1, safe_t, -scale)
        g = g.to(w.dtype)
        grad_h[i:i + chunk] = g @ w
        if head_trains:
            part = g.T @ hc
            grad_w = part.float() if grad_w is None else grad_w.add_(part)
    return loss, grad_w


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
        grad_h = torch.empty_like(hd)
        # a frozen head (LoRA, QLoRA) needs no (vocab, width) fp32 gradient: 2.5 GB for an 8B model's head
        head_trains = ctx.needs_input_grad[1]
        if _cpu_eager(h.device.type):
            grad_w = torch.zeros(weight.shape, dtype=torch.float32) if head_trains else None
            loss = _cpu_chunks(hd, w, targets, valid, n, chunk, head_trains, grad_h, grad_w)
        else:
            loss, grad_w = _generic_chunks(hd, w, targets, valid, n, chunk, head_trains, grad_h, None)
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


def chunked_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 1024):
    """Mean next-token loss of hidden states ``h`` (N, d) through the output head ``weight`` (V, d), at most
    ``chunk`` rows at a time (fewer for a large vocabulary: :func:`chunk_rows`)."""
    device = h.device.type
    chunk = chunk_rows(weight.size(0), chunk, device)
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else h.dtype
    with torch.autocast(device_type=device, enabled=False):
        return _ChunkedLinearCrossEntropy.apply(h, weight, targets, dtype, chunk)


def chunked_token_nll(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Nats of each target (N,) (0 where it is -100) through the output head, a chunk of rows at a time: what
    scoring needs, without the (N, vocab) logits of a large vocabulary (autocast applies to the product)."""
    chunk = _memory_rows(weight.size(0), chunk)
    out = torch.empty(h.size(0), dtype=torch.float32, device=h.device)
    for i in range(0, h.size(0), chunk):
        logits = F.linear(h[i:i + chunk], weight).float()
        out[i:i + chunk] = F.cross_entropy(logits, targets[i:i + chunk], ignore_index=-100, reduction="none")
    return out
