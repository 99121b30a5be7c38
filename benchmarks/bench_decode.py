"""Decoding speed: the inference engine (KV cache) against the cache-less loop `GPT.generate` used before it.

    python benchmarks/bench_decode.py                    # ders and hizli, vocab 8000, 2 threads
    python benchmarks/bench_decode.py --device cuda --threads 0

For each preset (block 128, random weights: speed does not depend on them) a 32-token prompt is continued
by 96 greedy tokens, so the context stays inside the block. Two comparisons, each run in turn A B A B
after a warm-up, the figure being the median of the per-round ratios:

  1. batch 1: the engine (prefill once, then one token per step from the KV cache) against the cache-less
     loop (the whole context again for every token, logits for every position);
  2. the engine at batch 8 against the engine at batch 1, in total new tokens per second.

Both paths must give the same tokens; the script stops if they do not.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fidan.inference import Engine, Sampling, sample_next
from fidan.model.gpt import GPT, config_from_preset
from fidan.runtime.environment import cpu_model

GREEDY = Sampling(temperature=0.0)


@torch.no_grad()
def cacheless_generate(model: GPT, idx: torch.Tensor, max_new_tokens: int) -> list[int]:
    """The yardstick: `GPT.generate` as it was before the engine (full forward over the window per token)."""
    out = []
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        next_id = sample_next(logits[:, -1, :], 0.0)
        idx = torch.cat([idx, next_id], dim=1)
        out.append(int(next_id[0, 0]))
    return out


def timed(fn) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, result


def bench_preset(preset: str, vocab: int, prompt_len: int, new: int, batch: int, reps: int, device: str) -> dict:
    torch.manual_seed(0)
    model = GPT(config_from_preset(preset, vocab)).to(device).eval()
    prompts = torch.randint(0, vocab, (batch, prompt_len)).tolist()
    engine = Engine(model)
    x1 = torch.tensor(prompts[:1], device=device)

    def one():
        return engine.generate(prompts[:1], new, GREEDY)[0].tokens

    def many():
        return engine.generate(prompts, new, GREEDY)

    def old():
        return cacheless_generate(model, x1, new)

    for fn in (one, many, old):  # warm-up
        fn()
    if one() != old():
        raise SystemExit(f"{preset}: the engine's greedy tokens differ from the cache-less path")
    cache_ratio, batch_ratio, t_one, t_old, t_many = [], [], [], [], []
    for _ in range(reps):
        a, _ = timed(old)
        b, _ = timed(one)
        c, _ = timed(many)
        t_old.append(a)
        t_one.append(b)
        t_many.append(c)
        cache_ratio.append(a / b)
        batch_ratio.append((batch * new / c) / (new / b))
    return {
        "preset": preset,
        "params": model.num_params(),
        "cacheless_tok_s": new / statistics.median(t_old),
        "cache_tok_s": new / statistics.median(t_one),
        f"batch{batch}_tok_s": batch * new / statistics.median(t_many),
        "cache_vs_cacheless": statistics.median(cache_ratio),
        f"batch{batch}_vs_batch1": statistics.median(batch_ratio),
        "cache_ratios": [round(r, 2) for r in cache_ratio],
        "batch_ratios": [round(r, 2) for r in batch_ratio],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["ders", "hizli"])
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
          + (f", {gpu}" if gpu else ""))
    print(f"{args.prompt_tokens}-token prompt + {args.new_tokens} greedy tokens, vocab {args.vocab_size}, "
          f"{args.reps} rounds after warm-up (median of per-round ratios)")
    for preset in args.presets:
        r = bench_preset(preset, args.vocab_size, args.prompt_tokens, args.new_tokens, args.batch, args.reps,
                         args.device)
        b = args.batch
        print(f"{preset:6s} ({r['params'] / 1e6:.2f}M params): cache-less {r['cacheless_tok_s']:7.0f} tok/s | "
              f"KV cache {r['cache_tok_s']:7.0f} tok/s | batch {b} {r[f'batch{b}_tok_s']:7.0f} tok/s")
        print(f"        KV cache / cache-less = {r['cache_vs_cacheless']:.2f}x {r['cache_ratios']}; "
              f"batch {b} / batch 1 = {r[f'batch{b}_vs_batch1']:.2f}x {r['batch_ratios']}")


if __name__ == "__main__":
    main()
