"""Dropout whose random masks cost a quarter of the random numbers on the CPU.

``torch.nn.functional.dropout`` draws one random number per element (``bernoulli_``): about 8 ns an element
on a laptop core, a fifth of a small model's training step (attention probabilities are the largest
tensors it masks). Here one 64-bit random word gives four 16-bit lanes, each compared with a threshold:
the same keep-or-drop per element with probability ``round(p * 65536) / 65536`` (0.1 → 0.100006), scaled
by ``1 / (1 - p)`` as usual, at about 2.5x the speed. Masks come from torch's global generator, so the
training loop's per-step seeding keeps them reproducible; a large mask takes two seeds from it and draws its
two halves on two threads (torch's CPU generator is serial: 2x on an attention mask), the same words whatever
the thread count. Under torch.compile inductor draws the random words itself (the same rate per lane, other
values). On a GPU the masks are torch's.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

LANES = 4  # 16-bit lanes per 64-bit random word
SPLIT_FROM = 1 << 16  # words; below it a second thread costs about what it saves
_WORD = (-(2**63), 2**63 - 1)
_POOL: ThreadPoolExecutor | None = None


def _draw_half(seed: int, out: torch.Tensor) -> None:
    torch.randint(*_WORD, out.shape, dtype=torch.int64, generator=torch.Generator().manual_seed(seed), out=out)


def _lanes(n: int, device: torch.device | str) -> torch.Tensor:
    m = (n + LANES - 1) // LANES
    if m < SPLIT_FROM or torch.compiler.is_compiling() or torch.device(device).type != "cpu":
        words = torch.randint(*_WORD, (m,), dtype=torch.int64, device=device)
    else:
        global _POOL
        seeds = torch.randint(0, 2**62, (2,)).tolist()
        words = torch.empty(m, dtype=torch.int64, device=device)
        if torch.get_num_threads() > 1:
            _POOL = _POOL or ThreadPoolExecutor(1, thread_name_prefix="fidan-dropout")
            other = _POOL.submit(_draw_half, seeds[1], words[m // 2:])
            _draw_half(seeds[0], words[:m // 2])
            other.result()
        else:
            _draw_half(seeds[0], words[:m // 2])
            _draw_half(seeds[1], words[m // 2:])
    return words.view(torch.int16)[:n]  # uniform over -32768..32767


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool mask of ``shape``: True (keep) with probability 1 - round(p * 65536) / 65536."""
    return (_lanes(math.prod(shape), device) >= -32768 + round(p * 65536)).view(shape)


def scaled_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """:func:`keep_mask`'s draw as fp32 factors: ``1 / (1 - p)`` where kept, 0 where dropped. Applying it is
    one multiplication forward and one backward (a bool mask needs a scaling and a select each way)."""
    lanes = _lanes(math.prod(shape), device)
    # widened and scaled in place: 1.5x the speed of torch.where(mask, scale, 0.0), the same values
    return (lanes >= -32768 + round(p * 65536)).to(torch.float32).mul_(1.0 / (1.0 - p)).view(shape)


class _Masked(torch.autograd.Function):
    """x times the mask: fp32 factors (:func:`scaled_mask`) or, for other dtypes, a bool mask and a scale (a
    factor rounded to bf16 would bias the scale: 1/0.9 becomes 1.109)."""

    @staticmethod
    def forward(ctx, x, mask, scale):
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.where(mask, x * scale, 0.0) if mask.dtype == torch.bool else x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        if mask.dtype == torch.bool:
            return torch.where(mask, grad * ctx.scale, 0.0), None, None
        return grad * mask, None, None


def dropout(x: torch.Tensor, p: float, training: bool, masks: str = "lanes") -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the cheaper masks on the CPU (``masks="torch"``: torch's own)."""
    if not training or p == 0.0:
        return x
    if masks == "torch" or x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    if x.dtype == torch.float32:
        return _Masked.apply(x, scaled_mask(x.shape, p, x.device), 1.0 / (1.0 - p))
    return _Masked.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class Dropout(torch.nn.Module):
    """``nn.Dropout`` with :func:`dropout`'s masks (same state dict: none)."""

    def __init__(self, p: float = 0.5, masks: str = "lanes"):
        super().__init__()
        self.p, self.masks = p, masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training, self.masks)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool,
              p: float, training: bool, masks: str = "lanes") -> torch.Tensor:
    """``F.scaled_dot_product_attention``; when it would drop attention weights on the CPU, the same
    computation written out (what torch's CPU kernel does with dropout) with :func:`dropout`'s masks."""
    if training and p == 0.0 and q.device.type == "cpu" and q.dtype == torch.bfloat16 and masks != "torch":
        # torch's bf16 attention trains at half the speed of its fp32 one on the CPU (the backward; measured at
        # hizli's size): compute it in fp32, whatever autocast asks (1.24x hizli's whole bf16 step). Not for
        # models whose config predates it (masks "torch"): a bf16 run they resume rounds as it began.
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=attn_mask,
                                               is_causal=is_causal)
        return y.to(q.dtype)
    if not training or p == 0.0 or masks == "torch" or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                              dropout_p=p if training else 0.0)
    scale = 1.0 / math.sqrt(q.size(-1))
    if is_causal and attn_mask is None:
        # scaling and the causal mask inside the product: torch.baddbmm adds an additive mask (0 / -inf) to
        # scale * q @ k.T in one pass, where a product, a scaling and a masked_fill take three
        *lead, T, D = q.shape
        S = k.size(-2)
        qs, ks = q.reshape(-1, T, D), k.reshape(-1, S, D)
        bias = _causal_bias(T, S, qs.dtype if not torch.is_autocast_enabled("cpu") else torch.get_autocast_dtype("cpu"),
                            q.device)
        scores = torch.baddbmm(bias.expand(qs.size(0), T, S), qs, ks.transpose(1, 2), alpha=scale).view(*lead, T, S)
    else:
        scores = (q @ k.transpose(-2, -1)) * scale
        if is_causal:
            T, S = q.size(-2), k.size(-2)
            attn_mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
    weights = dropout(torch.softmax(scores, dim=-1), p, True)
    return weights.to(v.dtype) @ v


_BIASES: dict[tuple, torch.Tensor] = {}


def _causal_bias(T: int, S: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(T, S) additive causal mask, 0 where query t may see key s (s <= t + S - T), -inf elsewhere; kept per
    shape in eager mode (the step builds it once), built in the graph under torch.compile."""
    key = (T, S, dtype, str(device))
    bias = None if torch.compiler.is_compiling() else _BIASES.get(key)
    if bias is None:
        seen = torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)
        bias = torch.zeros(T, S, dtype=dtype, device=device).masked_fill(~seen, float("-inf"))
        if not torch.compiler.is_compiling():
            _BIASES[key] = bias
    return bias
