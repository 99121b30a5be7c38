"""Prediction throughput of a trained classifier on CPU: sentences per second at several batch sizes.

    python benchmarks/classify_predict.py --model runs/demo-classify/treebank/backbone \
        --data runs/demo-classify/data/treebank/test.jsonl

The same texts are labelled at each batch size (after one warm-up pass), through the same code path as
`fidan classify predict`; the figures include tokenization, padding and the softmax.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fidan.classify.data import read_labelled
from fidan.classify.predict import Predictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    texts = read_labelled(args.data, label_column=None).texts
    rows = []
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        predictor = Predictor(args.model, device="cpu", batch_size=bs)
        predictor.probs(texts[:64])  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            predictor.probs(texts)
            best = min(best, time.perf_counter() - t0)
        rows.append({"batch_size": bs, "texts": len(texts), "seconds": round(best, 3),
                     "texts_per_s": round(len(texts) / best, 1)})
        print(f"batch {bs:>3}: {len(texts) / best:,.1f} sentences/s ({len(texts)} texts in {best:.2f} s, "
              f"best of {args.repeats}, {args.threads} threads)")
    print(json.dumps({"model": args.model, "kind": predictor.spec.kind, "rows": rows}))


if __name__ == "__main__":
    main()
