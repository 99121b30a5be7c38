"""Checkpoints and run folders.

A run folder holds ``config.yaml`` (resolved run settings), ``config.json`` + ``model.safetensors``
(the latest weights), ``tokenizer/`` (a copy, so the run is self-contained), ``metrics.jsonl``,
``plots/`` and ``checkpoints/step-NNNNNN/`` with weights plus optimizer, RNG and data state for an
exact resume. Every checkpoint folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import math
import pickle  # only for its exception type: nothing is unpickled outside torch's weights_only
import re
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_model as load_safetensors_into
from safetensors.torch import save_model

from fidan.artifacts.adapters import restore_adapter, save_adapter
from fidan.artifacts.schema import check, stamp
from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput, FidanError
from fidan.model.gpt import GPTConfig
from fidan.model.hf import HFCausalLM
from fidan.runtime.io import as_os_error, atomic_dir, atomic_write_json, read_json, remove_dir, sha256_file

_STEP_DIR = re.compile(r"^step-(\d{6,})$")
ADAPTER_DIR = "adapter"  # a LoRA run's adapters, unmerged, as a peft folder
ADAPTER_META = "fidan.json"  # the trainer's step and stage, beside them
PLANNED_STEPS = "fidan_planned_steps"  # in config.json: the schedule's length, which a time budget sets as it runs


def save_weights(model: torch.nn.Module, folder: Path, extra: dict | None = None) -> None:
    """``model.safetensors`` + ``config.json`` (model config and fidan metadata).

    A wrapped transformers model is written as a transformers folder (``save_pretrained``), so a run or
    checkpoint of one loads with ``AutoModelForCausalLM`` as it is. A failed write (disk full...) is an
    ``OSError`` whatever library wrote the file.
    """
    try:
        _save_weights(model, folder, extra)
    except Exception as e:
        raise as_os_error(e, folder / "model.safetensors") from None


def _save_weights(model: torch.nn.Module, folder: Path, extra: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(_unwrap(model), "save_folder"):  # a model that knows its own layout (a text classifier)
        _unwrap(model).save_folder(folder, extra)
        return
    lora = getattr(_unwrap(model), "fidan_lora", None)
    if lora is not None:
        # adapters not merged yet (a checkpoint, the best weights): the adapter folder alone, read back over
        # the base loaded again (fidan.training.starting_point.resume_adapted); the frozen base is not copied
        save_adapter(_unwrap(model), folder / ADAPTER_DIR, lora["base"], lora.get("tokenizer"), lora["rows"])
        atomic_write_json(folder / ADAPTER_DIR / ADAPTER_META, extra or {})
        return
    if isinstance(_unwrap(model), HFCausalLM):
        net = _unwrap(model).net
        _drop_quantization(net)
        net.save_pretrained(str(folder))
        config = read_json(folder / "config.json", "model config")
        atomic_write_json(folder / "config.json", {**config, **(extra or {})})
        return
    tmp = folder / ".model.safetensors.tmp"
    save_model(_unwrap(model), str(tmp))
    tmp.replace(folder / "model.safetensors")
    atomic_write_json(folder / "config.json", stamp("model", {"model_type": "fidan-gpt",
                                                              **_unwrap(model).config.to_dict(), **(extra or {})}))


def adapter_meta(folder: Path) -> dict:
    """The ``fidan_*`` values the trainer saved beside a LoRA run's adapters (its step and stage); {} if none."""
    path = Path(folder) / ADAPTER_DIR / ADAPTER_META
    return {k: v for k, v in read_json(path, "adapter record").items() if k.startswith("fidan_")} \
        if path.exists() else {}


def planned_steps(folder: Path) -> int | None:
    """The steps a run's schedule planned, as the trainer recorded them in its ``config.json``."""
    path = Path(folder) / "config.json"
    return read_json(path, "model config").get(PLANNED_STEPS) if path.is_file() else None


