"""`fidan bench infer`: inference speed of a run, against transformers on the same exported weights.

For every precision (fp32, bf16, int8), batch size and prompt length, three contestants generate the same
number of new tokens, greedily, from the same prompt, in turn (A B C A B C ...):

- fidan: the inference engine (``fidan.inference.Engine``) on the run's ``GPT``;
- generate: ``transformers``' ``model.generate()`` on the weights written by fidan's own export
  (``fidan export hf``) and loaded with ``AutoModelForCausalLM``;
- pipeline: ``pipeline("text-generation")`` over that model and its exported tokenizer (text in, text
  out: tokenization and decoding are part of its time).

Every precision of every contestant is measured inside the same round, so the ratios fidan ÷ generate,
fidan ÷ pipeline and int8 ÷ fp32 are per-round ratios whose median is the figure. No contestant can stop
early: none is given an end-of-text id, and the number of steps each one took is counted and checked.

Each run is timed at its first new token (prefill and the first choice: time to first token) and at its
end; decode tokens/s = rows × (new tokens - 1) ÷ the time after the first token.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fidan.artifacts.loader import load_model
from fidan.errors import FidanError
from fidan.inference import Engine, Sampling, apply_precision, check_precision
from fidan.model.gpt import GPT
from fidan.report.infer_tables import markdown, plot_ratios, plot_speed
from fidan.runtime.device import peak_rss_mb, pick_device, set_threads
from fidan.runtime.environment import environment
from fidan.runtime.io import atomic_write_json, atomic_write_text

CONTESTANTS = ("fidan", "generate", "pipeline")
PROMPT_TEXT = ("Bilim ve sanat bir milletin en büyük hazinesidir. Türkiye Cumhuriyeti 1923 yılında kuruldu ve "
               "başkenti Ankara oldu. Öğretmenler çocuklara ılık süt ve çörek ikram ettiler. Ağaçların gölgesinde "
               "oturan yaşlı adam gazetesini okuyordu; çiftçiler tarlalarını sürdü ve yağmuru beklediler. ")


def _clock():
    """A transformers streamer that only notes when each step's tokens arrive (its first call is the prompt)."""
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.times: list[float] = []

        def put(self, value) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    return Clock()


def _timing(start: float, first: float, end: float, rows: int, new: int, steps: int) -> dict:
    if steps != new:
        raise RuntimeError(f"a contestant generated {steps} tokens per row instead of {new}: the benchmark is void")
    decode_s = max(end - first, 1e-9)
    return {"ttft_ms": (first - start) * 1e3, "per_token_ms": decode_s * 1e3 / max(new - 1, 1),
            "decode_tok_s": rows * (new - 1) / decode_s, "total_tok_s": rows * new / (end - start)}


def _run_fidan(engine: Engine, prompts: list[list[int]], new: int) -> tuple[dict, list[list[int]]]:
    start, first, steps = time.perf_counter(), None, 0
    tokens: list[list[int]] = [[] for _ in prompts]
    for event in engine.stream(prompts, new, Sampling(temperature=0.0)):
        first = first or time.perf_counter()
        tokens[event.row].append(event.token)
        steps += event.row == 0
    end = time.perf_counter()
    return _timing(start, first, end, len(prompts), new, steps), tokens


def _run_generate(hf, prompts: list[list[int]], new: int, gen_cfg) -> tuple[dict, list[list[int]]]:
    clock = _clock()
    ids = torch.tensor(prompts)
    start = time.perf_counter()
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg, streamer=clock)
    end = time.perf_counter()
    steps = len(clock.times) - 1  # the first put is the prompt
    return _timing(start, clock.times[1], end, len(prompts), new, steps), out[:, ids.size(1):].tolist()


def _run_pipeline(pipe, texts: list[str], new: int, gen_cfg) -> dict:
    clock = _clock()
    start = time.perf_counter()
    pipe(texts, batch_size=len(texts), generation_config=gen_cfg, streamer=clock, return_full_text=False)
    end = time.perf_counter()
    return _timing(start, clock.times[1], end, len(texts), new, len(clock.times) - 1)


