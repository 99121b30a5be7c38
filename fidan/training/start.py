"""Where training starts from: a fidan run, or any local transformers causal LM (continued pretraining,
tuning), and which of its weights train (all, only the new embedding rows, or LoRA adapters)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from fidan.artifacts.runs import (
    check_rows,
    find_tokenizer,
    load_weights,
    read_model_config,
    resolve_model_dir,
)
from fidan.artifacts.tokenizer import TokenizerBundle, load_tokenizer
from fidan.errors import FidanError
from fidan.model.gpt import GPT
from fidan.model.hf import HFCausalLM, is_hf_folder, load_hf_causal_lm

EXTENSION_FILE = "extension.json"  # written by `fidan vocab extend`: the new token ids, their pieces
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass
class Start:
    model: torch.nn.Module  # GPT or HFCausalLM
    tok: TokenizerBundle
    kind: str  # "fidan" or "hf"
    folder: Path  # the weights' folder


def load_start(init: str, tokenizer: str | None, block_size: int | None, device: str = "cpu") -> Start:
    """The model to continue training: a fidan run/checkpoint folder or a local transformers folder."""
    path = Path(init)
    if not path.exists():
        raise FidanError(f"--init {path} not found; pass a fidan run folder or a local transformers model folder")
    if is_hf_folder(path):
        model = load_hf_causal_lm(path, device, block_size)
        tok = load_tokenizer(tokenizer or path)
        check_rows(model, tok, path)
        return Start(model, tok, "hf", path)
    folder = resolve_model_dir(path)
    cfg = read_model_config(folder)
    if block_size is not None and block_size != cfg.block_size:
        raise FidanError(f"--block-size {block_size}: {path} was trained with block size {cfg.block_size}; "
                         "leave --block-size out when continuing a fidan model")
    model = GPT(cfg)
    load_weights(model, folder)
    tok = load_tokenizer(tokenizer or find_tokenizer(folder))
    check_rows(model, tok, path)
    return Start(model.to(device), tok, "fidan", folder)


def copy_hf_tokenizer(tok: TokenizerBundle, run: Path) -> None:
    """A transformers run folder carries its tokenizer files beside the weights, as HF folders do."""
    for name in HF_TOKENIZER_FILES:
        src = tok.path / name
        if src.exists() and src.resolve() != (run / name).resolve():
            shutil.copy2(src, run / name)


def new_token_ids(folder: Path) -> list[int]:
    """The ids `fidan vocab extend` added to the model in ``folder``."""
    path = Path(folder) / EXTENSION_FILE
    if not path.exists():
        raise FidanError(f"--only-new-embeddings: {folder} has no {EXTENSION_FILE}; it trains the rows that "
                         "`fidan vocab extend` added, so start from a folder that command wrote")
    ids = json.loads(path.read_text(encoding="utf-8")).get("new_ids") or []
    if not ids:
        raise FidanError(f"{path} lists no new token ids")
    return [int(i) for i in ids]


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


def lora_request(lora_r: int, lora_alpha: float, lora_targets: str | None, qlora: bool, device: str):
    """The LoRA settings asked for on a command line (None: train the weights themselves)."""
    from fidan.training.lora import LoraSpec, check_qlora

    if qlora:
        check_qlora(device)
        if not lora_r:
            raise FidanError("--qlora trains LoRA adapters over a 4-bit base: pass --lora-r too (e.g. --lora-r 16)")
    if not lora_r:
        if lora_targets:
            raise FidanError("--lora-targets needs --lora-r (the adapters' rank)")
        return None
    return LoraSpec(r=lora_r, alpha=lora_alpha, targets=lora_targets)


def resume_model(ckpt: Path, block_size: int | None, lora=None, trainable_rows: list[int] = ()) -> torch.nn.Module:
    """A checkpoint's model: its architecture built empty, the adapters put back if the run had them, then
    every saved weight loaded (an adapted checkpoint holds base and adapter weights under peft's names)."""
    if is_hf_folder(ckpt):
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(str(ckpt), local_files_only=True, trust_remote_code=False)
        model = HFCausalLM(AutoModelForCausalLM.from_config(config), block_size)
    else:
        model = GPT(read_model_config(ckpt))
    if lora is not None:
        adapt_with_lora(model, lora, trainable_rows)
    load_weights(model, ckpt)
    return model


def adapt_with_lora(model: torch.nn.Module, lora, trainable_rows: list[int] = ()) -> tuple[int, int]:
    """Put LoRA adapters on ``model`` (everything else frozen); ``trainable_rows`` of the embeddings (new
    tokens) keep learning. Returns (trained weights, all weights)."""
    from fidan.training.lora import apply_lora, trainable_share

    apply_lora(model, lora)
    _, total = trainable_share(model)
    if trainable_rows:
        _train_rows(model, list(trainable_rows))
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


def merged_for_saving(model: torch.nn.Module, run: Path) -> None:
    """Fold a run's adapters into its weights and write the run's final model again, as a plain model."""
    from fidan.artifacts.runs import save_weights
    from fidan.training.lora import merge_lora

    extra = {}
    cfg = run / "config.json"
    if cfg.exists():
        extra = {k: v for k, v in json.loads(cfg.read_text(encoding="utf-8")).items() if k.startswith("fidan_")}
    save_weights(merge_lora(model), run, extra)
