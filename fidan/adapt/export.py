"""`fidan export hf`: a fidan run as a standard transformers model folder, exactly.

Architectures (the weights map one to one; no option is approximated):

- learned positions + LayerNorm (``ders``): ``GPT2LMHeadModel``. GPT-2's ``Conv1D`` stores weights
  transposed; missing biases are written as zeros; GELU is the exact (erf) one.
- rotary positions + RMSNorm with QK-norm (``hizli``, ``qwen3``): ``Qwen3ForCausalLM``; without QK-norm:
  ``LlamaForCausalLM``. fidan's RMSNorm uses float32's machine epsilon, so ``rms_norm_eps`` is that.
  A ReLU² MLP (``hizli``) becomes Qwen3's gated MLP with ``hidden_act="relu"`` and the same matrix as
  gate and up projection: relu(a)·a = relu(a)² for every a, so it is exact (transformers computes that
  first matrix twice).

What cannot export exactly is refused with the reason: rotary positions with a GELU MLP or with
LayerNorm, learned positions with RMSNorm, SwiGLU or QK-norm.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fidan.artifacts.loader import load_model
from fidan.artifacts.runs import EXPORTED_RECORD, resolve_model_dir, run_record
from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadRunState, FidanError
from fidan.model.gpt import GPT, GPTConfig
from fidan.model.hf import quiet_transformers
from fidan.runtime.io import atomic_dir, atomic_write_json, atomic_write_text
from fidan.text.chat_template import END_OF_RESPONSE

if TYPE_CHECKING:
    import transformers

EXPORTS = ("learned positions + LayerNorm (GPT-2; preset ders), or rotary positions + RMSNorm with a SwiGLU or "
           "ReLU² MLP (Qwen3/Llama; presets hizli, qwen3)")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def architecture(cfg: GPTConfig) -> str:
    """The transformers class a config exports to, or a FidanError saying why none fits exactly."""
    if cfg.pos_emb == "learned":
        bad = [name for name, on in (("norm=rmsnorm", cfg.norm == "rmsnorm"), ("mlp=swiglu", cfg.mlp == "swiglu"),
                                     ("qk_norm", cfg.qk_norm)) if on]
        if bad:
            raise FidanError(f"cannot export exactly: GPT-2 (learned positions) has no {', '.join(bad)}; "
                             f"exportable: {EXPORTS}")
        return "GPT2LMHeadModel"
    bad = [name for name, on in (("norm=layernorm", cfg.norm == "layernorm"), ("mlp=gelu", cfg.mlp == "gelu")) if on]
    if cfg.bias and cfg.qk_norm:
        bad.append("bias with qk_norm (Qwen3 has no MLP biases)")
    if bad:
        raise FidanError(f"cannot export exactly: rotary-position models export as Qwen3/Llama, which have no "
                         f"{', '.join(bad)}; exportable: {EXPORTS}")
    return "Qwen3ForCausalLM" if cfg.qk_norm else "LlamaForCausalLM"


def hf_config_and_state(model: GPT, eos_id: int | None = None
                        ) -> tuple[transformers.PretrainedConfig, dict[str, torch.Tensor]]:
    """The transformers config and state dict (fp32 copies) equal to a fidan GPT.

    Keys follow the transformers class named in ``config.architectures[0]``; with tied embeddings there
    is no ``lm_head.weight`` (transformers ties it to the input embedding). ``eos_id`` becomes the BOS,
    EOS and padding id. Dropout rates are 0: the exported model is for inference.
    """
    import transformers

    cfg = model.config
    arch = architecture(cfg)
    sd = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    C, H = cfg.n_embd, cfg.n_head
    ids = dict(bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id)
    out: dict[str, torch.Tensor] = {}
    if arch == "GPT2LMHeadModel":
        act = {"gelu": "gelu", "relu2": "relu2"}[cfg.mlp]
        hf = transformers.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=C, n_layer=cfg.n_layer,
                                     n_head=H, n_inner=cfg.mlp_hidden, activation_function=act, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                                     tie_word_embeddings=cfg.tie_embeddings, architectures=[arch], **ids)
        out["transformer.wte.weight"], out["transformer.wpe.weight"] = sd["wte.weight"], sd["wpe.weight"]
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"transformer.h.{i}."
            pairs = (("ln1", "ln_1"), ("ln2", "ln_2"), ("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                     ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj"))
            for ours, theirs in pairs:
                w = sd[b + ours + ".weight"]
                linear = w.dim() == 2
                out[h + theirs + ".weight"] = w.T.contiguous() if linear else w  # Conv1D: (in, out)
                bias = sd.get(b + ours + ".bias")
                out[h + theirs + ".bias"] = bias if bias is not None else torch.zeros(w.size(0))
        out["transformer.ln_f.weight"] = sd["ln_f.weight"]
        out["transformer.ln_f.bias"] = sd.get("ln_f.bias", torch.zeros(C))
    else:
        common = dict(vocab_size=cfg.vocab_size, hidden_size=C, intermediate_size=cfg.mlp_hidden,
                      num_hidden_layers=cfg.n_layer, num_attention_heads=H, num_key_value_heads=H, head_dim=C // H,
                      max_position_embeddings=cfg.block_size, rms_norm_eps=torch.finfo(torch.float32).eps,
                      tie_word_embeddings=cfg.tie_embeddings, attention_bias=cfg.bias, attention_dropout=0.0,
                      hidden_act="silu" if cfg.mlp == "swiglu" else "relu", architectures=[arch], **ids)
        rope = {"rope_theta": cfg.rope_base, "rope_type": "default"}
        if arch == "Qwen3ForCausalLM":
            hf = transformers.Qwen3Config(**common, rope_parameters=rope)
        else:
            hf = transformers.LlamaConfig(**common, mlp_bias=cfg.bias, rope_parameters=rope)
        out["model.embed_tokens.weight"], out["model.norm.weight"] = sd["wte.weight"], sd["ln_f.weight"]
        for i in range(cfg.n_layer):
            b, h = f"blocks.{i}.", f"model.layers.{i}."
            for kind in ("weight", "bias"):
                qkv = sd.get(f"{b}attn.qkv.{kind}")
                if qkv is None:
                    continue
                for name, part in zip(("q_proj", "k_proj", "v_proj"), qkv.split(C, 0), strict=True):
                    out[f"{h}self_attn.{name}.{kind}"] = part.clone()
                out[f"{h}self_attn.o_proj.{kind}"] = sd[f"{b}attn.proj.{kind}"]
                # SwiGLU: proj(silu(gate(x)) * fc(x)). ReLU²: relu(a) * a == relu(a)**2 for every a, so with
                # hidden_act="relu" and gate = up = fc the gated MLP computes exactly proj(relu(fc(x))**2).
                gate = sd[f"{b}mlp.gate.{kind}"] if cfg.mlp == "swiglu" else sd[f"{b}mlp.fc.{kind}"].clone()
                if arch == "LlamaForCausalLM" or kind == "weight":
                    out[f"{h}mlp.gate_proj.{kind}"], out[f"{h}mlp.up_proj.{kind}"] = gate, sd[f"{b}mlp.fc.{kind}"]
                    out[f"{h}mlp.down_proj.{kind}"] = sd[f"{b}mlp.proj.{kind}"]
            out[h + "input_layernorm.weight"] = sd[b + "ln1.weight"]
            out[h + "post_attention_layernorm.weight"] = sd[b + "ln2.weight"]
            if arch == "Qwen3ForCausalLM":
                out[h + "self_attn.q_norm.weight"] = torch.ones(C // H)
                out[h + "self_attn.k_norm.weight"] = torch.ones(C // H)
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return hf, out


def to_transformers(model: GPT, eos_id: int | None = None) -> torch.nn.Module:
    """A transformers model object with the fidan model's weights (fp32)."""
    import transformers

    quiet_transformers()
    hf_cfg, state = hf_config_and_state(model, eos_id)
    net = getattr(transformers, hf_cfg.architectures[0])(hf_cfg)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and hf_cfg.tie_word_embeddings)]
    if missing or unexpected:  # a mapping bug, never a user error
        raise RuntimeError(f"export mapping incomplete: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return net.eval()


def export_paths(model: str, out: str, force: bool) -> tuple[Path, Path]:
    """The run folder to export and the folder to write, checked: an existing --out needs force, and --out
    is never the run itself or a folder holding it (shared by every `fidan export` format)."""
    out_dir = Path(out)
    if out_dir.exists() and not force:
        raise BadRunState(f"--out {out_dir} already exists; pass --force to replace it or choose another folder")
    folder = resolve_model_dir(model)
    source = Path(folder).resolve()
    if out_dir.resolve() == source or out_dir.resolve() in source.parents:
        raise BadRunState(f"--out {out_dir} would replace the run being exported ({model}); choose another folder")
    return folder, out_dir


def export_hf(model: str, out: str, force: bool = False, dtype: str = "fp32") -> dict:
    """Write a fidan run as a transformers model folder (GPT-2, Qwen3 or Llama architecture) with its tokenizer.

    Args:
        model: a fidan run folder (or one of its checkpoints).
        out: the transformers folder to write (config.json, model.safetensors, tokenizer files, README.md).
        force: replace --out if it exists.
        dtype: weights as fp32 (exact), bf16 or fp16 (half the size, rounded).
    """
    if dtype not in DTYPES:
        raise FidanError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    folder, out_dir = export_paths(model, out, force)
    net, tok = load_model(folder)
    if not isinstance(net, GPT):
        raise FidanError(f"{model} is already a transformers model folder; nothing to export")
    arch = architecture(net.config)
    hf = to_transformers(net, tok.eos_id).to(DTYPES[dtype])
    # Every token that ends a turn stops generate() and pipeline(): end-of-text, and </RESP> after tuning.
    ends = [tok.eos_id] + [i for i in (tok.tokenizer.token_to_id(END_OF_RESPONSE),) if i is not None]
    hf.generation_config.eos_token_id = ends if len(ends) > 1 else ends[0]
    hf.generation_config.pad_token_id = tok.eos_id
    hf.generation_config.max_length = net.config.block_size
    with atomic_dir(out_dir) as tmp:
        hf.save_pretrained(str(tmp))
        _write_tokenizer(tok, tmp, net.config.block_size)
        _write_card(tmp, out_dir.name, Path(model), net.config, arch, net.num_params(), dtype)
        record = run_record(folder)
        if record is not None:  # how the model was trained: `fidan sft` on the export tunes at the run's rate
            shutil.copy2(record, tmp / EXPORTED_RECORD)
    print(f"exported {Path(model)} → {out_dir}: {arch}, {net.num_params():,} parameters, {dtype}; "
          "config.json, model.safetensors, tokenizer, generation_config.json, README.md, "
          f"{EXPORTED_RECORD} (the run's settings)")
    return {"out": str(out_dir), "architecture": arch, "parameters": net.num_params(), "dtype": dtype}


def _write_tokenizer(tok: TokenizerBundle, folder: Path, block_size: int) -> None:
    shutil.copy2(tok.path / "tokenizer.json", folder / "tokenizer.json")
    config = dict(tok.config)
    eos = "<|endoftext|>"
    # model_max_length: the model's window, so a pipeline truncates or warns instead of indexing past it
    config.update({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos, "bos_token": eos,
                   "pad_token": eos, "unk_token": None, "clean_up_tokenization_spaces": False,
                   "model_max_length": block_size})
    config.pop("added_tokens_decoder", None)  # rebuilt by transformers from tokenizer.json
    template = tok.path / "chat_template.jinja"
    if template.exists() and "chat_template" not in config:
        config["chat_template"] = template.read_text(encoding="utf-8")
    atomic_write_json(folder / "tokenizer_config.json", config)


def _write_card(folder: Path, name: str, run: Path, cfg: GPTConfig, arch: str, params: int, dtype: str) -> None:
    relu2 = ("\nThe ReLU² MLP is written as a gated MLP with `hidden_act=\"relu\"` and the same matrix as gate "
             "and up projection (relu(a)·a = relu(a)²), so the outputs are exact.\n") if cfg.mlp == "relu2" and arch != "GPT2LMHeadModel" else ""
    exact = ("Exact: the logits equal the fidan model's." if dtype == "fp32" else
             f"The fp32 weights are rounded to {dtype}; in fp32 the export is exact.")
    atomic_write_text(folder / "README.md", f"""---
language: tr
library_name: transformers
---

# {run.resolve().name}

A Turkish language model trained with fidan and exported with `fidan export hf` as `{arch}`
({params:,} parameters, {dtype}). {exact}

Architecture: {cfg.n_layer} layers, width {cfg.n_embd}, {cfg.n_head} heads, context {cfg.block_size},
vocabulary {cfg.vocab_size}; positions {cfg.pos_emb}, norm {cfg.norm}, MLP {cfg.mlp}, QK-norm {cfg.qk_norm},
tied embeddings {cfg.tie_embeddings}.
{relu2}
```python
from transformers import pipeline
print(pipeline("text-generation", model="{name}")("Türkiye'nin başkenti", max_new_tokens=20))
```

Source run config: `{json.dumps(cfg.to_dict())}`
""")