def _prompts(tok, batch: int, length: int) -> list[list[int]]:
    """``batch`` different windows of ``length`` tokens of a Turkish text."""
    ids = tok.encode(PROMPT_TEXT)
    while len(ids) < length + 7 * batch:
        ids = ids + ids
    return [ids[7 * b:7 * b + length] for b in range(batch)]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _median_ratio(a: list[dict], b: list[dict], key: str = "decode_tok_s") -> dict:
    ratios = [x[key] / y[key] for x, y in zip(a, b, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios}


def _summary(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


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
    """Inference speed of a run (load time, time to first token, per-token latency, decode tokens/s, memory)
    for fp32, bf16 and int8, side by side with transformers' generate() and pipeline() on its exported weights.

    Args:
        model: a run folder made by `fidan pretrain` (or one of its checkpoints).
        out: the folder for infer.json, infer.md and the plots (default: MODEL/bench-infer).
        precision: precisions to measure (repeatable; default: fp32, bf16 and int8).
        batch: batch sizes to measure (repeatable; default: 1, 4 and 16).
        prompt_tokens: prompt lengths in tokens (repeatable; default: 16 and 128), each capped so that
            the new tokens still fit in the model's block.
        new_tokens: tokens generated per row, exactly (no early stop on either side).
        rounds: measured rounds; each runs every contestant at every precision once, in turn.
        warmup: unmeasured rounds first.
        transformers: also measure transformers' generate() and pipeline() on the exported weights.
        threads: CPU threads for torch's operators (default: torch's own choice).
        device: cpu or cuda (int8 runs on the CPU only).
        force: replace an existing infer.json in --out.
    """
    precisions = [check_precision(p) for p in (precision or ["fp32", "bf16", "int8"])]
    batches, lengths = batch or [1, 4, 16], prompt_tokens or [16, 128]
    if rounds < 1 or warmup < 0 or new_tokens < 2:
        raise FidanError("--rounds must be at least 1, --warmup at least 0 and --new-tokens at least 2")
    if any(b < 1 for b in batches) or any(n < 1 for n in lengths):
        raise FidanError("--batch and --prompt-tokens must be positive")
    out_dir = Path(out) if out else Path(model) / "bench-infer"
    if (out_dir / "infer.json").exists() and not force:
        raise FidanError(f"{out_dir / 'infer.json'} already exists; pass --force to replace it or choose another --out")
    set_threads(threads)
    device = pick_device(device)
    started = time.perf_counter()
    net, tok = load_model(model, device=device)
    load = {"fidan_s": time.perf_counter() - started}
    if not isinstance(net, GPT):
        raise FidanError(f"{model} is a transformers folder; `fidan bench infer` measures a fidan run")
    block = net.config.block_size
    if new_tokens >= block:
        raise FidanError(f"--new-tokens {new_tokens} leaves no room for a prompt in the block of {block} tokens")
    lengths = sorted({min(n, block - new_tokens) for n in lengths})
    contestants = CONTESTANTS if transformers else CONTESTANTS[:1]
    models, rss = {}, {"start_mb": _rss_mb()}
    with tempfile.TemporaryDirectory() as tmp:
        hf_folder = None
        if transformers:
            from fidan.adapt.export import export_hf

            export_hf(model=model, out=str(Path(tmp) / "hf"))
            hf_folder = Path(tmp) / "hf"
        for p in precisions:
            t0 = time.perf_counter()
            models[p] = {"fidan": Engine(apply_precision(copy.deepcopy(net), p))}
            load[f"fidan_{p}_s"] = load["fidan_s"] + time.perf_counter() - t0
            if hf_folder is not None:
                models[p].update(_load_transformers(hf_folder, p, device, new_tokens, load))
            rss[f"after_{p}_mb"] = _rss_mb()
        del net
        results = [row for n in lengths for b in batches
                   for row in _measure(models, tok, b, n, new_tokens, rounds, warmup, contestants)]
    result = {
        "model": str(model), "parameters": sum(p.numel() for p in models[precisions[0]]["fidan"].model.parameters()),
        "block_size": block, "new_tokens": new_tokens, "rounds": rounds, "warmup": warmup,
        "precisions": precisions, "batches": batches, "prompt_tokens": lengths, "contestants": list(contestants),
        "load": load, "memory": {**rss, "peak_rss_mb": peak_rss_mb()}, "results": results,
        "environment": {**environment(), "transformers": _transformers_version()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": time.perf_counter() - started,
    }
    _write(out_dir, result)
    return result


def _load_transformers(folder: Path, precision: str, device: str, new: int, load: dict) -> dict:
    """The exported model at ``precision`` for generate(), and a text-generation pipeline over it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, pipeline

    from fidan.model.hf import quiet_transformers

    quiet_transformers()
    t0 = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False,
                                               dtype=torch.float32).to(device)
    hf = apply_precision(hf, precision).eval()
    load[f"transformers_{precision}_s"] = time.perf_counter() - t0
    hf_tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    hf_tok.padding_side = "left"
    # Greedy, exactly `new` tokens: no end-of-text id to stop at (so no logits processor is added either).
    gen_cfg = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None,
                               pad_token_id=hf_tok.pad_token_id, bos_token_id=None)
    pipe = pipeline("text-generation", model=hf, tokenizer=hf_tok, device=torch.device(device))
    return {"generate": (hf, gen_cfg), "pipeline": (pipe, gen_cfg)}


def _measure(models: dict, tok, batch: int, length: int, new: int, rounds: int, warmup: int,
             contestants: tuple[str, ...]) -> list[dict]:
    """One (batch, prompt length): every contestant at every precision, in turn, ``warmup + rounds`` times."""
    prompts = _prompts(tok, batch, length)
    texts = [tok.decode(p) for p in prompts]
    runs: dict = {(p, c): [] for p in models for c in contestants}
    agree: dict = {}
    for r in range(warmup + rounds):
        for p, m in models.items():
            timing, ours = _run_fidan(m["fidan"], prompts, new)
            done = [("fidan", timing)]
            if "generate" in contestants:
                hf, gen_cfg = m["generate"]
                timing, theirs = _run_generate(hf, prompts, new, gen_cfg)
                done.append(("generate", timing))
                done.append(("pipeline", _run_pipeline(m["pipeline"][0], texts, new, m["pipeline"][1])))
                agree[p] = sum(a == b for x, y in zip(ours, theirs, strict=True) for a, b in zip(x, y, strict=True)) \
                    / (batch * new)
            if r >= warmup:
                for name, timing in done:
                    runs[(p, name)].append(timing)
    rows = []
    for p in models:
        row = {"precision": p, "batch": batch, "prompt_tokens": length, "new_tokens": new,
               "contestants": {c: {**_summary(runs[(p, c)]), "rounds": runs[(p, c)]} for c in contestants},
               "ratios": {}}
        for c in contestants[1:]:
            row["ratios"][f"fidan/{c}"] = _median_ratio(runs[(p, "fidan")], runs[(p, c)])
        if p != "fp32" and "fp32" in models:
            row["ratios"][f"{p}/fp32"] = _median_ratio(runs[(p, "fidan")], runs[("fp32", "fidan")])
        if p in agree:
            row["same_greedy_tokens"] = agree[p]  # share of fidan's tokens that generate() also chose
        rows.append(row)
    return rows


def _transformers_version() -> str | None:
    try:
        import transformers
    except ImportError:
        return None
    return transformers.__version__


def _write(out_dir: Path, result: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    speed, ratios = plot_speed(result, out_dir / "decode.png"), plot_ratios(result, out_dir / "ratios.png")
    result["plots"] = [p.name for p in (speed, ratios) if p]
    atomic_write_text(out_dir / "infer.md", markdown(result))
    atomic_write_json(out_dir / "infer.json", result)
    print(markdown(result))
    print(f"→ {out_dir / 'infer.json'}, {out_dir / 'infer.md'}" + "".join(f", {out_dir / p}" for p in result["plots"]))
