"""Where training starts from: a fidan run, or any local transformers causal LM (continued pretraining,
tuning), and which of its weights train (all, only the new embedding rows, or LoRA adapters)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fidan.artifacts.adapters import adapter_base
from fidan.artifacts.loader import Loaded, load, locate
from fidan.artifacts.runs import ADAPTER_DIR, adapter_meta
from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadConfig
from fidan.model.hf import HFCausalLM
from fidan.runtime.perf import resolve_precision

if TYPE_CHECKING:
    from fidan.training.args import LoraArgs

HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def load_start(init: str, tokenizer: str | None, block_size: int | None, device: str = "cpu",
               dtype: str = "auto", four_bit: bool = False, trust_remote_code: bool = False) -> Loaded:
    """The model to continue training (a fidan run or checkpoint, a transformers folder, a hub name), through
    the one loader; its tokenizer's ids are checked against the model's own."""
    from fidan.model.lora import one_four_bit_kernel

    loaded = load(init, tokenizer=tokenizer, device=device, dtype=dtype, four_bit=four_bit, block_size=block_size,
                  trust_remote_code=trust_remote_code)
    one_four_bit_kernel(loaded.model)
    return loaded


def base_source(init: str):
    """Where the weights to start from live: the model itself, or an adapter folder's base."""
    source = locate(init)
    return source.base if source.kind == "adapter" else source


