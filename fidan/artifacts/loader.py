"""The one model loader: what ``--model`` or ``--init`` names, to (model, tokenizer, kind).

A source is one of:

- a fidan run folder (or one of its checkpoints): fidan's ``GPT`` and the run's tokenizer;
- a transformers causal-LM folder: wrapped in ``HFCausalLM``, with the folder's fast tokenizer;
- a hub name (``Qwen/Qwen3-0.6B``, ``bert-base-multilingual-cased``): the snapshot in the local Hugging Face
  cache (``HF_HOME``, ``HF_HUB_CACHE``); fetched only when it is not there, ``HF_HUB_OFFLINE`` is not set and a
  hub answers;
- a LoRA adapter folder (``adapter_config.json``, as peft writes it): its base, loaded by these same rules,
  with the adapters put on it and left unmerged.

Load precision (``dtype``), 4-bit NF4 weights (``four_bit``), the device and remote code are decided here,
once, for every command. Nothing is downloaded for a local folder and no remote code runs unless asked for.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fidan.artifacts.adapters import moved_base
from fidan.artifacts.runs import (
    ADAPTER_DIR,
    check_vocab,
    find_tokenizer,
    load_weights,
    read_model_config,
    resolve_model_dir,
)
from fidan.artifacts.tokenizer import TokenizerBundle, load_tokenizer
from fidan.errors import BadInput, FidanError
from fidan.model.gpt import GPT
from fidan.model.hf import DTYPES, is_hf_folder, load_hf_causal_lm
from fidan.model.memory import four_bit_summary, logical_parameters, weight_bytes

LOAD_DTYPES = ("auto", "fp32", "bf16", "fp16")
ADAPTER_CONFIG = "adapter_config.json"
# What a causal LM needs from a hub snapshot: never pickled weights, GGUF or other formats' copies.
HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken", "*.py"]
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class Source:
    """Where a model comes from, before anything is loaded."""

    kind: str  # "fidan", "hf" or "adapter"
    folder: Path  # the run's weights folder, the transformers folder or the adapter folder
    name: str  # what the user passed
    hub: str | None = None  # the hub name, when the folder is a cache snapshot
    base: Source | None = None  # an adapter's base


@dataclass
class Loaded:
    model: torch.nn.Module  # fidan's GPT, or a transformers causal LM in HFCausalLM
    tok: TokenizerBundle
    kind: str  # "fidan" or "hf" (of the base, for an adapter)
    source: Source
    dtype: torch.dtype  # the dtype the weights were loaded in (of the unquantized ones, when 4-bit)
    four_bit: bool = False
    adapter: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """The weights' folder (an adapter's base folder)."""
        return self.source.base.folder if self.source.base is not None else self.source.folder

    def describe(self) -> dict:
        """What config.yaml and the report record about the base: its source, precision and size in memory."""
        return {"source": self.source.hub or str(self.folder.resolve()), "kind": self.kind,
                "dtype": str(self.dtype).removeprefix("torch."), "four_bit": self.four_bit,
                "weight_bytes": weight_bytes(self.model), "parameters": logical_parameters(self.model),
                "four_bit_layers": four_bit_summary(self.model),
                "adapter": str(self.adapter.resolve()) if self.adapter else None}


def looks_like_hub_name(name: str) -> bool:
    """``org/name`` or a bare ``name``: no leading dot or slash, at most one slash."""
    return bool(_HUB_NAME.match(name)) and not name.startswith(".")


def hub_cache_dir() -> Path:
    """The cache huggingface_hub uses, read from the environment at call time (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def from_hub(name: str) -> Path:
    """The local snapshot of a hub model: from the cache, else fetched when allowed and a hub answers."""
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    try:
        return Path(snapshot_download(name, cache_dir=str(cache), local_files_only=True, allow_patterns=HUB_FILES))
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError, or a snapshot without refs)
        pass
    how = (f"fetch it where a hub is reachable (`hf download {name}`, with HF_HOME pointing at the cache to "
           f"copy here) or pass a local model folder")
    if hub_offline():
        raise BadInput(f"{name}: no such folder, and the model is not in the Hugging Face cache ({cache}); "
                       f"HF_HUB_OFFLINE is set, so nothing is fetched: {how}")
    try:
        return Path(snapshot_download(name, cache_dir=str(cache), allow_patterns=HUB_FILES, etag_timeout=10))
    except Exception as e:  # noqa: BLE001 - no network, no such repository, gated...
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise BadInput(f"{name}: no such folder, not in the Hugging Face cache ({cache}), and no hub answered "
                       f"({why}): {how}") from None


