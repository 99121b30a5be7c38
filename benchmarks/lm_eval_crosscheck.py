"""fidan's multiple-choice scoring against lm-evaluation-harness on the same items and the same model.

    python benchmarks/lm_eval_crosscheck.py --model RUN --work /tmp/lm-eval-check [--data tr-suite]

Scores every set with `fidan eval mc` (no untrained baseline) and with `fidan eval lm-eval` (the run
exported on the fly), then prints per set: items, fidan's accuracy and per-byte accuracy, lm-eval's acc
and acc_bytes, how many items get the same prediction under each score, the largest difference of a
choice's log-likelihood, and the wall time of each. Writes WORK/crosscheck.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import fidan
from fidan.evaluation.lm_eval_tasks import expand, task_name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--data", default="tr-suite")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ours = {d: fidan.eval_mc(model=args.model, data=d, baseline=False, batch_size=args.batch_size, device="cpu",
                             out=str(work / f"mc-{d}.json"), force=True, quiet=True) for d in expand(args.data)}
    t_fidan = time.time() - t0
    t0 = time.time()
    theirs = fidan.eval_lm_eval(model=args.model, tasks=args.data, batch_size=args.batch_size, device="cpu",
                                out=str(work / "lm-eval.json"), force=True, quiet=True)["results"]
    t_lm = time.time() - t0
    rows = []
    print("| set | items | fidan summed | lm-eval acc | fidan per byte | lm-eval acc_bytes | same prediction "
          "(summed / per byte) | largest log-likelihood difference (nats) |")
    print("|---|---|---|---|---|---|---|---|")
    for d, mc in ours.items():
        lm = theirs[task_name(d)]
        same = sum(a["pred"] == b["pred"] for a, b in zip(mc["predictions"], lm["predictions"], strict=True))
        same_b = sum(a["pred_norm"] == b["pred_bytes"]
                     for a, b in zip(mc["predictions"], lm["predictions"], strict=True))
        diff = max(abs(x - y) for a, b in zip(mc["predictions"], lm["predictions"], strict=True)
                   for x, y in zip(a["logprobs"], b["logprobs"], strict=True))
        rows.append({"set": d, "items": mc["items"], "fidan": [mc["accuracy"], mc["accuracy_norm"]],
                     "lm_eval": [lm["acc"], lm["acc_bytes"]], "same": [same, same_b], "max_diff": diff})
        print(f"| `{d}` | {mc['items']} | {mc['accuracy']:.4f} | {lm['acc']:.4f} | {mc['accuracy_norm']:.4f} | "
              f"{lm['acc_bytes']:.4f} | {same} / {same_b} | {diff:.4f} |")
    print(f"\nfidan eval mc: {t_fidan:.0f} s; fidan eval lm-eval (export + lm_eval): {t_lm:.0f} s")
    (work / "crosscheck.json").write_text(json.dumps({"rows": rows, "seconds_fidan": t_fidan,
                                                      "seconds_lm_eval": t_lm}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
