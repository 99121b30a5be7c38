"""`fidan adapt plan`: the memory a tuning run will need, before it starts, for full tuning, LoRA and QLoRA.

Nothing is loaded but the model's config: its shape is built on PyTorch's meta device and its weights counted
by kind (the blocks' linear layers, which LoRA targets and QLoRA stores in 4 bits; the embeddings and head;
the norms). Each method then costs, in bytes:

- weights: full tuning keeps fp32 master weights (4 per weight, whatever the checkpoint's dtype); LoRA keeps
  the base in its load dtype and the adapters in fp32; QLoRA stores the block linear layers in NF4 with double
  quantization (0.516 bytes per weight, scales included) and the rest in the load dtype;
- gradients: 4 per trained weight; optimizer state: AdamW 8 per trained weight, 8-bit AdamW 2;
- autocast copies: under bf16 autocast, fp32 weights that train are cast once per step and kept (2 per
  weight of a matrix);
- autocast copies: under bf16 autocast, fp32 weights that train are cast once per step and kept (2 per
  weight of a matrix), and so are the casts of frozen fp32 matrices, saved for the backward pass;
- activations: kept for the backward pass, per token and layer (a multiple of the width and of the MLP's
  width); with checkpointing only each layer's input, plus one layer recomputed at a time;
- the loss: fidan's chunked cross-entropy holds the logits of one chunk of rows at a time, and their
  gradient; and what a process holds besides the model.

The loss's bytes per logit, the overhead and the CPU 8-bit step were fitted on one stand-in (a 167M Qwen3
shape with Qwen's vocabulary, width 768, 8 layers, 1024 tokens; CPU, bf16 autocast; within 7.8% of every
measured peak there) and checked on others (305M, width 1024, 12 layers, 512 tokens: within 23.3%; 714M:
within 3.3%); benchmarks/RESULTS.md has the tables. Those peaks are a CPU's (RSS); a GPU adds its context (about 0.5 GB)
and its allocator's fragmentation: ``--gpu-gb`` is compared with the estimate plus 10%. No GPU was measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fidan.errors import BadInput
from fidan.model.loss import chunk_rows

NF4_BYTES = 0.516  # 4 bits, one 8-bit scale per 64 weights and one fp32 per 256 scales (double quantization)
# Activations kept per token and layer under bf16 autocast, per unit of width and of MLP width: counted from
# what a pre-norm block saves for backward (norm inputs in fp32, projections and attention in bf16), not fitted;
# with checkpointing, each layer's input only (fp32).
ACT_PER_WIDTH = 22.0
ACT_PER_MLP = 8.0
CKPT_PER_WIDTH = 4.0
# Fitted on one stand-in and checked on another (benchmarks/adapt_memory.py, benchmarks/RESULTS.md): bytes per
# logit of one chunk of the loss (the bf16 product, its fp32 copy, softmax temporaries and the bf16 gradient),
# what a process holds besides (tokenizer, token files, allocator), and on a CPU, bitsandbytes' 8-bit AdamW
# step's fp32 temporaries per weight of the largest trained tensor (its CUDA kernels have none).
LOSS_BYTES_PER_LOGIT = 16.0
OVERHEAD = 200e6
CPU_8BIT_STEP = 8.0
LOSS_CHUNK = 1024  # rows of logits at a time (fidan.model.loss.chunked_cross_entropy)
METHODS = ("full", "lora", "qlora")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass
class Shape:
    """What the plan needs to know about a model, from its config."""

    parameters: int
    block_linear: int  # weights of the blocks' linear layers (LoRA's targets, NF4 under QLoRA)
    embedding: int  # input embedding and, when untied, the output head
    layers: int
    width: int
    mlp_width: int
    vocab: int
    lora_per_rank: int  # adapter weights per unit of rank over every block linear layer
    largest_linear: int
    dtype: str  # the checkpoint's own


def model_shape(model: str) -> Shape:
    """Count a model's weights by kind from its config alone (built on the meta device)."""
    from fidan.artifacts.loader import locate
    from fidan.artifacts.runs import read_model_config
    from fidan.model.gpt import GPT

    source = locate(model)
    base = source.base if source.kind == "adapter" else source
    if base.kind == "fidan":
        cfg = read_model_config(base.folder)
        with torch.device("meta"):
            net = GPT(cfg)
        width, layers, mlp, vocab, dtype = cfg.n_embd, cfg.n_layer, cfg.mlp_hidden, cfg.vocab_size, "fp32"
        blocks = net.blocks
    else:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(base.folder), local_files_only=True, trust_remote_code=False)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        with torch.device("meta"):
            net = AutoModelForCausalLM.from_config(config)
        width = getattr(text, "hidden_size", None) or text.n_embd
        layers = getattr(text, "num_hidden_layers", None) or text.n_layer
        mlp = getattr(text, "intermediate_size", None) or 4 * width
        vocab = text.vocab_size
        raw = json.loads((base.folder / "config.json").read_text(encoding="utf-8"))
        stored = str(raw.get("dtype") or raw.get("torch_dtype") or "float32")
        dtype = {"bfloat16": "bf16", "float16": "fp16"}.get(stored, "fp32")
        blocks = [m for m in net.modules() if type(m).__name__ in set(getattr(net, "_no_split_modules", []) or [])]
    linears = [m for b in blocks for m in b.modules() if isinstance(m, torch.nn.Linear)]
    unique = {id(p): p for p in net.parameters()}
    embeddings = {id(m.weight): m.weight for m in net.modules() if isinstance(m, torch.nn.Embedding)}
    head = net.get_output_embeddings() if hasattr(net, "get_output_embeddings") else getattr(net, "lm_head", None)
    if head is not None:
        embeddings[id(head.weight)] = head.weight
    return Shape(parameters=sum(p.numel() for p in unique.values()),
                 block_linear=sum(m.weight.numel() for m in linears),
                 embedding=sum(w.numel() for w in embeddings.values()), layers=layers, width=width, mlp_width=mlp,
                 vocab=vocab, lora_per_rank=sum(m.in_features + m.out_features for m in linears),
                 largest_linear=max((m.weight.numel() for m in linears), default=0), dtype=dtype)


