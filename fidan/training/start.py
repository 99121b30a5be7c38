"""Where training starts from: a fidan run, or any local transformers causal LM (continued pretraining,
tuning), and which of its weights train (all, only the new embedding rows, or LoRA adapters)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from fidan.artifacts.runs import load_weights, read_model_config, resolve_model_dir
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
    tok = load_tokenizer(tokenizer) if tokenizer else _fidan_tokenizer(folder)
    check_rows(model, tok, path)
    return Start(model.to(device), tok, "fidan", folder)


def _fidan_tokenizer(folder: Path) -> TokenizerBundle:
    for candidate in (folder / "tokenizer", folder.parent.parent / "tokenizer"):
        if (candidate / "tokenizer.json").exists():
            return load_tokenizer(candidate)
    raise FidanError(f"no tokenizer next to {folder}; pass --tokenizer")


def check_rows(model: torch.nn.Module, tok: TokenizerBundle, where: Path) -> None:
    """Every token id of the tokenizer must have an embedding row (more rows than tokens is padding)."""
    rows = model.config.vocab_size
    if tok.vocab_size > rows:
        raise FidanError(f"tokenizer {tok.path} has {tok.vocab_size} tokens but the model in {where} has "
                         f"{rows} embedding rows; pass the tokenizer the model was trained or extended with")


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
    embeddings = _vocab_matrices(model)
    for p in model.parameters():
        p.requires_grad_(False)
    rows = torch.zeros(model.config.vocab_size, 1)
    rows[torch.tensor(ids)] = 1.0
    for weight in embeddings:
        weight.requires_grad_(True)
        mask = rows.to(weight.device, weight.dtype)
        weight.register_hook(lambda g, m=mask: g * m)
    return len(ids) * sum(w.size(1) for w in embeddings)


def _vocab_matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    if isinstance(model, HFCausalLM):
        found = [model.net.get_input_embeddings().weight, model.net.get_output_embeddings().weight]
    else:
        found = [model.wte.weight, model.lm_head.weight]
    unique: dict[int, torch.nn.Parameter] = {}
    for w in found:
        unique.setdefault(id(w), w)  # tied: one matrix
    return list(unique.values())