def stored_dtype(init: str, load_dtype: str) -> str:
    """The dtype the base's (unquantized) weights will be loaded in: ``--load-dtype``, or its checkpoint's own."""
    if load_dtype != "auto":
        return load_dtype
    base = base_source(init)
    if base.kind == "fidan":
        return "fp32"
    try:
        config = json.loads((base.folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return "fp32"
    value = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(value, "fp32")


def train_precision(precision: str, device: str, base_dtype: str = "fp32", four_bit: bool = False) -> str:
    """``--precision`` for a run over a base held in ``base_dtype``: ``auto`` computes a half-precision or
    4-bit base in bf16 (fp16 on a GPU for an fp16 base); fp32 compute cannot multiply half-precision frozen
    weights, so it is refused for one."""
    half = base_dtype in ("bf16", "fp16")
    if base_dtype == "fp16" and not device.startswith("cuda"):
        raise BadConfig("the base is held in fp16, which the CPU does not train in; pass --load-dtype bf16 "
                        "(or fp32)")
    if precision == "auto" and (half or four_bit):
        return "fp16" if base_dtype == "fp16" else "bf16"
    precision = resolve_precision(precision, device)
    if half and precision == "fp32":
        raise BadConfig(f"the base is loaded in {base_dtype} (--load-dtype, or its checkpoint's own), so its frozen "
                        f"weights stay {base_dtype}, which fp32 compute cannot multiply; use --precision "
                        f"{base_dtype} or auto, or --load-dtype fp32")
    return precision


def base_record(loaded: Loaded, init: str, load_opts: dict) -> dict:
    """What config.yaml records about a run's base: where from, precision, 4-bit, the bytes its weights take."""
    return {**loaded.describe(), "init": str(init), "load_dtype": load_opts["dtype"],
            "trust_remote_code": load_opts["trust_remote_code"]}


def master_weights_fp32(model: torch.nn.Module) -> int:
    """Trainable tensors in fp32 (master weights: AdamW's small updates would vanish in bf16); frozen ones stay
    in the load dtype. Returns how many tensors were cast."""
    n = 0
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            n += 1
    return n


def copy_hf_tokenizer(tok: TokenizerBundle, run: Path) -> None:
    """A transformers run folder carries its tokenizer files beside the weights, as HF folders do."""
    for name in HF_TOKENIZER_FILES:
        src = tok.path / name
        if src.exists() and src.resolve() != (run / name).resolve():
            shutil.copy2(src, run / name)


def train_only_rows(model: torch.nn.Module, ids: list[int]) -> int:
    """Freeze everything but rows ``ids`` of the input embedding and output head; returns the trainable
    count. Old rows get a zero gradient, so Adam leaves them exactly where they are (weight decay must be
    0: decoupled decay would shrink them)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return _train_rows(model, ids)


def _vocab_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    if isinstance(model, HFCausalLM):
        found = [model.net.get_input_embeddings().weight, model.net.get_output_embeddings().weight]
    else:
        found = [model.wte.weight, model.lm_head.weight]
    unique: dict[int, torch.nn.Parameter] = {}
    for w in found:
        unique.setdefault(id(w), w)  # tied: one matrix
    return list(unique.values())


def lora_request(lora: LoraArgs):
    """The LoRA settings asked for on a command line (None: train the weights themselves)."""
    from fidan.model.lora import LoraSpec

    lora.check()
    return LoraSpec(r=lora.lora_r, alpha=lora.lora_alpha, targets=lora.lora_targets) if lora.lora_r else None


def resume_adapted(ckpt: Path, *, device: str, dtype: str, four_bit: bool, block_size: int | None = None,
                   trust_remote_code: bool = False, trainable_rows: list[int] = ()) -> Loaded:
    """A LoRA checkpoint: its base loaded again as at the start (precision, 4-bit), with the checkpoint's
    adapters (and trained embedding rows) put back, trainable."""
    from fidan.model.lora import one_four_bit_kernel

    loaded = load(Path(ckpt) / ADAPTER_DIR, device=device, dtype=dtype, four_bit=four_bit, block_size=block_size,
                  trust_remote_code=trust_remote_code)
    model = loaded.model
    one_four_bit_kernel(model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    if trainable_rows:
        _train_rows(model, list(trainable_rows))
    model.fidan_lora = {"base": adapter_base(Path(ckpt) / ADAPTER_DIR), "rows": list(trainable_rows),
                        "tokenizer": loaded.tok.path}
    return loaded


def adapt_with_lora(model: torch.nn.Module, lora, trainable_rows: list[int] = (), base: str = "",
                    tokenizer: Path | None = None) -> tuple[int, int]:
    """Put LoRA adapters on ``model`` (everything else frozen); ``trainable_rows`` of the embeddings (new
    tokens) keep learning. ``base`` names the base in the adapter folders the run writes (with ``tokenizer``'s
    files when rows train). Returns (trained weights, all weights)."""
    from fidan.model.lora import apply_lora, trainable_share

    apply_lora(model, lora)
    _, total = trainable_share(model)
    if trainable_rows:
        _train_rows(model, list(trainable_rows))
    # read by save_weights, which writes the adapter folder
    model.fidan_lora = {"base": base, "rows": list(trainable_rows), "tokenizer": tokenizer}
    return trained_weights(model), total


def trained_weights(model: torch.nn.Module) -> int:
    """Weights that training changes: trainable tensors, of which row-masked matrices count their rows only."""
    seen: set[int] = set()
    n = 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            n += p.size(1) * p.fidan_rows if getattr(p, "fidan_rows_only", False) else p.numel()
    return n


def _train_rows(model: torch.nn.Module, ids: list[int]) -> int:
    rows = torch.zeros(model.config.vocab_size, 1)
    rows[torch.tensor(ids)] = 1.0
    matrices = _vocab_matrices(model)
    for weight in matrices:
        weight.requires_grad_(True)
        weight.fidan_rows_only = True  # no weight decay: decoupled decay would move the frozen rows
        weight.fidan_rows = len(ids)
        weight.register_hook(lambda g, m=rows.to(weight.device, weight.dtype): g * m)
    return len(ids) * sum(w.size(1) for w in matrices)


def merged_for_saving(model: torch.nn.Module, run: Path, dtype: torch.dtype = torch.float32) -> None:
    """The run's final model as an ordinary one: the adapters (kept unmerged in ``RUN/adapter/``) folded into
    the weights (a 4-bit base dequantized to ``dtype`` first)."""
    from fidan.artifacts.runs import save_weights
    from fidan.model.lora import merge_lora

    extra = adapter_meta(run)  # the step and stage the trainer recorded with the adapters
    model.__dict__.pop("fidan_lora", None)
    save_weights(merge_lora(model, dtype), run, extra)
