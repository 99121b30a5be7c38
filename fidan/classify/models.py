"""The neural classifiers and how texts become their inputs.

- ``PooledClassifier``: a causal language model (a fidan GPT, pretrained or new, or a transformers causal
  LM) whose final hidden states are pooled (mean over the text, or the last token) into a linear head.
  Inputs are right-padded, so under causal attention no text token ever sees padding.
- ``EncoderClassifier``: a transformers encoder through ``AutoModelForSequenceClassification`` (BERTurk,
  XLM-R, mBERT...), its own head and pooling.

Either one saves itself into a folder: ``classifier.json`` (what it is: kind, labels, pooling, length,
backbone config) beside ``model.safetensors``. An encoder's folder is also a transformers folder
(``save_pretrained``, with ``id2label``), usable without fidan. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file, save_model
from safetensors.torch import load_model as load_safetensors_into

from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput, FidanError
from fidan.model.gpt import GPT, GPTConfig
from fidan.model.hf import HFCausalLM, quiet_transformers
from fidan.runtime.io import atomic_write_json

SPEC_FILE = "classifier.json"
FORMAT = "fidan-classifier"
POOLINGS = ("mean", "last")
TRUNCATIONS = ("head", "tail")


@dataclass
class ClassifierSpec:
    """Everything needed to rebuild a classifier around its saved weights."""

    kind: str  # "fidan" (a pretrained fidan or transformers causal LM), "scratch", "encoder" or "tfidf"
    labels: list[str]
    max_length: int = 128
    truncation: str = "head"  # keep the head (start) or the tail (end) of a long text
    pooling: str = "mean"
    head_dropout: float = 0.1
    backbone: dict = field(default_factory=dict)  # {"type": "fidan-gpt" | "hf-causal" | "hf-encoder", "config": {...}}
    base: str | None = None  # where the backbone came from
    four_bit: bool = False  # a 4-bit (QLoRA) backbone: checkpoints hold what trains, over the base loaded again
    text_column: str = "text"  # the fields the training data used: eval and predict read the same by default
    label_column: str = "label"

    def to_dict(self) -> dict:
        return {"artifact": FORMAT, "artifact_version": 1, **asdict(self)}

    @classmethod
    def read(cls, folder: Path) -> ClassifierSpec:
        path = Path(folder) / SPEC_FILE
        if not path.exists():
            raise BadInput(f"{folder} is not a text classifier (no {SPEC_FILE}); pass a run folder made by "
                           "`fidan classify train`")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"{path} is not valid JSON ({e}); train the classifier again") from None
        if raw.get("artifact") != FORMAT or raw.get("artifact_version", 1) > 1:
            raise BadInput(f"{path} is not a fidan classifier of a version this fidan reads; upgrade fidan")
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in names})

    def write(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / SPEC_FILE, self.to_dict())


# --- texts to ids ------------------------------------------------------------------------------------


def cut(ids: list[int], length: int, truncation: str) -> list[int]:
    return ids[:length] if truncation == "head" else ids[len(ids) - length:] if len(ids) > length else ids


class BundleCodec:
    """A tokenizer.json tokenizer (fidan's, or a causal LM's): the text's tokens then end-of-text, which
    is the token last-token pooling reads (it has seen the whole text)."""

    def __init__(self, tok: TokenizerBundle):
        self.tok = tok
        self.pad_id = tok.eos_id

    def encode(self, texts: list[str], max_length: int, truncation: str) -> list[list[int]]:
        out = []
        for enc in self.tok.tokenizer.encode_batch(texts, add_special_tokens=False):
            out.append(cut(enc.ids, max_length - 1, truncation) + [self.pad_id])
        return out


class HFCodec:
    """A transformers tokenizer with its own special tokens ([CLS] ... [SEP]); truncation cuts the text's
    tokens (from the end for ``head``, from the start for ``tail``) and keeps the special tokens."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    def encode(self, texts: list[str], max_length: int, truncation: str) -> list[list[int]]:
        self.tokenizer.truncation_side = "right" if truncation == "head" else "left"
        return self.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def pad_batch(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and the attention mask (1 on text tokens), (B, T) each; T is the longest row."""
    T = max(len(r) for r in rows)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        x[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return x, mask


# --- models ------------------------------------------------------------------------------------------


class _Classifier(nn.Module):
    """What every neural classifier shares: counting, and saving itself with its spec."""

    spec: ClassifierSpec

    def num_params(self, non_embedding: bool = False) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        return _flops_per_token(self)

    def save_folder(self, folder: Path, extra: dict | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._write_weights(folder)
        self.spec.write(folder)
        if extra:
            atomic_write_json(folder / "state.json", extra)

    def load_folder(self, folder: Path, device: str = "cpu") -> None:
        if (Path(folder) / TRAINED_ONLY).exists():
            _load_trained(self, Path(folder) / TRAINED_ONLY)
            return
        _load(self._weights_module(), folder, device)

    def _weights_module(self) -> nn.Module:
        return self

    def _write_weights(self, folder: Path) -> None:
        if any(type(m).__name__ == "Linear4bit" for m in self.modules()):
            # a 4-bit base is not copied into every checkpoint: it is loaded again, and what trains goes on it
            trained = {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}
            save_file(trained, str(folder / TRAINED_ONLY))
            return
        tmp = folder / ".model.safetensors.tmp"
        save_model(self, str(tmp))
        tmp.replace(folder / "model.safetensors")
        (folder / TRAINED_ONLY).unlink(missing_ok=True)  # the 4-bit run's partial weights, now merged in


class PooledClassifier(_Classifier):
    """A causal LM's pooled final hidden states → dropout → linear head."""

    def __init__(self, backbone: GPT | HFCausalLM, spec: ClassifierSpec):
        super().__init__()
        self.backbone, self.spec = backbone, spec
        self.config = backbone.config  # block_size, vocab_size... for code that reads a model's config
        hf = backbone.net.config if isinstance(backbone, HFCausalLM) else None
        width = (getattr(hf, "hidden_size", None) or hf.n_embd) if hf is not None else backbone.config.n_embd
        self.drop = nn.Dropout(spec.head_dropout)
        self.head = nn.Linear(width, len(spec.labels))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if isinstance(self.backbone, HFCausalLM):
            return self.backbone.net.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        return self.backbone.hidden_states(ids)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.features(ids, mask)
        if self.spec.pooling == "last":
            last = mask.sum(1) - 1
            pooled = h[torch.arange(h.size(0), device=h.device), last]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1)
        return self.head(self.drop(pooled.float()))


