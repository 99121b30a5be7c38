"""The output head and loss of a training step, alone: fidan's chunked cross-entropy against torch's full logits.

    python benchmarks/loss_head.py                          # width 128, vocabularies 8,000 / 32,000 / 152,000
    python benchmarks/loss_head.py --rows 4096 --width 256 --vocab 8000 --precision bf16 --rounds 9

For each vocabulary it times forward and backward of ``chunked_cross_entropy(h, W, targets)`` (what
`fidan pretrain` runs) and of ``F.cross_entropy(h @ W.T, targets)`` (the (rows, vocab) logits in full, what a
plain loop runs), in alternating rounds on the same tensors, checks that both give the same loss, and prints
the median time of each and the median of the per-round ratios with their range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from fidan.model.loss import chunk_rows, chunked_cross_entropy


def step(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, chunked: bool, bf16: bool) -> tuple[float, float]:
    """Forward and backward of one loss: (seconds, loss)."""
    h.grad = w.grad = None
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = chunked_cross_entropy(h, w, t) if chunked else F.cross_entropy(h @ w.T, t)
    loss.backward()
    return time.perf_counter() - t0, loss.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=4096, help="tokens in the step (batch x block)")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--vocab", type=int, nargs="+", default=[8000, 32000, 152000])
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}; rows {args.rows}, width {args.width}, {args.precision}")
    print("| vocab | rows per chunk | chunked fwd+bwd ms | full logits fwd+bwd ms | full / chunked |")
    print("|---|---|---|---|---|")
    bf16 = args.precision == "bf16"
    for vocab in args.vocab:
        torch.manual_seed(0)
        h = torch.randn(args.rows, args.width, requires_grad=True)
        w = (torch.randn(vocab, args.width) * 0.05).requires_grad_()
        t = torch.randint(0, vocab, (args.rows,))
        (_, a), (_, b) = step(h, w, t, True, bf16), step(h, w, t, False, bf16)  # warm-up; the same loss either way
        assert abs(a - b) <= (1e-2 if bf16 else 1e-5) * abs(b), (a, b)
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(step(h, w, t, True, bf16)[0])
            theirs.append(step(h, w, t, False, bf16)[0])
        ratios = sorted(b / a for a, b in zip(ours, theirs, strict=True))
        print(f"| {vocab:,} | {chunk_rows(vocab, 1024, 'cpu')} | {statistics.median(ours) * 1e3:.1f} | "
              f"{statistics.median(theirs) * 1e3:.1f} | {statistics.median(ratios):.2f}x "
              f"({ratios[0]:.2f}-{ratios[-1]:.2f}) |")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
