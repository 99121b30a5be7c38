"""Training speed: fidan's `ders` step against transformers' GPT2LMHeadModel (fp32 and bf16), side by side.

    python benchmarks/bench_train.py                      # bundled corpus, vocab 8000, batch 32 x 128
    python benchmarks/bench_train.py --compile            # fidan under torch.compile

Wraps `fidan bench train`; prepares the bundled corpus and an 8000-token tokenizer under --work first.
Targets (2-core CPU): fidan >= 2.0x the fp32 loop and >= 1.5x the bf16 loop; MFU reported.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from fidan.bench.bundled import bundled_data
from fidan.bench.train import bench_train
from fidan.runtime.environment import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/speedrun")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--preset", default="ders")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    data, tok = bundled_data(args.work, args.vocab_size)
    load_before = os.getloadavg()[0]
    t0 = time.time()
    r = bench_train(data=data, tokenizer=tok, preset=args.preset, batch_size=args.batch_size, rounds=args.rounds,
                    steps=args.steps, compile=args.compile, json=args.json)
    print(f"\nmachine: {os.cpu_count()} cores, {cpu_model()}, torch {torch.__version__}; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; {time.time() - t0:.0f} s")
    targets = {"fidan/hf-fp32": 2.0, "fidan/hf-bf16": 1.5}
    for key, target in targets.items():
        if key in r["ratios"]:
            verdict = "met" if r["ratios"][key] >= target else "missed"
            print(f"{key}: {r['ratios'][key]:.2f}x (target >= {target}x: {verdict})")


if __name__ == "__main__":
    main()
