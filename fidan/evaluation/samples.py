"""`fidan eval samples`: generations for a fixed list of prompts with fixed seeds, saved for the report.

Prompt i is sampled with seed ``seed + i``, so the same model gives the same samples every time and two
checkpoints can be compared on the same draws.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from fidan.artifacts.results import save_result
from fidan.errors import FidanError
from fidan.evaluation.lm import LanguageModel, load_lm, result_path
from fidan.inference import Engine, Sampling, check_sampling
from fidan.runtime.console import speaks
from fidan.runtime.device import pick_device
from fidan.runtime.io import open_text, require_path


def read_prompts(path: str) -> list[str]:
    """One prompt per line of a text file, or a ``prompt`` field per line of a JSONL file."""
    file = require_path(path, "prompts file", "one prompt per line (.txt) or {\"prompt\": ...} per line (.jsonl)")
    prompts = []
    try:
        with open_text(file) as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                if file.name.removesuffix(".gz").endswith(".jsonl"):
                    try:
                        line = json.loads(line)["prompt"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise FidanError(f"{file}:{n}: expected a JSON object with a \"prompt\" field") from None
                prompts.append(line)
    except UnicodeDecodeError as e:
        raise FidanError(f"{file} is not UTF-8 ({e.reason} at byte {e.start}); convert it with iconv") from None
    return prompts


def sample(lm: LanguageModel, prompt: str, max_new_tokens: int, sampling: Sampling, seed: int) -> str:
    """One continuation through the inference engine; stops at the end-of-text token.

    Prompts run one at a time, each with its own seeded generator: a sample then never depends on which
    other prompts were in the file, and equals `fidan generate` with the same seed.
    """
    ids = lm.encode(prompt) if prompt else []
    if lm.start_id is not None and (lm.kind == "hf" or not ids):
        # HF models expect their BOS first; fidan models (like `fidan generate`) only need it for an empty prompt.
        ids = [lm.start_id] + ids
    if not ids:
        raise FidanError("an empty prompt needs a model with a start token")
    gen = torch.Generator(device=lm.device).manual_seed(seed)
    engine = Engine(lm.net, decode=lm.decode, window=lm.block_size)
    return prompt + engine.generate([ids], max_new_tokens, sampling, gen, stop_ids=lm.stop_ids)[0].text


def eval_samples(
    model: str,
    prompts: str | None = None,
    prompt: list[str] | None = None,
    max_new_tokens: int = 60,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = 0.95,
    repetition_penalty: float = 1.0,
    seed: int = 0,
    tokenizer: str | None = None,
    device: str = "auto",
    out: str | None = None,
    force: bool = False,
    quiet: bool | None = None,
) -> dict:
    """Generations for a fixed prompt list with fixed seeds (prompt i uses seed + i).

    Args:
        model: a fidan run or checkpoint folder, a transformers causal-LM folder, a cached hub name or a LoRA
            adapter folder.
        prompts: a file with one prompt per line (.txt) or {"prompt": ...} per line (.jsonl).
        prompt: a prompt given directly (repeatable; added after those of --prompts).
        max_new_tokens: how many tokens to generate at most per prompt.
        temperature: 0 is greedy; higher is more random.
        top_k: sample only among the k most likely tokens (0 disables).
        top_p: nucleus sampling threshold (1 disables).
        repetition_penalty: above 1, tokens already in the text become less likely (1 disables).
        seed: seed of the first prompt; prompt i uses seed + i.
        tokenizer: a tokenizer folder (default: the model's own).
        device: auto, cpu or cuda.
        out: where to write the result JSON (default: MODEL/eval/samples-<prompts name>.json).
        force: replace an existing result file.
        quiet: print nothing (default: the command prints the samples; a call from Python only returns
            them, unless quiet=False).
    """
    started = time.time()
    sampling = check_sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty)
    texts = (read_prompts(prompts) if prompts else []) + list(prompt or [])
    if not texts:
        raise FidanError("no prompts: pass --prompts FILE or --prompt TEXT")
    name = Path(prompts).name.split(".")[0] if prompts else "prompts"
    path = result_path(model, "samples", name, out, force)
    lm = load_lm(model, tokenizer, pick_device(device))
    samples = []
    talk = speaks(quiet)
    for i, p in enumerate(texts):
        text = sample(lm, p, max_new_tokens, sampling, seed + i)
        samples.append({"prompt": p, "seed": seed + i, "text": text})
        if talk:
            print(f"  » {text!r}")
    result = {"task": "samples", "model": str(model), "model_kind": lm.kind, "prompts": prompts,
              "max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k, "top_p": top_p,
              "repetition_penalty": repetition_penalty, "samples": samples}
    result = save_result(path, result, started)
    if talk:
        print(f"{len(samples)} samples → {path}")
    return result