def plan_memory(model: str | Shape, *, seq: int, batch: int, method: str, load_dtype: str = "auto",
                lora_r: int = 16, checkpointing: bool = False, optimizer: str = "adamw",
                precision: str = "bf16", device: str = "cuda") -> dict:
    """Bytes a training step needs, by part, for one method (see the module notes)."""
    if method not in METHODS:
        raise BadInput(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    s = model if isinstance(model, Shape) else model_shape(model)
    load = s.dtype if load_dtype == "auto" else load_dtype
    b = DTYPE_BYTES[load]
    n, lin = s.parameters, s.block_linear
    adapters = lora_r * s.lora_per_rank if method != "full" else 0
    trained = n if method == "full" else adapters
    if method == "full":
        weights = 4 * n
    elif method == "lora":
        weights = b * n + 4 * adapters
    else:
        weights = NF4_BYTES * lin + b * (n - lin) + 4 * adapters
    optimizer_bytes = (2 if optimizer == "adamw8bit" else 8) * trained
    if optimizer == "adamw8bit" and device == "cpu":
        largest = max(s.embedding, s.largest_linear) if method == "full" else lora_r * max(s.width, s.mlp_width)
        optimizer_bytes += CPU_8BIT_STEP * largest
    half = precision in ("bf16", "fp16")
    casts = 0
    if half and method == "full" or half and b == 4 and not checkpointing:  # autocast keeps a bf16 copy of each fp32 weight that trains, per step
        casts = 2 * (lin + s.embedding)
    tokens = seq * batch
    per_layer = ACT_PER_WIDTH * s.width + ACT_PER_MLP * s.mlp_width
    if checkpointing:
        activations = tokens * (s.layers * CKPT_PER_WIDTH * s.width + per_layer)
    else:
        activations = tokens * s.layers * per_layer
    rows = min(chunk_rows(s.vocab, LOSS_CHUNK, device), tokens)
    loss = LOSS_BYTES_PER_LOGIT * rows * s.vocab + OVERHEAD
    parts = {"weights": weights, "gradients": 4 * trained, "optimizer_state": optimizer_bytes, "autocast_copies": casts,
             "activations": activations, "loss_and_overhead": loss}
    return {**{k: int(v) for k, v in parts.items()}, "total_bytes": int(sum(parts.values())),
            "trained_weights": int(trained), "method": method, "load_dtype": load, "checkpointing": checkpointing,
            "optimizer": optimizer, "device": device}


def adapt_plan(model: str, seq: int = 2048, batch: int = 1, gpu_gb: float = 24.0, lora_r: int = 16,
               load_dtype: str = "auto", precision: str = "bf16", device: str = "cuda",
               json_out: str | None = None) -> list[dict]:
    """Print the memory full tuning, LoRA and QLoRA of a model need, with and without checkpointing and the
    8-bit optimizer, and which fit a GPU of --gpu-gb.

    Args:
        model: a fidan run, a transformers folder, a cached hub name or an adapter folder (only its config is read).
        seq: tokens per sequence (the training block).
        batch: sequences per micro-batch.
        gpu_gb: the GPU's memory in GB (a tenth is kept for the CUDA context and fragmentation).
        lora_r: LoRA rank.
        load_dtype: the dtype the base is loaded in (auto: its checkpoint's own).
        precision: compute precision (bf16 autocast, or fp32).
        device: cuda (the GPU the plan is for) or cpu (adds what bitsandbytes' 8-bit step holds on a CPU).
        json_out: also write the rows to this JSON file.
    """
    if seq < 1 or batch < 1 or gpu_gb <= 0 or lora_r < 1:
        raise BadInput("--seq, --batch and --lora-r must be positive, and --gpu-gb above 0")
    if device not in ("cuda", "cpu"):
        raise BadInput(f"--device must be cuda or cpu, got {device!r}")
    shape = model_shape(model)
    rows = []
    for method in METHODS:
        for checkpointing in (False, True):
            for optimizer in (("adamw", "adamw8bit") if method == "full" else ("adamw",)):
                plan = plan_memory(shape, seq=seq, batch=batch, method=method, load_dtype=load_dtype, lora_r=lora_r,
                                   checkpointing=checkpointing, optimizer=optimizer, precision=precision,
                                   device=device)
                plan["fits"] = plan["total_bytes"] * 1.1 <= gpu_gb * 1e9
                rows.append(plan)
    gb = 1e9
    print(f"{model}: {shape.parameters / 1e6:,.0f}M weights ({shape.block_linear / 1e6:,.0f}M in block linear "
          f"layers, {shape.embedding / 1e6:,.0f}M in embeddings), {shape.layers} layers, checkpoint {shape.dtype}; "
          f"seq {seq} x batch {batch}, LoRA r={lora_r}, {precision}")
    print(f"{'method':<8}{'ckpt':>6}{'optimizer':>11}{'weights':>9}{'grads':>8}{'state':>8}{'activ.':>8}"
          f"{'total GB':>10}{'fits ' + format(gpu_gb, 'g') + ' GB':>14}")
    for r in rows:
        print(f"{r['method']:<8}{'yes' if r['checkpointing'] else 'no':>6}{r['optimizer']:>11}"
              f"{r['weights'] / gb:>9.2f}{r['gradients'] / gb:>8.2f}{r['optimizer_state'] / gb:>8.2f}"
              f"{r['activations'] / gb:>8.2f}{r['total_bytes'] / gb:>10.2f}{'yes' if r['fits'] else 'no':>14}")
    if json_out:
        Path(json_out).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return rows