def locate(name: str | Path) -> Source:
    """What ``name`` is: a fidan run, a transformers folder, a LoRA adapter folder or a cached hub model."""
    path = Path(name)
    if path.exists():
        if (path / ADAPTER_CONFIG).exists():
            base = _adapter_base(path)
            return Source("adapter", path, str(name), base=base)
        if is_hf_folder(path):
            return Source("hf", path, str(name))
        folder = resolve_model_dir(path)
        if not (folder / "model.safetensors").exists():  # a LoRA run's checkpoint: its adapters over the base
            return locate(folder / ADAPTER_DIR)
        return Source("fidan", folder, str(name))
    if looks_like_hub_name(str(name)):
        folder = from_hub(str(name))
        if (folder / ADAPTER_CONFIG).exists():
            return Source("adapter", folder, str(name), hub=str(name), base=_adapter_base(folder))
        return Source("hf", folder, str(name), hub=str(name))
    raise BadInput(f"model not found: {name}; pass a fidan run folder, a transformers model folder, a LoRA adapter "
                   "folder or a hub name (org/name) in the local Hugging Face cache")


def _adapter_base(folder: Path) -> Source:
    config = _read_json(folder / ADAPTER_CONFIG)
    base = config.get("base_model_name_or_path")
    if not base:
        raise BadInput(f"{folder / ADAPTER_CONFIG} names no base model (base_model_name_or_path); "
                       "set it to the base's folder or hub name")
    candidate = Path(base) if Path(base).is_absolute() or Path(base).exists() else folder / base
    if not candidate.exists():  # a local base that moved together with the run that trained the adapters
        candidate = moved_base(folder, base) or candidate
    source = locate(candidate if candidate.exists() else base)
    if source.kind == "adapter":
        raise BadInput(f"{folder}: its base {base} is itself an adapter; merge that one first")
    return source


def load(name: str | Path, *, tokenizer: str | Path | None = None, device: str = "cpu", dtype: str = "auto",
         four_bit: bool = False, block_size: int | None = None, trust_remote_code: bool = False) -> Loaded:
    """Load ``name`` (see the module notes) on ``device``, in eval mode.

    ``dtype``: for transformers models ``auto`` is the checkpoint's own dtype (as transformers does); fidan runs
    are stored in fp32, which ``auto`` keeps. ``four_bit``: the blocks' linear layers in NF4 (transformers
    models only, CPU or CUDA). ``block_size``: the training window of a transformers model (a fidan run keeps
    its own). ``tokenizer``: another tokenizer folder, whose ids must be the model's (checked).
    """
    if dtype not in LOAD_DTYPES:
        raise BadInput(f"unknown --load-dtype {dtype!r}; choose one of {', '.join(LOAD_DTYPES)}")
    source = name if isinstance(name, Source) else locate(name)
    base = source.base if source.kind == "adapter" else source
    if base.kind == "hf":
        model = load_hf_causal_lm(base.folder, device, block_size, dtype, four_bit, trust_remote_code)
        own = base.folder if (base.folder / "tokenizer.json").exists() else None
        loaded_dtype = model.net.get_input_embeddings().weight.dtype
    else:
        if four_bit:
            raise BadInput(f"{base.name} is a fidan run: 4-bit loading (--qlora) takes a transformers model; "
                           f"export it with `fidan export hf --model {base.name} --out DIR`, or use --lora-r alone")
        cfg = read_model_config(base.folder)
        if block_size is not None and block_size != cfg.block_size:
            raise BadInput(f"--block-size {block_size}: {base.name} was trained with block size {cfg.block_size}; "
                           "leave --block-size out for a fidan model")
        model = GPT(cfg)
        load_weights(model, base.folder)
        loaded_dtype = torch.float32 if dtype == "auto" else DTYPES[dtype]
        model = model.to(device=device, dtype=loaded_dtype)
        try:
            own = find_tokenizer(base.folder)
        except FidanError:
            own = None
    if source.kind == "adapter" and (source.folder / "tokenizer.json").exists():
        own = source.folder
    tok_path = tokenizer or own
    if tok_path is None:
        raise BadInput(f"no tokenizer found with {base.name}; pass --tokenizer")
    tok = load_tokenizer(tok_path)
    loaded = Loaded(model, tok, base.kind, source, loaded_dtype, four_bit)
    if source.kind == "adapter":
        from fidan.artifacts.adapters import load_adapter

        load_adapter(model, source.folder, tok)
        loaded.adapter = source.folder
    check_tokenizer(loaded, own if tokenizer is not None else None)
    model.eval()
    return loaded