def count_weights(folder: Path) -> int | None:
    """Weights in a run's ``model.safetensors`` (from its header alone) or a TF-IDF classifier's coefficients."""
    st = Path(folder) / "model.safetensors"
    if st.is_file():
        try:
            with safe_open(str(st), framework="pt") as f:
                return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 - not a dict
        except Exception:  # noqa: BLE001 - safetensors raises several types for a damaged file
            return None
    if (Path(folder) / "tfidf.npz").is_file():
        import numpy as np

        try:
            with np.load(Path(folder) / "tfidf.npz", allow_pickle=False) as npz:
                return int(npz["coef"].size + npz["intercept"].size)
        except (OSError, ValueError, KeyError):
            return None
    return None


def _drop_quantization(net: torch.nn.Module) -> None:
    """A once-4-bit model whose layers were dequantized (a merged QLoRA run) is saved as an ordinary one."""
    if getattr(net, "is_quantized", False) and not any(type(m).__name__ == "Linear4bit" for m in net.modules()):
        for name in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(net.config, name):
                delattr(net.config, name)
        for name, value in (("is_quantized", False), ("hf_quantizer", None), ("is_loaded_in_4bit", False)):
            if hasattr(net, name):
                setattr(net, name, value)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DistributedDataParallel


def checkpoint_dirs(run: Path) -> list[Path]:
    folder = Path(run) / "checkpoints"
    if not folder.exists():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


CHECKSUMS = "checksums.json"


def _file_sums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != CHECKSUMS}


def save_checkpoint(run: Path, step: int, model: torch.nn.Module, state: dict, keep: int) -> Path:
    """Write ``checkpoints/step-N/`` atomically, with the SHA-256 of every file in it, and keep only the
    newest ``keep`` checkpoints."""
    target = Path(run) / "checkpoints" / f"step-{step:06d}"
    with atomic_dir(target) as tmp:
        save_weights(model, tmp)
        torch.save({**state, "checksummed": True}, tmp / "state.pt")
        atomic_write_json(tmp / CHECKSUMS, _file_sums(tmp))
    for old in checkpoint_dirs(run)[:-keep] if keep > 0 else []:
        remove_dir(old)  # renamed aside first: a kill mid-deletion leaves no half-deleted checkpoint
    return target


