"""Bits-per-byte scoring speed: fidan's sliding-window scorer against the usual transformers perplexity loop.

    python benchmarks/eval_speed.py                   # bundled corpus's held-out split, vocab 8000, ders size

Both score the same text, joined into one long document, with the same model (a GPT2LMHeadModel of the
`ders` size: 4 layers, width 128, context 128, random weights: speed does not depend on them), the same
window (128) and stride (64). The yardstick is the loop from the transformers perplexity guide: one window
per forward pass, context positions labelled -100. fidan batches windows (`--batch-size`). Rounds alternate
A B A B; the figure is the median of the per-round time ratios. The two bits-per-byte figures differ
slightly by construction: the guide's loop never scores the first token of a window (labels shift inside
the model), fidan conditions the text on the start token and scores every token once.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fidan.artifacts.datadir import iter_split
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.bench.bundled import bundled_data
from fidan.evaluation.bpb import score_text
from fidan.evaluation.lm import load_lm
from fidan.runtime.environment import cpu_model


@torch.no_grad()
def guide_loop(net, ids: list[int], block: int, stride: int) -> float:
    """Summed nats, as in the transformers perplexity guide (loss × scored targets per window)."""
    seq = torch.tensor([ids])
    nats, prev_end = 0.0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + block, len(ids))
        trg = end - prev_end
        x = seq[:, begin:end]
        labels = x.clone()
        labels[:, :-trg] = -100
        out = net(x, labels=labels)
        scored = int((labels[:, 1:] != -100).sum())
        nats += float(out.loss) * scored
        prev_end = end
        if end == len(ids):
            break
    return nats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/speedrun")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel

    data, tok_dir = bundled_data(args.work, args.vocab_size)
    text = "\n\n".join(iter_split(data, "val"))
    tok = load_tokenizer(tok_dir)
    torch.manual_seed(0)
    net = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=128, n_embd=128, n_layer=4, n_head=4,
                                     bos_token_id=tok.eos_id, eos_token_id=tok.eos_id))
    folder = Path(tempfile.mkdtemp(prefix="eval-speed-"))
    try:
        net.save_pretrained(folder)
        for f in Path(tok_dir).iterdir():
            shutil.copy2(f, folder / f.name)
        lm = load_lm(str(folder), device="cpu")
        ids = lm.encode(text)
        nbytes = len(text.encode("utf-8"))
        print(f"text: {nbytes:,} bytes, {len(ids):,} tokens; window {lm.block_size}, stride {args.stride}")
        ratios, rows = [], []
        for r in range(args.rounds + 1):  # round 0 warms up
            t = time.perf_counter()
            s = score_text(lm, iter([iter([text])]), args.stride, args.batch_size)
            t_fidan = time.perf_counter() - t
            t = time.perf_counter()
            ids = lm.encode(text)  # the guide tokenizes the text too
            nats_guide = guide_loop(lm.net, ids, lm.block_size, args.stride)
            t_guide = time.perf_counter() - t
            if r:
                ratios.append(t_guide / t_fidan)
                rows.append((t_fidan, t_guide))
            print(f"round {r}{' (warm-up)' if not r else ''}: fidan {t_fidan:.2f} s "
                  f"({s['tokens'] / t_fidan:,.0f} tokens/s, {s['nats'] / math.log(2) / s['bytes']:.4f} bits/byte) | "
                  f"guide loop {t_guide:.2f} s ({len(ids) / t_guide:,.0f} tokens/s, "
                  f"{nats_guide / math.log(2) / nbytes:.4f} bits/byte)")
        print(f"\nfidan eval bpb scorer is {statistics.median(ratios):.2f}x the transformers guide loop "
              f"(median of {len(ratios)} rounds; batch {args.batch_size} windows)")
        print(f"machine: {os.cpu_count()} cores, {cpu_model()}, torch {torch.__version__}, "
              f"load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
