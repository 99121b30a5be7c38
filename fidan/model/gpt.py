"""A GPT decoder in one file: configuration, presets and the model.

Read top to bottom: config → attention → MLP → block → GPT. One forward serves training and decoding:
given a KV cache, the new tokens take the positions the cache was planned for, write their keys and values
into it and attend to the earlier ones there. Decoding itself (prefill, one-token steps, sampling, stops,
the sliding window) lives in ``fidan.inference``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from fidan.errors import FidanError
from fidan.model.dropout import Dropout, attention
from fidan.model.loss import chunked_cross_entropy, chunked_token_nll

if TYPE_CHECKING:  # the cache belongs to the inference engine; the model only writes and reads it
    from fidan.model.cache import KVCache


@dataclass
class GPTConfig:
    vocab_size: int = 8000
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    bias: bool = True  # biases in linear layers and LayerNorms, as in GPT-2
    # Architecture variants. The defaults are GPT-2's choices (and the `ders` lesson's), so config.json
    # files written before these fields existed load unchanged.
    pos_emb: str = "learned"  # "learned" position table, or "rope" (rotary, applied to queries and keys)
    norm: str = "layernorm"  # "layernorm" or "rmsnorm"
    mlp: str = "gelu"  # "gelu", "relu2" (ReLU squared) or "swiglu"
    mlp_ratio: float = 4.0  # hidden width of the MLP as a multiple of n_embd
    qk_norm: bool = False  # RMS-normalize queries and keys per head before attention
    tie_embeddings: bool = False  # share the token embedding with the output head
    zero_init: bool = False  # start residual output projections at zero (each block starts as identity)
    rope_base: float = 10000.0
    # "lanes": fidan's cheaper CPU dropout masks (model/dropout.py); "torch": torch's own, as in models whose
    # config.json predates the field, so that their runs resume with the masks they started with.
    dropout_masks: str = "lanes"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise FidanError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise FidanError(
                f"model config: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
                f"try n_head={math.gcd(self.n_embd, self.n_head)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise FidanError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        for name, allowed in (("pos_emb", POS_EMBS), ("norm", NORMS), ("mlp", MLPS), ("dropout_masks", MASKS)):
            if getattr(self, name) not in allowed:
                raise FidanError(f"model config: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.pos_emb == "rope" and (self.n_embd // self.n_head) % 2:
            raise FidanError(f"model config: rotary positions need an even head size, got {self.n_embd // self.n_head}; "
                             "change n_embd or n_head")
        if self.mlp_ratio <= 0:
            raise FidanError(f"model config: mlp_ratio must be positive, got {self.mlp_ratio}")

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_ratio * self.n_embd)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise FidanError(f"model config has unknown fields {sorted(unknown)}; was it written by a newer fidan?")
        return cls(**{"dropout_masks": "torch", **d})


POS_EMBS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "relu2", "swiglu")
MASKS = ("lanes", "torch")

# Presets set the architecture; the vocabulary size comes from the tokenizer.
PRESETS: dict[str, dict] = {
    # The Turkish from-scratch lesson: ~0.94M parameters at vocab 500.
    "ders": dict(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.1, bias=True),
    # Fastest to a given held-out bits per byte on a laptop CPU (see docs/speed.md): rotary positions,
    # RMSNorm, QK-norm, ReLU² MLP, no biases, zero-init projections, no dropout; trained with Muon.
    "hizli": dict(block_size=128, n_layer=4, n_head=4, n_embd=256, dropout=0.0, bias=False, pos_emb="rope",
                  norm="rmsnorm", mlp="relu2", qk_norm=True, tie_embeddings=False, zero_init=True),
    # Qwen3's shape (rotary positions, RMSNorm, QK-norm, SwiGLU, tied embeddings, no biases), small: it
    # exports as a native Qwen3ForCausalLM. Meant for large vocabularies such as Qwen's own, where the
    # tied embedding is most of the model and the blocks cost little.
    "qwen3": dict(block_size=128, n_layer=6, n_head=2, n_embd=128, dropout=0.0, bias=False, pos_emb="rope",
                  norm="rmsnorm", mlp="swiglu", mlp_ratio=3.0, qk_norm=True, tie_embeddings=True, zero_init=True),
}


def depth_dims(depth: int) -> dict:
    """The size dial: depth sets width (64 per layer) and heads (head size 64), as in nanochat."""
    if depth <= 0:
        raise FidanError(f"--depth must be positive, got {depth}")
    n_embd = 64 * depth
    return dict(n_layer=depth, n_embd=n_embd, n_head=max(1, n_embd // 64))


def config_from_preset(preset: str, vocab_size: int, depth: int | None = None, **overrides) -> GPTConfig:
    """A preset's architecture at a vocabulary size; ``depth`` rescales it, other overrides replace fields."""
    if preset not in PRESETS:
        raise FidanError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    if depth is not None:
        values.update(depth_dims(depth))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return GPTConfig(vocab_size=vocab_size, **values)


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd)
    return nn.LayerNorm(cfg.n_embd, bias=cfg.bias)