def checkpoint_damage(ckpt: Path) -> str | None:
    """What is wrong with a checkpoint (a file missing, cut short or changed since it was saved), or None.
    Checkpoints written before checksums were recorded are taken as they are."""
    sums_file = Path(ckpt) / CHECKSUMS
    if not sums_file.exists():  # a checkpoint from before checksums, or one whose checksums were lost
        try:
            state = torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - missing, cut short, not a torch file...
            return f"state.pt is unreadable ({str(e).splitlines()[0][:80]})"
        return f"{CHECKSUMS} is missing" if isinstance(state, dict) and state.get("checksummed") else None
    try:
        saved = json.loads(sums_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{CHECKSUMS} is unreadable"
    for name, digest in saved.items():
        path = Path(ckpt) / name
        if not path.exists():
            return f"{name} is missing"
        if sha256_file(path) != digest:
            return f"{name} does not match its checksum (cut short or changed)"
    return None


def newest_sound_checkpoint(run: Path, say=print) -> Path | None:
    """The newest checkpoint whose files match their checksums; each damaged newer one is reported."""
    for ckpt in reversed(checkpoint_dirs(run)):
        damage = checkpoint_damage(ckpt)
        if damage is None:
            return ckpt
        say(f"note: checkpoint {ckpt} is damaged ({damage}); trying the one before it")
    return None


def load_checkpoint_state(ckpt: Path) -> dict:
    # weights_only: a checkpoint can hold only tensors and plain values, never code.
    try:
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise BadInput(f"cannot read {ckpt / 'state.pt'}: it is damaged or holds more than tensors and plain values "
                       f"({str(e).splitlines()[0][:120]}); resume from another checkpoint or start again") from None
    check("checkpoint", state, ckpt / "state.pt")
    return state


def read_model_config(folder: Path) -> GPTConfig:
    raw = read_json(folder / "config.json", "model config")
    check("model", raw, folder / "config.json")
    model_keys = set(GPTConfig.__dataclass_fields__)
    return GPTConfig.from_dict({k: v for k, v in raw.items() if k in model_keys})


def resolve_model_dir(path: str | Path) -> Path:
    """A run folder, or one of its checkpoints: the folder that holds ``model.safetensors``."""
    path = Path(path)
    if not path.exists():
        raise FidanError(f"model not found: {path}; pass a run folder made by `fidan pretrain`")
    if (path / "classifier.json").exists() or (path.parent.parent / "classifier.json").exists():
        raise FidanError(f"{path} is a text classifier (`fidan classify`), not a language model; use "
                         "`fidan classify predict` with it, or pass a run made by `fidan pretrain` or `fidan sft`")
    if (path / "model.safetensors").exists() or (path / ADAPTER_DIR / "adapter_config.json").exists():
        return path
    if checkpoint_dirs(path):
        sound = newest_sound_checkpoint(path)
        if sound is not None:
            return sound
        raise FidanError(f"every checkpoint in {path}/checkpoints is damaged; train the run again")
    raise FidanError(f"{path} holds no model.safetensors and no checkpoints; is it a fidan run folder?")


# `fidan export hf` keeps the run's config.yaml under this name, so a tuning stage can read how the exported
# model was trained (its learning rate, optimizer, stage) from the transformers folder alone.
EXPORTED_RECORD = "fidan_config.yaml"


def run_record(folder: Path) -> Path | None:
    """The config.yaml recording how a model was trained: its run's (from the run, a checkpoint or an export's
    copy), or None for a model fidan did not train."""
    folder = Path(folder)
    for candidate in (folder / "config.yaml", folder / EXPORTED_RECORD, folder.parent / "config.yaml",
                      folder.parent.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    return None


def find_tokenizer(model_dir: Path) -> Path:
    for candidate in (model_dir / "tokenizer", model_dir.parent.parent / "tokenizer"):
        if (candidate / "tokenizer.json").exists():
            return candidate
    raise FidanError(f"no tokenizer found next to {model_dir}; pass --tokenizer")


def check_vocab(cfg: GPTConfig, tok: TokenizerBundle, where: Path) -> None:
    if cfg.vocab_size != tok.vocab_size:
        raise FidanError(
            f"checkpoint {where} has a vocabulary of {cfg.vocab_size} tokens but tokenizer {tok.path} has "
            f"{tok.vocab_size}; use the tokenizer the model was trained with"
        )


def load_weights(model: torch.nn.Module, folder: Path, device: str = "cpu") -> None:
    target = _unwrap(model)
    if (Path(folder) / ADAPTER_DIR).exists() and getattr(target, "fidan_lora", None) is not None:
        restore_adapter(target, Path(folder) / ADAPTER_DIR)  # the best weights of a LoRA run
        return
    if hasattr(target, "load_folder"):
        target.load_folder(Path(folder), device)
        return
    target = target.net if isinstance(target, HFCausalLM) else target
    try:
        load_safetensors_into(target, str(Path(folder) / "model.safetensors"), device=device)
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise FidanError(f"cannot load weights from {folder} ({str(e).splitlines()[0][:200]})") from None


RUN_ARTIFACTS = ("config.yaml", "config.json", "model.safetensors", "adapter", "classifier.json", "metrics.jsonl", "checkpoints", "plots", "report.md",
                 "eval", "timings.json", "tensorboard", "metrics.csv", "wandb-run.json", "wandb",
                 "split", "search", "tfidf.json", "tfidf.npz", "state.json", "trained.safetensors")  # (the last six: classifiers)


def is_run(folder: Path) -> bool:
    return any((Path(folder) / name).exists() for name in RUN_ARTIFACTS)


def clear_run(folder: Path) -> None:
    """Remove a run's own artifacts (not other files a user keeps in the folder)."""
    for name in RUN_ARTIFACTS:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def copy_tokenizer(tok: TokenizerBundle, run: Path) -> None:
    dest = Path(run) / "tokenizer"
    if dest.resolve() == tok.path.resolve():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        src = tok.path / name
        if src.exists():
            shutil.copy2(src, dest / name)


def read_metrics(run: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl; a line cut short by a crash is skipped."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
