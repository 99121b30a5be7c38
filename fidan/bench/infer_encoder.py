"""`fidan bench infer` on an encoder (BERT-like): classification throughput.

At every precision, batch size and sequence length, one forward pass of the model with its
sequence-classification head (``AutoModelForSequenceClassification``; a head the checkpoint lacks starts
random, which does not change the cost) over ``batch`` texts of exactly ``length`` tokens each, special
tokens included, no padding. Precisions take turns within each round, as the generation benchmark's do;
int8 ÷ fp32 (or bf16 ÷ fp32) is the median of per-round ratios of texts/s. The tokens the model read are
counted from the attention mask and checked against batch × length.
"""

from __future__ import annotations

import time

import torch

from fidan.artifacts.loader import Source
from fidan.bench.infer import PROMPT_TEXT, measured, median_ratio, summary, windows
from fidan.bench.infer_models import load_hf, rss_mb
from fidan.errors import BadInput
from fidan.runtime.perf import sync


def run_encoder(net, ids: torch.Tensor, mask: torch.Tensor, device: str) -> tuple[dict]:
    """One forward pass over the batch, timed to its end on the device."""
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        logits = net(input_ids=ids, attention_mask=mask).logits
    sync(device)
    seconds = max(time.perf_counter() - start, 1e-9)
    rows, length = ids.shape
    tokens = int(mask.sum())
    if logits.shape[0] != rows or tokens != rows * length:
        raise RuntimeError(f"the encoder read {tokens} tokens in {logits.shape[0]} rows instead of "
                           f"{rows * length} in {rows}: the benchmark is void")
    return ({"latency_ms": seconds * 1e3, "texts_s": rows / seconds, "tok_s": tokens / seconds, "tokens": tokens},)


def _specials(tok) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after one text ([CLS] and [SEP] for BERT), found by
    encoding a probe with and without them (transformers 5 tokenizers no longer build inputs from ids)."""
    plain, full = (tok("a", add_special_tokens=flag)["input_ids"] for flag in (False, True))
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i], full[i + len(plain):]
    raise BadInput(f"cannot tell where the tokenizer {type(tok).__name__} puts its special tokens")


def _inputs(tok, batch: int, length: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` different texts of exactly ``length`` tokens, the tokenizer's special tokens included."""
    before, after = _specials(tok)
    ids = tok(PROMPT_TEXT, add_special_tokens=False)["input_ids"]
    x = torch.tensor([before + w + after for w in windows(ids, batch, length - len(before) - len(after))],
                     device=device)
    return x, torch.ones_like(x)


def bench_encoder(source: Source, precisions: list[str], batches: list[int], lengths: list[int], rounds: int,
                  warmup: int, device: str) -> dict:
    """Texts/s, tokens/s and latency per batch of an encoder, per precision, batch size and text length."""
    models, load, rss = {}, {}, {"start_mb": rss_mb()}
    for p in precisions:
        t0 = time.perf_counter()
        models[p], tok, parameters = load_hf(source, "encoder", p, device)
        load[f"model_{p}_s"] = time.perf_counter() - t0
        rss[f"after_{p}_mb"] = rss_mb()
    net = models[precisions[0]]
    window = getattr(net.config, "max_position_embeddings", None)
    specials = sum(map(len, _specials(tok)))
    if any(n <= specials for n in lengths):
        raise BadInput(f"--prompt-tokens must exceed the {specials} special tokens the tokenizer adds to each text")
    lengths = sorted({min(n, window) if window else n for n in lengths})
    results = []
    for n in lengths:
        for b in batches:
            ids, mask = _inputs(tok, b, n, device)
            runs: dict = {p: [] for p in models}
            for r in range(warmup + rounds):
                for p, m in models.items():
                    (timing,) = measured(run_encoder, device, m, ids, mask, device)
                    if r >= warmup:
                        runs[p].append(timing)
            for p in models:
                row = {"precision": p, "batch": b, "prompt_tokens": n,
                       "timing": {**summary(runs[p]), "rounds": runs[p]}, "ratios": {}}
                if p != "fp32" and "fp32" in models:
                    row["ratios"][f"{p}/fp32"] = median_ratio(runs[p], runs["fp32"], "texts_s")
                results.append(row)
    gpu = [r["timing"]["gpu_peak_mb"] for r in results if "gpu_peak_mb" in r["timing"]]
    return {"task": "classification", "architecture": type(net).__name__, "parameters": parameters,
            "block_size": window, "rounds": rounds, "warmup": warmup, "precisions": precisions, "batches": batches,
            "prompt_tokens": lengths, "contestants": ["forward"], "load": load,
            "memory": {**rss, **({"gpu_peak_mb": max(gpu)} if gpu else {})}, "results": results}
