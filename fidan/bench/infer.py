"""`fidan bench infer`: inference speed of a fidan run or a transformers model.

For a model that generates (a fidan run, a transformers causal LM, an encoder-decoder), at every precision
(fp32, bf16, int8), batch size and prompt length, each contestant generates the same number of new tokens,
greedily, from the same prompt, in turn (A B C A B C ...). Which contestants measure which model is set out
in ``fidan.bench.infer_models``: fidan's engine, transformers' ``generate()`` and ``pipeline("text-generation")``
(text in, text out: tokenization and decoding are part of its time) for decoders; ``generate()`` for an
encoder-decoder. An encoder is measured for classification throughput (``fidan.bench.infer_encoder``).

Every precision of every contestant is measured inside the same round, so the ratios fidan ÷ generate,
fidan ÷ pipeline and int8 ÷ fp32 are per-round ratios whose median is the figure. No contestant can stop
early: none is given an end-of-text id, and the number of steps each one took is counted and checked.

Each run is timed at its first new token (prefill and the first choice: time to first token) and at its
end; decode tokens/s = rows × (new tokens - 1) ÷ the time after the first token; prefill tokens/s = prompt
tokens ÷ the time to the first token. On CUDA, ``torch.cuda.max_memory_allocated`` is reset before each
measured run and read after it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from fidan.artifacts.bench_infer import INFER_DIR, InferResult
from fidan.artifacts.infer_tables import markdown, plot_ratios, plot_speed
from fidan.artifacts.loader import locate
from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.bench.infer_models import (
    causal_contestants,
    fidan_contestants,
    model_family,
    rss_mb,
    seq2seq_contestants,
    transformers_version,
)
from fidan.errors import FidanError
from fidan.inference import check_precision
from fidan.runtime.device import peak_rss_mb, pick_device, set_threads
from fidan.runtime.environment import environment
from fidan.runtime.io import atomic_write_text
from fidan.runtime.perf import gpu_peak_mb, gpu_peak_reset

PROMPT_TEXT = ("Bilim ve sanat bir milletin en büyük hazinesidir. Türkiye Cumhuriyeti 1923 yılında kuruldu ve "
               "başkenti Ankara oldu. Öğretmenler çocuklara ılık süt ve çörek ikram ettiler. Ağaçların gölgesinde "
               "oturan yaşlı adam gazetesini okuyordu; çiftçiler tarlalarını sürdü ve yağmuru beklediler. ")


def text_ids(tok) -> list[int]:
    """The ids of ``PROMPT_TEXT`` with fidan's tokenizer or a transformers one (no special tokens added)."""
    if isinstance(tok, TokenizerBundle):
        return tok.encode(PROMPT_TEXT)
    return tok(PROMPT_TEXT, add_special_tokens=False)["input_ids"]


def windows(ids: list[int], batch: int, length: int) -> list[list[int]]:
    """``batch`` different windows of ``length`` tokens of a Turkish text."""
    while len(ids) < length + 7 * batch:
        ids = ids + ids
    return [ids[7 * b:7 * b + length] for b in range(batch)]


