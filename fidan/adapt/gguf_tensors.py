"""A fidan GPT as llama.cpp's tensors: which architecture, which names, which rearrangements.

- rotary positions + RMSNorm + QK-norm (``hizli``, ``qwen3``): llama.cpp's ``qwen3``. Its rotary
  embedding rotates (first half, second half) pairs of each head, as fidan's does: no permutation.
- rotary positions + RMSNorm without QK-norm: ``llama``, whose rotary embedding rotates adjacent
  pairs, so the rows of each head's query and key projections are interleaved (half i → 2i, half
  d/2 + i → 2i + 1) for it to compute the same attention.
- learned positions + LayerNorm + GELU (``ders``): ``gpt2``. llama.cpp's GELU is the tanh
  approximation (read from a float16 table on CPU), fidan's the exact one, so logits differ slightly.

A ReLU² MLP (``hizli``) has no llama.cpp graph that also has QK-norm: it is written as the gated
SiLU MLP of qwen3/llama with gate = S·fc, up = fc/√S and down = proj/√S (S = 256, powers of two:
exact scalings), which computes silu(S·a)/S · a instead of relu(a)·a. The two differ by at most
0.44/S² ≈ 6.7e-6 per hidden unit, and only where |a| is near 1/S.

Refused, with the reason: rotary positions with LayerNorm, a GELU MLP or biases; learned positions
with RMSNorm, SwiGLU, ReLU² or QK-norm.
"""

from __future__ import annotations

import numpy as np
import torch

from fidan.errors import BadConfig
from fidan.model.gpt import GPT, GPTConfig

GGUF_EXPORTS = ("GGUF exports: rotary positions + RMSNorm + SwiGLU or ReLU² MLP without biases (llama.cpp's "
                "qwen3 with QK-norm, llama without; presets hizli, qwen3), or learned positions + LayerNorm + "
                "GELU (gpt2; preset ders)")
RELU2_SCALE = 256.0  # S: silu(S·a)/S stands for relu(a); a power of two, so scaling the weights is exact
RMS_EPS = float(torch.finfo(torch.float32).eps)  # fidan's RMSNorm and QK-norm use float32's epsilon
LAYERNORM_EPS = 1e-5


def gguf_architecture(cfg: GPTConfig) -> str:
    """llama.cpp's architecture for a config (qwen3, llama or gpt2), or a BadConfig saying why none fits."""
    if cfg.pos_emb == "learned":
        bad = [name for name, on in (("norm=rmsnorm", cfg.norm == "rmsnorm"), (f"mlp={cfg.mlp}", cfg.mlp != "gelu"),
                                     ("qk_norm", cfg.qk_norm)) if on]
        if bad:
            raise BadConfig(f"cannot export to GGUF: llama.cpp's gpt2 graph (learned positions) has LayerNorm, "
                            f"a GELU MLP and no QK-norm, so not {', '.join(bad)}; {GGUF_EXPORTS}")
        return "gpt2"
    bad = [name for name, on in (("norm=layernorm", cfg.norm == "layernorm"), ("mlp=gelu", cfg.mlp == "gelu"),
                                 ("bias", cfg.bias)) if on]
    if bad:
        raise BadConfig(f"cannot export to GGUF: llama.cpp's qwen3 and llama graphs (rotary positions) have "
                        f"RMSNorm, a gated MLP and no biases, so not {', '.join(bad)}; {GGUF_EXPORTS}")
    return "qwen3" if cfg.qk_norm else "llama"


def interleave_heads(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of a query/key projection reordered per head from (first half, second half) to adjacent pairs."""
    rows = w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
    return rows.swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model: GPT) -> tuple[str, dict[str, np.ndarray]]:
    """llama.cpp's architecture name and the model's weights as float32 arrays under llama.cpp's tensor
    names ((out, in) as PyTorch stores them; the writer reverses them to ggml's order)."""
    cfg = model.config
    arch = gguf_architecture(cfg)
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    C, H = cfg.n_embd, cfg.n_head
    out = {"token_embd.weight": sd["wte.weight"], "output_norm.weight": sd["ln_f.weight"]}
    if not cfg.tie_embeddings:  # tied: llama.cpp reads the output head from token_embd
        out["output.weight"] = sd["lm_head.weight"]
    if arch == "gpt2":
        out["position_embd.weight"] = sd["wpe.weight"]
        out["output_norm.bias"] = sd.get("ln_f.bias", np.zeros(C, np.float32))
    for i in range(cfg.n_layer):
        b, g = f"blocks.{i}.", f"blk.{i}."
        out[g + "attn_norm.weight"], out[g + "ffn_norm.weight"] = sd[b + "ln1.weight"], sd[b + "ln2.weight"]
        out[g + "attn_output.weight"] = sd[b + "attn.proj.weight"]
        if arch == "gpt2":  # llama.cpp's gpt2 requires every bias: zeros where the model has none
            pairs = (("ln1", "attn_norm"), ("ln2", "ffn_norm"), ("attn.qkv", "attn_qkv"), ("attn.proj", "attn_output"),
                     ("mlp.fc", "ffn_up"), ("mlp.proj", "ffn_down"))
            for ours, theirs in pairs:
                w = sd[f"{b}{ours}.weight"]
                out[f"{g}{theirs}.weight"] = w
                out[f"{g}{theirs}.bias"] = sd.get(f"{b}{ours}.bias", np.zeros(w.shape[0], np.float32))
            continue
        q, k, v = np.split(sd[b + "attn.qkv.weight"], 3, axis=0)
        if arch == "llama":
            q, k = interleave_heads(q, H), interleave_heads(k, H)
        out[g + "attn_q.weight"], out[g + "attn_k.weight"], out[g + "attn_v.weight"] = q, k, v
        if arch == "qwen3":  # fidan's QK-norm has no weight: llama.cpp's is multiplied by ones
            out[g + "attn_q_norm.weight"] = np.ones(C // H, np.float32)
            out[g + "attn_k_norm.weight"] = np.ones(C // H, np.float32)
        fc, proj = sd[b + "mlp.fc.weight"], sd[b + "mlp.proj.weight"]
        if cfg.mlp == "swiglu":
            out[g + "ffn_gate.weight"], out[g + "ffn_up.weight"], out[g + "ffn_down.weight"] = sd[b + "mlp.gate.weight"], fc, proj
        else:  # ReLU² as silu(S·a)/S · a: gate S·fc, up fc/√S, down proj/√S
            root = np.float32(RELU2_SCALE ** 0.5)
            out[g + "ffn_gate.weight"] = fc * np.float32(RELU2_SCALE)
            out[g + "ffn_up.weight"], out[g + "ffn_down.weight"] = fc / root, proj / root
    return arch, out
