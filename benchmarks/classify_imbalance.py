"""Imbalanced classes: speeches by kind (konusma 325, demec 48, telgraf 12, mektup 7) with plain
cross-entropy, class weights and focal loss, over several split seeds (the test split holds only 2-3
letters and telegrams, so one seed's macro-F1 moves a lot).

    python benchmarks/classify_imbalance.py --model runs/demo --seeds 1337,1,2

Each seed gets its own stratified split; every loss is trained on it with the same settings. Prints the
test macro-F1 per seed and the mean, and the TF-IDF baseline (plain and with balanced weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fidan.classify.data import classify_data
from fidan.classify.train import classify_train

LOSSES = {"cross-entropy": {}, "class weights (balanced)": {"class_weight": "balanced"},
          "class weights (sqrt)": {"class_weight": "sqrt"}, "focal loss (gamma 2)": {"focal_gamma": 2.0}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/demo")
    ap.add_argument("--seeds", default="1337,1,2")
    ap.add_argument("--epochs", type=float, default=12.0)
    ap.add_argument("--max-length", type=int, default=128)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    table: dict[str, list[float]] = {}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in seeds:
            data = work / f"speeches-{seed}"
            classify_data(source="builtin:speeches", out=str(data), val_fraction=0.15, test_fraction=0.25, seed=seed)
            for name, extra in LOSSES.items():
                s = classify_train(data=str(data), out=str(work / f"{seed}-{len(table)}"), model=args.model,
                                   epochs=args.epochs, max_length=args.max_length, seed=seed, quiet=True, force=True,
                                   baseline=False, **extra)
                table.setdefault(name, []).append(s["test_macro_f1"])
            for name, weight in (("TF-IDF", "none"), ("TF-IDF, balanced weights", "balanced")):
                s = classify_train(data=str(data), out=str(work / f"{seed}-tfidf-{weight}"), model="tfidf",
                                   class_weight=weight, seed=seed, quiet=True, force=True)
                table.setdefault(name, []).append(s["test_macro_f1"])
    print(f"\nspeeches by kind, test macro-F1 per split seed {seeds} (model {args.model}, {args.epochs:g} epochs):")
    for name, values in table.items():
        print(f"  {name:<26} " + "  ".join(f"{v:.3f}" for v in values) + f"   mean {statistics.mean(values):.3f}")
    print(f"({time.time() - t0:.0f} s)")
    print(json.dumps({"seeds": seeds, "model": args.model, "test_macro_f1": table}))


if __name__ == "__main__":
    main()