def median_ratio(a: list[dict], b: list[dict], key: str = "decode_tok_s") -> dict:
    ratios = [x[key] / y[key] for x, y in zip(a, b, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios}


def summary(runs: list[dict]) -> dict:
    """Medians over the rounds; the GPU's memory peak is the highest of them."""
    return {k: (max if k == "gpu_peak_mb" else statistics.median)(r[k] for r in runs) for k in runs[0]}


def measured(run, device: str, *args):
    """``run(*args)``, with the GPU's peak allocated memory over it added to its timing (on CUDA)."""
    gpu_peak_reset(device)
    timing, *rest = run(*args)
    peak = gpu_peak_mb(device)
    if peak is not None:
        timing["gpu_peak_mb"] = peak
    return (timing, *rest)


def bench_infer(
    model: str,
    out: str | None = None,
    precision: list[str] | None = None,
    batch: list[int] | None = None,
    prompt_tokens: list[int] | None = None,
    new_tokens: int = 32,
    rounds: int = 3,
    warmup: int = 1,
    transformers: bool = True,
    threads: int | None = None,
    device: str = "cpu",
    force: bool = False,
) -> dict:
    """Inference speed (load time, time to first token, prefill and decode tokens/s, per-token latency, memory)
    of a fidan run or a transformers model at fp32, bf16 and int8; for a fidan run or a causal LM, fidan's
    engine side by side with transformers' generate() and pipeline(); for an encoder, classification texts/s.

    Args:
        model: a fidan run folder (or a checkpoint), a transformers folder or a hub name in the local Hugging
            Face cache: a causal LM (GPT-2, Llama, Qwen ...), an encoder-decoder (T5) or an encoder with a
            sequence-classification head (BERT).
        out: the folder for infer.json, infer.md and the plots (default: MODEL/bench-infer for a folder,
            bench-infer/ORG--NAME for a hub name).
        precision: precisions to measure (repeatable; default: fp32, bf16 and int8).
        batch: batch sizes to measure (repeatable; default: 1, 4 and 16).
        prompt_tokens: prompt lengths in tokens, for an encoder the length of each text (repeatable; default:
            16 and 128), each capped so that the new tokens still fit in the model's window.
        new_tokens: tokens generated per row, exactly (no early stop on either side).
        rounds: measured rounds; each runs every contestant at every precision once, in turn.
        warmup: unmeasured rounds first.
        transformers: also measure transformers' generate() and pipeline() (a fidan run: on its export; a
            causal LM: on the same weights). An encoder-decoder or an encoder is measured through transformers
            only.
        threads: CPU threads for torch's operators (default: torch's own choice).
        device: cpu or cuda (int8 runs on the CPU only); on cuda the GPU's peak allocated memory is reported.
        force: replace an existing infer.json in --out.
    """
    precisions = [check_precision(p) for p in (precision or ["fp32", "bf16", "int8"])]
    batches, lengths = batch or [1, 4, 16], prompt_tokens or [16, 128]
    if rounds < 1 or warmup < 0 or new_tokens < 2:
        raise FidanError("--rounds must be at least 1, --warmup at least 0 and --new-tokens at least 2")
    if any(b < 1 for b in batches) or any(n < 1 for n in lengths):
        raise FidanError("--batch and --prompt-tokens must be positive")
    source = locate(model)
    family = model_family(source)
    if not transformers and family in ("seq2seq", "encoder"):
        raise FidanError(f"--no-transformers: {model} is an {'encoder-decoder' if family == 'seq2seq' else 'encoder'}"
                         ", measured through transformers only; leave --no-transformers out")
    out_dir = Path(out) if out else Path(model) / INFER_DIR if Path(model).exists() \
        else Path("bench-infer") / model.replace("/", "--")
    if (out_dir / "infer.json").exists() and not force:
        raise FidanError(f"{out_dir / 'infer.json'} already exists; pass --force to replace it or choose another --out")
    set_threads(threads)
    device = pick_device(device)
    started = time.perf_counter()
    if family == "encoder":
        from fidan.bench.infer_encoder import bench_encoder

        result = bench_encoder(source, precisions, batches, lengths, rounds, warmup, device)
    else:
        result = _bench_generation(source, family, precisions, batches, lengths, new_tokens, rounds, warmup,
                                   transformers, device)
    result.update({"model": str(model), "family": family,
                   "environment": {**environment(), "transformers": transformers_version()},
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": time.perf_counter() - started})
    result["memory"]["peak_rss_mb"] = peak_rss_mb()
    _write(out_dir, result)
    return result


def _bench_generation(source, family: str, precisions: list[str], batches: list[int], lengths: list[int],
                      new: int, rounds: int, warmup: int, transformers: bool, device: str) -> dict:
    load: dict = {}
    rss = {"start_mb": rss_mb()}
    with tempfile.TemporaryDirectory() as tmp:
        if family == "fidan":
            models, tok, parameters, block = fidan_contestants(source.name, precisions, device, new, transformers,
                                                               Path(tmp) / "hf", load, rss)
        elif family == "causal":
            models, tok, parameters, block = causal_contestants(source, precisions, device, new, transformers, load, rss)
        else:
            models, tok, parameters, block = seq2seq_contestants(source, precisions, device, new, load, rss)
        # A decoder's window holds the prompt and the new tokens; an encoder-decoder's encoder the prompt alone.
        room = block - new if block and family != "seq2seq" else block
        lengths = sorted({min(n, room) for n in lengths} if room else set(lengths))
        ids = text_ids(tok)
        results = [row for n in lengths for b in batches
                   for row in _measure(models, windows(ids, b, n), tok, new, rounds, warmup, device)]
    gpu = [t["gpu_peak_mb"] for r in results for t in r["contestants"].values() if "gpu_peak_mb" in t]
    return {"parameters": parameters, "block_size": block, "new_tokens": new, "rounds": rounds, "warmup": warmup,
            "precisions": precisions, "batches": batches, "prompt_tokens": lengths,
            "contestants": list(next(iter(models.values()))), "load": load,
            "memory": {**rss, **({"gpu_peak_mb": max(gpu)} if gpu else {})}, "results": results}


def _measure(models: dict, prompts: list[list[int]], tok, new: int, rounds: int, warmup: int,
             device: str) -> list[dict]:
    """One (batch, prompt length): every contestant at every precision, in turn, ``warmup + rounds`` times."""
    texts = [tok.decode(p) for p in prompts]
    contestants = list(next(iter(models.values())))
    lead = contestants[0]
    runs: dict = {(p, c): [] for p in models for c in contestants}
    agree: dict = {}
    for r in range(warmup + rounds):
        for p, m in models.items():
            tokens = {}
            for name, run in m.items():
                timing, tokens[name] = measured(run, device, prompts, texts)
                if r >= warmup:
                    runs[(p, name)].append(timing)
            if "fidan" in tokens and tokens.get("generate") is not None:
                ours, theirs = tokens["fidan"], tokens["generate"]
                agree[p] = sum(a == b for x, y in zip(ours, theirs, strict=True) for a, b in zip(x, y, strict=True)) \
                    / (len(prompts) * new)
    rows = []
    for p in models:
        row = {"precision": p, "batch": len(prompts), "prompt_tokens": len(prompts[0]), "new_tokens": new,
               "contestants": {c: {**summary(runs[(p, c)]), "rounds": runs[(p, c)]} for c in contestants},
               "ratios": {}}
        for c in contestants[1:]:
            row["ratios"][f"{lead}/{c}"] = median_ratio(runs[(p, lead)], runs[(p, c)])
        if p != "fp32" and "fp32" in models:
            row["ratios"][f"{p}/fp32"] = median_ratio(runs[(p, lead)], runs[("fp32", lead)])
        if p in agree:
            row["same_greedy_tokens"] = agree[p]  # share of fidan's tokens that generate() also chose
        rows.append(row)
    return rows


def _write(out_dir: Path, result: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "texts.png" if result.get("task") == "classification" else "decode.png"
    speed, ratios = plot_speed(result, out_dir / name), plot_ratios(result, out_dir / "ratios.png")
    result["plots"] = [p.name for p in (speed, ratios) if p]
    atomic_write_text(out_dir / "infer.md", markdown(result))
    result.update(InferResult.from_dict(result).write(out_dir))  # the caller's dict is what the file holds
    print(markdown(result))
    print(f"→ {out_dir / 'infer.json'}, {out_dir / 'infer.md'}" + "".join(f", {out_dir / p}" for p in result["plots"]))