def rope_tables(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of position × frequency, (length, head_dim / 2): the rotation angles of rotary positions."""
    freqs = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), freqs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (first half, second half) of every head's channels by its position's angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        self.n_head = cfg.n_head
        self.layer = layer  # which slice of a KV cache is this layer's
        self.qk_norm = cfg.qk_norm
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout, self.masks = cfg.dropout, cfg.dropout_masks
        self.resid_drop = Dropout(cfg.dropout, cfg.dropout_masks)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) → (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.qk_norm:  # bounded attention logits: lets the model train at high learning rates
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if rope is not None:
            cos, sin = (t.to(q.dtype) for t in rope)  # stay in bf16 under autocast: no round trips to fp32
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # attend to the cached keys and values of earlier positions too
            k, v = cache.write(self.layer, k, v)
        # Causal when no mask is given, except for single new tokens over a cache (they see every slot).
        y = attention(q, k, v, attn_mask, attn_mask is None and (cache is None or T > 1), self.dropout, self.training,
                      self.masks)
        y = self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return self.resid_drop(y) if self.training else y


class _ReluSquared(torch.autograd.Function):
    """relu(x)², keeping relu(x) for the gradient 2·relu(x)·g: two passes backward where autograd's pow and
    relu take four (a copy, two products and a threshold): 2.2x on that part, about 4% of `hizli`'s fp32 step on
    a CPU; the same values."""

    @staticmethod
    def forward(ctx, x):
        r = torch.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad):
        (r,) = ctx.saved_tensors
        return torch.mul(grad, r).mul_(2.0)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling():  # inductor fuses the plain expression itself
        return F.relu(x).square()
    return _ReluSquared.apply(x)


class MLP(nn.Module):
    """GELU (GPT-2), ReLU² (cheap and sharp, from modded-nanogpt) or SwiGLU (gated, as in Llama)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.kind = cfg.mlp
        hidden = cfg.mlp_hidden
        self.fc = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        if cfg.mlp == "swiglu":
            self.gate = nn.Linear(cfg.n_embd, hidden, bias=cfg.bias)
        self.proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.drop = Dropout(cfg.dropout, cfg.dropout_masks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "relu2":
            h = relu_squared(self.fc(x))
        elif self.kind == "swiglu":
            h = F.silu(self.gate(x)) * self.fc(x)
        else:
            h = F.gelu(self.fc(x))
        y = self.proj(h)
        return self.drop(y) if self.training else y


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg, layer)
        self.ln2 = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), attn_mask, rope, cache)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.pos_emb == "learned":
            self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        else:  # rotary tables are derived, not learned: not saved with the weights
            cos, sin = rope_tables(cfg.n_embd // cfg.n_head, cfg.block_size, cfg.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = Dropout(cfg.dropout, cfg.dropout_masks)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.grad_checkpointing = False  # set_grad_checkpointing
        self.apply(self._init_weights)
        # GPT-2: scale residual projections by 1/sqrt(2 * n_layer) so the residual stream stays O(1);
        # with zero_init they start at 0, so every block starts as the identity (modded-nanogpt).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                if cfg.zero_init:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())  # a tied weight is counted once
        if non_embedding:
            n -= self.wte.weight.numel() + (self.wpe.weight.numel() if self.config.pos_emb == "learned" else 0)
            if self.config.tie_embeddings:  # the shared matrix also works as the output head: keep it
                n += self.wte.weight.numel()
        return n

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 per weight used in a matmul (blocks and head), plus 12·L·d·T for attention."""
        c = self.config
        block_params = sum(p.numel() for p in self.blocks.parameters())
        return 6 * (block_params + c.n_embd * c.vocab_size) + 12 * c.n_layer * c.n_embd * c.block_size

    def set_grad_checkpointing(self, on: bool = True) -> None:
        self.grad_checkpointing = on

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        reduction: str = "mean",
        doc_ids: torch.Tensor | None = None,
        return_logits: bool = True,
        cache: KVCache | None = None,
    ):
        """Logits for every position; with targets, also the cross-entropy (positions with -100 are ignored).

        ``doc_ids`` (B, T) marks packed examples: attention stays inside each example (a block-diagonal
        causal mask) and positions restart at 0 for each one, so packed examples never see each other.
        ``return_logits=False`` (training) returns ``(None, loss)`` and computes the output head and the
        mean loss chunk by chunk, never holding the full (B, T, vocab) logits.
        With a ``cache`` (decoding, see ``KVCache.plan``), the result is each row's next-token logits
        (B, vocab), read after its last new token.
        """
        B, T = idx.shape
        x = self.hidden_states(idx, doc_ids, cache)
        if cache is not None:
            return self.lm_head(x[torch.arange(B, device=x.device), cache.last]), None
        if targets is not None and not return_logits and reduction in ("mean", "none"):  # never full logits
            loss = (chunked_cross_entropy if reduction == "mean" else chunked_token_nll)(
                x.view(B * T, -1), self.lm_head.weight, targets.reshape(-1))
            return None, loss
        logits = self.lm_head(x)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100, reduction=reduction)
        return logits, loss

    def hidden_states(self, idx: torch.Tensor, doc_ids: torch.Tensor | None = None,
                      cache: KVCache | None = None) -> torch.Tensor:
        """The final normalized hidden states (B, T, n_embd): what the output head (or a classifier) reads."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise FidanError(f"sequence of {T} tokens is longer than the model's block size {self.config.block_size}")
        mask = None
        if cache is not None:  # positions (B, T) and the mask over the cache's slots, as planned
            pos, mask = cache.positions, cache.mask
        elif doc_ids is None:
            pos = torch.arange(T, device=idx.device)
        else:
            pos = positions_in_documents(doc_ids)
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            mask = (causal & (doc_ids[:, :, None] == doc_ids[:, None, :]))[:, None]  # (B, 1, T, T)
        x = self.wte(idx)
        rope = None
        if self.config.pos_emb == "learned":
            x = x + self.wpe(pos)
        else:  # (T, hd/2) or, per row, (B, 1, T, hd/2): broadcasts over heads
            rope = (self.rope_cos[pos], self.rope_sin[pos])
            if pos.dim() == 2:
                rope = (rope[0][:, None], rope[1][:, None])
        x = self.drop(x)
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:  # with checkpointing, a block's activations are recomputed in backward
            x = checkpoint(block, x, mask, rope, use_reentrant=False) if recompute else block(x, mask, rope, cache)
        return self.ln_f(x)


def positions_in_documents(doc_ids: torch.Tensor) -> torch.Tensor:
    """Position of each token within its own document: [0,1,2,0,1,0,...] for doc ids [a,a,a,b,b,c,...]."""
    B, T = doc_ids.shape
    idx = torch.arange(T, device=doc_ids.device).expand(B, T)
    starts = torch.ones_like(doc_ids, dtype=torch.bool)
    starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - first
