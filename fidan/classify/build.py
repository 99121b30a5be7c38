"""From ``--model`` to a classifier and the codec that turns its texts into ids.

``--model`` is ``scratch`` (a small transformer trained on the task alone), a fidan run (pretrained or
tuned), a local transformers folder (a causal LM gets a pooled head like a fidan run; an encoder goes
through ``AutoModelForSequenceClassification``) or a hub name (downloaded when a hub is reachable).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn

from fidan.artifacts.loader import from_hub, load, locate, looks_like_hub_name
from fidan.artifacts.tokenizer import EOS_TOKEN, TokenizerBundle, load_tokenizer
from fidan.classify.models import (
    BundleCodec,
    ClassifierSpec,
    EncoderClassifier,
    HFCodec,
    PooledClassifier,
    backbone_spec,
    empty_classifier,
)
from fidan.errors import BadInput, FidanError, MissingExtra
from fidan.model.gpt import GPT, GPTConfig
from fidan.model.hf import is_hf_folder, quiet_transformers

TOKENIZER_DIR = "tokenizer"


def model_kind(model: str) -> str:
    """``scratch``, ``tfidf``, ``fidan`` (a fidan run or a transformers causal LM) or ``encoder`` (a transformers
    encoder); a hub name (``dbmdz/bert-base-turkish-cased``, ``bert-base-multilingual-cased``) is read from the
    local Hugging Face cache, fetched only when it is not there and a hub answers (fidan.artifacts.loader)."""
    if model in ("scratch", "tfidf"):
        return model
    path = Path(model)
    if not path.exists():
        if not looks_like_hub_name(model):
            raise BadInput(f"--model {model}: no such folder; pass tfidf, scratch, a fidan run, a transformers "
                           "folder or a hub name such as dbmdz/bert-base-turkish-cased")
        path = from_hub(model)
    if not is_hf_folder(path):
        return "fidan"
    archs = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    return "fidan" if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) else "encoder"


def train_scratch_tokenizer(texts: list[str], vocab_size: int, out: Path) -> TokenizerBundle:
    """A byte-level BPE learned from the training texts only (any text still encodes: bytes are the base)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN,
                            clean_up_tokenization_spaces=False).save_pretrained(str(out))
    return load_tokenizer(out)


def scratch_config(vocab_size: int, max_length: int, layers: int, width: int, dropout: float) -> GPTConfig:
    """The lesson's small transformer: learned positions, GELU, LayerNorm, heads of 32 dimensions."""
    return GPTConfig(vocab_size=vocab_size, block_size=max_length, n_layer=layers, n_head=max(1, width // 32),
                     n_embd=width, dropout=dropout, bias=True)


def new_classifier(model: str, kind: str, spec: ClassifierSpec, run: Path, train_texts: list[str], *,
                   tokenizer: str | None, vocab_size: int, layers: int, width: int, dropout: float | None,
                   load_dtype: str = "auto", four_bit: bool = False) -> tuple[nn.Module, object]:
    """A fresh classifier for ``--model`` and its codec; its tokenizer is written to ``run/tokenizer``."""
    tok_dir = run / TOKENIZER_DIR
    if kind == "scratch":
        if tokenizer:
            tok = load_tokenizer(tokenizer)
            tok.tokenizer.save(str(_fresh(tok_dir) / "tokenizer.json"))
            for name in ("tokenizer_config.json", "special_tokens_map.json"):
                if (tok.path / name).exists():
                    (tok_dir / name).write_bytes((tok.path / name).read_bytes())
            tok = load_tokenizer(tok_dir)
        else:
            tok = train_scratch_tokenizer(train_texts, vocab_size, _fresh(tok_dir))
        cfg = scratch_config(tok.vocab_size, spec.max_length, layers, width, 0.1 if dropout is None else dropout)
        backbone = GPT(cfg)
        spec.backbone = backbone_spec(backbone)
        return PooledClassifier(backbone, spec), BundleCodec(tok)
    if kind == "fidan":
        loaded = load(model, dtype=load_dtype, four_bit=four_bit)
        backbone, tok = loaded.model, loaded.tok
        if loaded.kind == "fidan" and dropout is not None and dropout != backbone.config.dropout:
            fresh = GPT(GPTConfig.from_dict({**backbone.config.to_dict(), "dropout": dropout}))
            fresh.load_state_dict(backbone.state_dict())
            backbone = fresh
        if spec.max_length > backbone.config.block_size:
            print(f"note: --max-length {spec.max_length} is longer than the backbone's block size; texts are cut "
                  f"to {backbone.config.block_size} tokens")
            spec.max_length = backbone.config.block_size
        backbone.train()
        spec.backbone = backbone_spec(backbone)
        tok.tokenizer.save(str(_fresh(tok_dir) / "tokenizer.json"))
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (tok.path / name).exists():
                (tok_dir / name).write_bytes((tok.path / name).read_bytes())
        return PooledClassifier(backbone, spec), BundleCodec(load_tokenizer(tok_dir))
    # a transformers encoder, local or from the hub
    net, hf_tok = _load_encoder(model, spec.labels)
    spec.backbone = {"type": "hf-encoder", "model_type": net.config.model_type}
    hf_tok.save_pretrained(str(_fresh(tok_dir)))
    return EncoderClassifier(net, spec), HFCodec(hf_tok)


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _load_encoder(model: str, labels: list[str]):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    quiet_transformers()
    ids = {name: i for i, name in enumerate(labels)}
    folder = locate(model).folder  # a local folder, or the hub model's snapshot in the cache
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        net = AutoModelForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False, num_labels=len(labels),
            id2label={i: n for n, i in ids.items()}, label2id=ids, ignore_mismatched_sizes=True)
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(f"--model {model}: cannot read {folder} as a transformers encoder with a tokenizer "
                       f"({str(e).splitlines()[0][:160]}); pass a folder with config.json, weights and "
                       "tokenizer files") from None
    if not getattr(tok, "is_fast", False):
        raise MissingExtra(f"--model {model}: its tokenizer has no fast (tokenizer.json) version; "
                           "install tokenizers/sentencepiece support or convert it")
    return net, tok


def load_classifier(folder: str | Path, device: str = "cpu") -> tuple[nn.Module, object, ClassifierSpec]:
    """A trained neural classifier from its run folder (or a checkpoint of it), its codec and its spec."""
    folder = Path(folder)
    spec = ClassifierSpec.read(folder)
    if spec.kind == "tfidf":
        raise FidanError(f"{folder} is a TF-IDF classifier; it is loaded by fidan.classify.tfidf")
    root = folder if (folder / TOKENIZER_DIR).exists() else folder.parent.parent
    model = empty_classifier(spec, folder)
    model.load_folder(folder, device)
    model.to(device).eval()
    return model, codec_for(spec, root / TOKENIZER_DIR), spec


def codec_for(spec: ClassifierSpec, tok_dir: Path):
    if spec.backbone.get("type") == "hf-encoder":
        from transformers import AutoTokenizer

        quiet_transformers()
        return HFCodec(AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True, trust_remote_code=False))
    return BundleCodec(load_tokenizer(tok_dir))