def check_tokenizer(loaded: Loaded, own: str | Path | None) -> None:
    """Every token id needs an embedding row; a fidan model's rows are exactly its tokenizer's; a tokenizer
    other than the model's own must give its tokens the same ids (it may add tokens after them)."""
    model, tok, where = loaded.model, loaded.tok, loaded.source.name
    if loaded.kind == "fidan":
        check_vocab(model.config, tok, Path(where))
    elif tok.vocab_size > model.config.vocab_size:
        raise BadInput(f"tokenizer {tok.path} has {tok.vocab_size} tokens but the model in {where} has "
                       f"{model.config.vocab_size} embedding rows; pass the tokenizer the model was trained or "
                       "extended with")
    if own is None or Path(own).resolve() == tok.path.resolve():
        return
    mine = load_tokenizer(own).tokenizer.get_vocab()
    theirs = tok.tokenizer.get_vocab()
    moved = [t for t, i in mine.items() if theirs.get(t) != i]
    if moved:
        raise BadInput(f"tokenizer {tok.path} does not give the tokens of {where}'s own tokenizer the same ids "
                       f"({len(moved)} of {len(mine)} differ, e.g. {moved[0]!r}); the model would read wrong ids: "
                       "use the model's own tokenizer, or one extended from it (`fidan vocab extend`)")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path} ({str(e).splitlines()[0][:120]}); is it a LoRA adapter folder?") from None


def load_model(name: str | Path, tokenizer: str | Path | None = None, device: str = "cpu", dtype: str = "auto",
               **options) -> tuple[torch.nn.Module, TokenizerBundle]:
    """(model, tokenizer) of :func:`load`, for commands that need nothing else."""
    loaded = load(name, tokenizer=tokenizer, device=device, dtype=dtype, **options)
    return loaded.model, loaded.tok


def load_transformers_model(source: Source, family: str, dtype: torch.dtype, device: str = "cpu"):
    """A transformers encoder (with its sequence-classification head, ``family="encoder"``) or encoder-decoder
    (``"seq2seq"``) from a located folder, in ``dtype``, with its tokenizer: for the commands that measure such
    models beside fidan's own (``fidan bench infer``). Local files only; no remote code."""
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

    from fidan.model.hf import quiet_transformers

    quiet_transformers()
    kind = AutoModelForSeq2SeqLM if family == "seq2seq" else AutoModelForSequenceClassification
    try:
        net = kind.from_pretrained(str(source.folder), local_files_only=True, trust_remote_code=False, dtype=dtype)
        tok = AutoTokenizer.from_pretrained(str(source.folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise BadInput(f"--model {source.name}: cannot load it with its tokenizer ({str(e).splitlines()[0][:160]}); "
                       "pass a folder with config.json, weights and tokenizer files") from None
    return net.to(device).eval(), tok
