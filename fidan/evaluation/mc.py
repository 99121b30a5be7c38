"""`fidan eval mc`: multiple choice by likelihood.

Each record has a ``context``, a list of ``choices`` and the index (``answer``) of the right one. Each
choice is scored by the log-likelihood of its tokens given the context: summed (favours short choices)
and normalized by the choice's UTF-8 bytes (the same for every tokenizer). The prediction is the
highest-scoring choice (the first one on a tie); accuracy under both scores is reported with the chance
level, the mean of 1 / number of choices.

Chance is not what an untrained model scores: random weights still prefer some token sequences (on
`tr-harmony` an untrained model lands above chance), so the result also holds the accuracy of the same
architecture with fresh random weights, initialised as training initialises it: the floor to read the
model against.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from fidan.artifacts.results import save_result
from fidan.artifacts.run_config import RunConfig
from fidan.errors import BadInput, FidanError
from fidan.evaluation.lm import LanguageModel, load_lm, pad_batch, result_path
from fidan.evaluation.suite import SETS, SUITE, load_set
from fidan.runtime.console import speaks
from fidan.runtime.device import pick_device
from fidan.runtime.io import open_text, require_path

# The Turkish suite's sets (fidan/evaluation/suite/), built and cached on first use.
BUILTIN = {name: (lambda name=name: load_set(name)["items"]) for name in SETS}


def read_mc(data: str) -> list[dict]:
    """Records from a JSONL file (or a built-in set's name), validated one line at a time."""
    if data in BUILTIN:
        return BUILTIN[data]()
    path = require_path(data, "multiple-choice file",
                        f"pass a JSONL file, a built-in set ({', '.join(BUILTIN)}) or {SUITE}; --list shows the sets")
    items = []
    try:
        with open_text(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise FidanError(f"{path}:{n}: not valid JSON ({e.msg}); fix the line") from None
                items.append(_check_record(rec, f"{path}:{n}"))
    except UnicodeDecodeError as e:
        raise FidanError(f"{path} is not UTF-8 ({e.reason} at byte {e.start}); convert it with iconv") from None
    if not items:
        raise FidanError(f"{path} holds no records; each line needs context, choices and answer")
    return items


def _check_record(rec, where: str) -> dict:
    need = 'each line needs {"context": str, "choices": [str, ...], "answer": index}'
    if not isinstance(rec, dict) or not {"context", "choices", "answer"} <= rec.keys():
        raise FidanError(f"{where}: {need}")
    ctx, choices, answer = rec["context"], rec["choices"], rec["answer"]
    if not isinstance(ctx, str) or not isinstance(choices, list) or len(choices) < 2 \
            or not all(isinstance(c, str) and c for c in choices):
        raise FidanError(f"{where}: context must be a string and choices a list of at least 2 non-empty strings")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise FidanError(f"{where}: answer must be an index between 0 and {len(choices) - 1}, got {answer!r}")
    return rec


def continuation_ids(lm: LanguageModel, context: str, choice: str) -> tuple[list[int], list[int]]:
    """Tokens of the context and of the choice as they fall when the two are written together.

    Encoding the joined text keeps the tokenization the model saw in training; when the context's own
    tokens are not a prefix of it (a merge across the seam), the choice is encoded on its own.
    """
    ctx = lm.encode(context) if context else []
    whole = lm.encode(context + choice)
    if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
        return ctx, whole[len(ctx):]
    return ctx, lm.encode(choice)


def choice_logprobs(lm: LanguageModel, items: list[dict], batch_size: int = 16) -> list[list[float]]:
    """Summed log-likelihood of every choice of every item, in nats."""
    rows, owners = [], []
    for i, item in enumerate(items):
        for j, choice in enumerate(item["choices"]):
            ctx, cont = continuation_ids(lm, item["context"], choice)
            seq = ([lm.start_id] if lm.start_id is not None else []) + ctx + cont
            if len(seq) - len(cont) < 1:
                raise FidanError(f"item {i}: an empty context needs a model with a start token")
            if len(cont) > lm.block_size:
                raise FidanError(f"item {i}, choice {j}: {len(cont)} tokens is longer than the window {lm.block_size}")
            seq = seq[-(lm.block_size + 1):]  # keep the end: a long context loses its beginning
            rows.append((seq[:-1], seq[1:], len(seq) - 1 - len(cont)))
            owners.append((i, j))
    scores = [[0.0] * len(item["choices"]) for item in items]
    for b in range(0, len(rows), batch_size):
        chunk = rows[b:b + batch_size]
        x, y = pad_batch([(xs, ys) for xs, ys, _ in chunk])
        for k, (_, _, first) in enumerate(chunk):
            y[k, :first] = -100  # the context is given, not scored
        nll = lm.nll(x, y).sum(dim=1)
        for k in range(len(chunk)):
            i, j = owners[b + k]
            scores[i][j] = -float(nll[k])
    return scores


def mc_accuracy(items: list[dict], scores: list[list[float]]) -> dict:
    """Accuracy under summed and byte-normalized log-likelihood, and the chance level."""
    right_sum = right_norm = 0
    preds = []
    for item, s in zip(items, scores, strict=True):
        norm = [v / len(c.encode("utf-8")) for v, c in zip(s, item["choices"], strict=True)]
        p_sum = max(range(len(s)), key=lambda j: (s[j], -j))
        p_norm = max(range(len(norm)), key=lambda j: (norm[j], -j))
        right_sum += p_sum == item["answer"]
        right_norm += p_norm == item["answer"]
        preds.append({"answer": item["answer"], "pred": p_sum, "pred_norm": p_norm,
                      "logprobs": [round(v, 4) for v in s]})
    n = len(items)
    return {"items": n, "accuracy": right_sum / n, "accuracy_norm": right_norm / n,
            "chance": sum(1 / len(item["choices"]) for item in items) / n, "predictions": preds}


DEFAULT_SEED = 1337  # `fidan pretrain`'s default, for models whose run records no seed


def run_seed(model_dir: Path) -> int:
    """The seed a fidan run was initialised with, from its config.yaml (the run or a checkpoint inside it)."""
    for folder in (model_dir, model_dir.parent.parent):
        try:
            cfg = RunConfig.read(folder)
        except BadInput:  # an unreadable config.yaml
            return DEFAULT_SEED
        if cfg is not None and cfg.seed() is not None:
            return cfg.seed()
    return DEFAULT_SEED


def untrained_copy(lm: LanguageModel, seed: int) -> LanguageModel:
    """The same architecture and tokenizer with random weights, seeded as training seeds the model it builds.

    The global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if lm.kind == "fidan":
            from fidan.model.gpt import GPT

            net = GPT(lm.net.config)
        else:
            from transformers import AutoModelForCausalLM

            net = AutoModelForCausalLM.from_config(lm.net.config)
    return dataclasses.replace(lm, net=net.to(lm.device).eval())


def eval_mc(
    model: str | None = None,
    data: str | None = None,
    block_size: int | None = None,
    batch_size: int = 16,
    tokenizer: str | None = None,
    device: str = "auto",
    out: str | None = None,
    force: bool = False,
    baseline: bool = True,
    quiet: bool | None = None,
    list: bool = False,  # the flag is --list; the name shadows the builtin in this function only
    write_lm_eval: str | None = None,
) -> dict:
    """Multiple-choice accuracy by likelihood, for fidan models and Hugging Face causal LMs.

    Args:
        model: a fidan run or checkpoint folder, a transformers causal-LM folder, a cached hub name or a LoRA
            adapter folder.
        data: a JSONL file, one {"context", "choices", "answer"} record per line, a built-in set of the
            Turkish suite (tr-harmony, tr-case, tr-possessive, tr-person, tr-tense, tr-question,
            tr-definition, tr-order; --list describes them), or tr-suite: every set, one table with the
            floors.
        block_size: longest context in tokens (default: the model's; longer contexts lose their start).
        batch_size: sequences per forward pass.
        tokenizer: a tokenizer folder (default: the model's own).
        device: auto, cpu or cuda.
        out: where to write the result JSON (default: MODEL/eval/mc-<data name>.json).
        force: replace an existing result file.
        baseline: also score the same architecture with random weights (seeded like the run's start),
            the floor to read the accuracy against; --no-baseline skips it (it doubles the time, and for a
            Hugging Face model the memory).
        quiet: print nothing (default: the command prints the accuracy; a call from Python only returns it,
            unless quiet=False).
        list: print the built-in sets (items, chance, model-free floors, content hash, the rule that built
            each) and stop; needs no model.
        write_lm_eval: write lm-evaluation-harness task YAMLs and their JSONL for --data into this folder
            (`lm_eval --include_path DIR`) and stop; needs no model. --force replaces existing tasks.
    """
    from fidan.evaluation.suite import run as suite

    started = time.time()
    if list:
        rows = suite.list_rows(suite.load_all(quiet=not speaks(quiet)))
        if speaks(quiet):
            print(suite.format_list(rows))
        return {"sets": rows}
    if write_lm_eval is not None:
        if data is None:
            raise BadInput("--write-lm-eval needs --data (a JSONL file, a built-in set or tr-suite)")
        from fidan.evaluation.lm_eval_tasks import write_lm_eval as write_tasks

        names = write_tasks(write_lm_eval, data, force)
        if speaks(quiet):
            print(f"lm-eval tasks {', '.join(names)} → {write_lm_eval} (lm_eval --include_path {write_lm_eval})")
        return {"lm_eval_tasks": names, "folder": write_lm_eval}
    if model is None or data is None:
        raise BadInput("eval mc needs --model and --data (a JSONL file, a built-in set or tr-suite); "
                       "--list shows the built-in sets")
    if batch_size <= 0:
        raise FidanError(f"--batch-size must be positive, got {batch_size}")
    path = result_path(model, "mc", Path(data).name.split(".")[0], out, force)
    items = [] if data == SUITE else read_mc(data)
    lm = load_lm(model, tokenizer, pick_device(device), block_size)
    seed = run_seed(lm.path) if lm.kind == "fidan" else DEFAULT_SEED
    if data == SUITE:
        rows = suite.suite_rows(lm, untrained_copy(lm, seed) if baseline else None, batch_size)
        result = save_result(path, {"task": "mc-suite", "model": str(model), "model_kind": lm.kind, "data": SUITE,
                                    "untrained_seed": seed if baseline else None, "sets": rows}, started)
        if speaks(quiet):
            print(suite.format_suite(rows) + f"\n→ {path}")
        return result
    result = {"task": "mc", "model": str(model), "model_kind": lm.kind, "data": str(data),
              **mc_accuracy(items, choice_logprobs(lm, items, batch_size)), **suite.figures(data, items)}
    result.update(suite.errors(result))
    floor = ""
    if baseline:
        base = mc_accuracy(items, choice_logprobs(untrained_copy(lm, seed), items, batch_size))
        result["untrained"] = {"seed": seed, "accuracy": base["accuracy"], "accuracy_norm": base["accuracy_norm"]}
        floor = f"untrained model {base['accuracy']:.3f} / {base['accuracy_norm']:.3f}; "
    result = save_result(path, result, started)
    if speaks(quiet):
        print(f"accuracy {result['accuracy']:.3f} ± {result['standard_error']:.3f} (summed log-likelihood), "
              f"{result['accuracy_norm']:.3f} ± {result['standard_error_norm']:.3f} (per byte); {floor}"
              f"{suite.floor_text(result)}chance {result['chance']:.3f}; {result['items']} items → {path}")
    return result
