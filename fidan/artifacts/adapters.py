"""LoRA adapter folders, as peft writes them: ``adapter_config.json`` + ``adapter_model.safetensors``.

A run trained with ``--lora-r`` or ``--qlora`` keeps its adapters unmerged in ``RUN/adapter/`` beside the
merged model. ``peft.PeftModel.from_pretrained(base, RUN/adapter)`` loads the folder as it is, and every
fidan command takes it as ``--model`` (the base is found from ``base_model_name_or_path``, or beside
the run when the two moved together; the adapters stay unmerged).

Tuning that added tokens (fidan's chat markers on a base without them) also trained those tokens'
embedding rows: the folder then carries its tokenizer and ``new_rows.safetensors`` (the rows, by id), which
fidan puts back after growing the base's embeddings. peft alone does not read that file: with it, resize
the base's embeddings to the tokenizer and copy the rows, or use the run's merged model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput
from fidan.model.hf import HFCausalLM
from fidan.model.lora import peft_target
from fidan.model.new_rows import grow_embeddings
from fidan.runtime.io import atomic_dir

PEFT_PREFIX = "base_model.model."  # the key prefix PeftModel gives the wrapped model's modules
NEW_ROWS = "new_rows.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def _peft():
    from fidan.model.lora import _peft as load

    return load()


def save_adapter(model: torch.nn.Module, folder: Path, base: str, tokenizer: Path | None = None,
                 new_rows: list[int] = ()) -> Path:
    """Write ``model``'s adapters as a peft folder over ``base``; with ``new_rows`` (trained embedding rows) also
    those rows and the ``tokenizer`` folder's files."""
    peft = _peft()
    net = peft_target(model)
    config = net.peft_config["default"]
    config.base_model_name_or_path = base
    config.task_type = "CAUSAL_LM" if isinstance(model, HFCausalLM) else None
    state = peft.get_peft_model_state_dict(net, save_embedding_layers=False)
    with atomic_dir(Path(folder)) as tmp:
        config.save_pretrained(str(tmp))
        save_file({PEFT_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in state.items()},
                  str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        if new_rows:
            ids = torch.tensor(sorted(new_rows))
            rows = {f"{name}": w.detach()[ids].to("cpu").contiguous() for name, w in _vocab_weights(model).items()}
            save_file({"ids": ids, **rows}, str(tmp / NEW_ROWS))
        if tokenizer is not None and new_rows:  # the tokenizer the new rows belong to
            for name in TOKENIZER_FILES:
                if (Path(tokenizer) / name).exists():
                    shutil.copy2(Path(tokenizer) / name, tmp / name)
    return Path(folder)


def load_adapter(model: torch.nn.Module, folder: Path, tok: TokenizerBundle) -> None:
    """Put the adapters of ``folder`` on ``model`` (unmerged), after growing its embeddings to ``tok`` and
    restoring the trained rows when the folder has them."""
    peft = _peft()
    folder = Path(folder)
    net = peft_target(model)
    try:
        raw = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        if raw.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"a {raw['peft_type']} adapter, not LoRA")
        names = set(peft.LoraConfig.__dataclass_fields__)
        config = peft.LoraConfig(**{k: v for k, v in raw.items() if k in names})
        state = load_file(str(folder / "adapter_model.safetensors"))
    except (OSError, ValueError, TypeError, json.JSONDecodeError) as e:
        raise BadInput(f"cannot read the LoRA adapter in {folder} ({str(e).splitlines()[0][:160]})") from None
    if (folder / NEW_ROWS).exists():
        rows = load_file(str(folder / NEW_ROWS))
        grow_embeddings(model, max(model.config.vocab_size, tok.vocab_size))
        ids = rows.pop("ids")
        weights = _vocab_weights(model)
        with torch.no_grad():
            for name, value in rows.items():
                if name in weights:
                    weights[name][ids] = value.to(weights[name].dtype)
    config.inference_mode = True
    peft.inject_adapter_in_model(config, net)
    for name, p in net.named_parameters():  # adapters in fp32, as trained (peft gives them the base's dtype)
        if "lora_" in name and p.is_floating_point():
            p.data = p.data.float()
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in state.items()}
    result = peft.set_peft_model_state_dict(net, state)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise BadInput(f"the adapter in {folder} does not fit its base ({len(unexpected)} weights name no layer, "
                       f"e.g. {unexpected[0]}); is base_model_name_or_path the model it was trained on?")
    for p in model.parameters():
        p.requires_grad_(False)


def restore_adapter(model: torch.nn.Module, folder: Path) -> None:
    """Load the adapter weights (and trained rows) of ``folder`` into the same adapters already on ``model``."""
    net = peft_target(model)
    state = {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(Path(folder) / "adapter_model.safetensors")).items()}
    _peft().set_peft_model_state_dict(net, state)
    if (Path(folder) / NEW_ROWS).exists():
        rows = load_file(str(Path(folder) / NEW_ROWS))
        ids = rows.pop("ids")
        weights = _vocab_weights(model)
        with torch.no_grad():
            for name, value in rows.items():
                weights[name][ids] = value.to(weights[name].dtype)


def adapter_base(folder: Path) -> str | None:
    """The base that ``folder``'s adapter_config.json names, where it is now (see ``moved_base``)."""
    path = Path(folder) / "adapter_config.json"
    base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path") if path.exists() else None
    moved = moved_base(Path(folder), base) if base else None
    return str(moved.resolve()) if moved is not None else base


def moved_base(folder: Path, base: str) -> Path | None:
    """A local base that is not where ``folder`` records it, found where it moved together with the run that
    trained the adapters: a run writes the base's absolute path here and its own in its config.yaml
    (``args.out``), so the base's place beside the run then gives its place now. None when the base is
    where recorded, is not a local path, or is not found."""
    if not Path(base).is_absolute() or Path(base).exists():
        return None
    for run in (folder.parent, folder.parent.parent.parent):  # RUN/adapter, RUN/checkpoints/step-N/adapter
        then = _run_out(run / "config.yaml")
        if then is not None:
            now = Path(os.path.normpath(run / os.path.relpath(base, then)))
            if now.exists():
                return now
    return None


def _run_out(config: Path) -> str | None:
    """Where a run's config.yaml says the run was written (its ``out``, flat or in a group of ``args``)."""
    try:
        args = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("args") or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None
    if not isinstance(args, dict):
        return None
    found = [args.get("out"), *(g.get("out") for g in args.values() if isinstance(g, dict))]
    return next((o for o in found if isinstance(o, str) and Path(o).is_absolute()), None)


def _vocab_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(model, HFCausalLM):
        found = {"embed": model.net.get_input_embeddings().weight, "head": model.net.get_output_embeddings().weight}
    else:
        found = {"embed": model.wte.weight, "head": model.lm_head.weight}
    if found["head"] is found["embed"]:
        del found["head"]
    return found
