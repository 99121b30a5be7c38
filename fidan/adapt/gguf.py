"""`fidan export gguf`: a fidan run as one GGUF file for llama.cpp, plus an Ollama Modelfile.

The weights go under llama.cpp's names for its ``qwen3``, ``llama`` or ``gpt2`` graph
(:mod:`fidan.adapt.gguf_tensors`), the tokenizer as its byte-level BPE with merges, the chat template
and the end tokens (:mod:`fidan.adapt.gguf_vocab`). Written with the ``gguf`` package (fidan[gguf]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from fidan.adapt.export import export_paths
from fidan.adapt.gguf_tensors import LAYERNORM_EPS, RELU2_SCALE, RMS_EPS, gguf_architecture, gguf_tensors
from fidan.adapt.gguf_vocab import GGUFVocab, gguf_vocab, modelfile
from fidan.artifacts.loader import load_model
from fidan.errors import BadInput, MissingExtra
from fidan.model.gpt import GPT, GPTConfig
from fidan.runtime.io import atomic_dir, atomic_write_text

QUANTS = ("f16", "q8_0", "f32")
GGUF_FILE, MODELFILE = "model.gguf", "Modelfile"


def _gguf():
    try:
        import gguf
    except ModuleNotFoundError:
        raise MissingExtra("GGUF export needs the gguf package: pip install 'fidan[gguf]'") from None
    return gguf


def write_gguf(path: Path, model: GPT, vocab: GGUFVocab, quant: str, name: str) -> str:
    """Write ``model`` with ``vocab`` as a GGUF file; returns llama.cpp's architecture name.

    Matrices are stored as ``quant`` (q8_0 only where a row is a whole number of 32-value blocks;
    float16 otherwise), vectors (norms, biases) as float32, as llama.cpp's own converter does.
    """
    gguf = _gguf()
    cfg: GPTConfig = model.config
    arch, tensors = gguf_tensors(model)
    qtype = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
             "f32": gguf.GGMLQuantizationType.F32}[quant]
    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "f32": gguf.LlamaFileType.ALL_F32}[quant]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_file_type(int(ftype))
    if quant == "q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg.block_size)
    w.add_embedding_length(cfg.n_embd)
    w.add_block_count(cfg.n_layer)
    w.add_feed_forward_length(cfg.mlp_hidden)
    w.add_head_count(cfg.n_head)
    w.add_head_count_kv(cfg.n_head)
    if arch == "gpt2":
        w.add_layer_norm_eps(LAYERNORM_EPS)
    else:
        head = cfg.n_embd // cfg.n_head
        w.add_layer_norm_rms_eps(RMS_EPS)
        w.add_rope_freq_base(cfg.rope_base)
        w.add_rope_dimension_count(head)
        w.add_key_length(head)
        w.add_value_length(head)
    w.add_vocab_size(len(vocab.tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    # fidan puts no start token before a prompt; end-of-text doubles as BOS and padding, as in `export hf`
    w.add_bos_token_id(vocab.eos_id)
    w.add_eos_token_id(vocab.eos_id)
    w.add_pad_token_id(vocab.eos_id)
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    if vocab.eot_id is not None:  # </RESP> ends an assistant turn: llama.cpp stops there
        w.add_eot_token_id(vocab.eot_id)
    if vocab.chat_template is not None:
        w.add_chat_template(vocab.chat_template)
    for tname, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim == 1 or quant == "f32":
            w.add_tensor(tname, arr)
        elif quant == "q8_0" and arr.shape[-1] % 32 == 0:
            w.add_tensor(tname, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(tname, arr.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return arch


def export_gguf(model: str, out: str, quant: Literal["f16", "q8_0", "f32"] = "f16", force: bool = False) -> dict:
    """Write a fidan run as a GGUF file for llama.cpp (model.gguf) and an Ollama Modelfile.

    Args:
        model: a fidan run folder (or one of its checkpoints).
        out: the folder to write (model.gguf, Modelfile).
        quant: weight matrices as f16 (half the size of fp32), q8_0 (8-bit blocks of 32, about a quarter)
            or f32 (exact).
        force: replace --out if it exists.
    """
    if quant not in QUANTS:
        raise BadInput(f"--quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    folder, out_dir = export_paths(model, out, force)
    net, tok = load_model(folder, device="cpu")
    if not isinstance(net, GPT):
        raise BadInput(f"{model} is a transformers model folder, not a fidan run; llama.cpp's "
                       "convert_hf_to_gguf.py converts those")
    gguf_architecture(net.config)  # refuse before reading the vocabulary
    vocab = gguf_vocab(tok, net.config.vocab_size)
    _gguf()
    with atomic_dir(out_dir) as tmp:
        arch = write_gguf(tmp / GGUF_FILE, net, vocab, quant, Path(folder).resolve().name)
        atomic_write_text(tmp / MODELFILE, modelfile(vocab, net.config.block_size, GGUF_FILE))
    size = (out_dir / GGUF_FILE).stat().st_size
    notes = []
    if net.config.mlp == "relu2":
        notes.append(f"ReLU² MLP as a SiLU-gated one scaled by {RELU2_SCALE:g} (within 7e-6 per hidden unit)")
    if arch == "gpt2":
        notes.append("llama.cpp's GELU is the tanh approximation of fidan's exact one")
    notes.append(f"llama.cpp splits text with its {vocab.pre!r} pre-tokenizer, " +
                 ("the tokenizer's own" if vocab.pre_exact else "close to fidan's Turkish one but not equal "
                  "(docs/adapt.md)"))
    print(f"exported {Path(model)} → {out_dir}: llama.cpp {arch}, {quant}, {size / 1e6:.1f} MB; "
          f"{GGUF_FILE}, {MODELFILE}. Notes: {'; '.join(notes)}. "
          f"Run: llama-cli -m {out_dir / GGUF_FILE}, or ollama create NAME -f {out_dir / MODELFILE}")
    return {"out": str(out_dir), "architecture": arch, "quant": quant, "bytes": size, "pre_tokenizer": vocab.pre,
            "pre_tokenizer_exact": vocab.pre_exact}