class EncoderClassifier(_Classifier):
    """``AutoModelForSequenceClassification`` with fidan's (ids, mask) → logits signature."""

    def __init__(self, net: nn.Module, spec: ClassifierSpec):
        super().__init__()
        self.net, self.spec = net, spec
        limit = getattr(net.config, "max_position_embeddings", None) or spec.max_length
        self.config = _EncoderConfig(min(limit, spec.max_length), net.config.vocab_size)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=ids, attention_mask=mask).logits.float()

    def _weights_module(self) -> nn.Module:
        return self.net

    def _write_weights(self, folder: Path) -> None:
        self.net.save_pretrained(str(folder))  # a transformers folder: config.json with id2label + weights


@dataclass
class _EncoderConfig:
    block_size: int
    vocab_size: int
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


TRAINED_ONLY = "trained.safetensors"


def _load_trained(model: nn.Module, path: Path) -> None:
    saved = load_file(str(path))
    params = dict(model.named_parameters())
    missing = [n for n in saved if n not in params]
    if missing:
        raise FidanError(f"{path} does not fit this classifier ({len(missing)} tensors name nothing, e.g. "
                         f"{missing[0]}); was it trained with other LoRA settings?")
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


def _load(module: nn.Module, folder: Path, device: str) -> None:
    try:
        load_safetensors_into(module, str(Path(folder) / "model.safetensors"), device=device)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise FidanError(f"cannot load classifier weights from {folder} ({str(e).splitlines()[0][:200]}); "
                         "is it a checkpoint of this classifier?") from None


def _flops_per_token(model: nn.Module) -> float:
    """Training FLOPs per token, roughly: 6 per weight of every linear layer a token passes through (a
    causal LM's unused output head excluded)."""
    n = sum(m.weight.numel() for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and not name.endswith("lm_head"))
    return 6.0 * n


# --- building -----------------------------------------------------------------------------------------


def backbone_spec(backbone: GPT | HFCausalLM) -> dict:
    if isinstance(backbone, HFCausalLM):
        config = {k: v for k, v in backbone.net.config.to_dict().items()  # the architecture, not how it was loaded
                  if k not in ("quantization_config", "_pre_quantization_dtype")}
        return {"type": "hf-causal", "config": config, "block_size": backbone.config.block_size}
    return {"type": "fidan-gpt", "config": backbone.config.to_dict()}


def empty_backbone(backbone: dict) -> GPT | HFCausalLM:
    """The backbone a spec describes, with untrained weights (a checkpoint's are loaded over them)."""
    if backbone["type"] == "fidan-gpt":
        return GPT(GPTConfig.from_dict(backbone["config"]))
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_transformers()
    config = dict(backbone["config"])
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    return HFCausalLM(AutoModelForCausalLM.from_config(config), backbone.get("block_size"))


def empty_classifier(spec: ClassifierSpec, folder: Path | None = None) -> nn.Module:
    """A classifier of ``spec``'s architecture; an encoder reads its architecture from ``folder``."""
    if spec.backbone.get("type") == "hf-encoder":
        from transformers import AutoConfig, AutoModelForSequenceClassification

        quiet_transformers()
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        return EncoderClassifier(AutoModelForSequenceClassification.from_config(config), spec)
    return PooledClassifier(empty_backbone(spec.backbone), spec)


