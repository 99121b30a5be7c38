"""Gradient checkpointing: peak memory and step time with and without it, at a 1024-token block, for fidan's
`hizli` preset and for a transformers stand-in (a Qwen3 of about the same size), each run in a fresh process.

    python benchmarks/grad_checkpointing.py --work /tmp/ckpt-bench [--block 1024 --batch 8 --steps 3]

The data is the bundled treebank and speeches, tokenized with an 8k fidan tokenizer trained on them, with
no validation split (the peak is training's). Peak RSS is the
kernel's (VmHWM, the process's own high-water mark); the table also gives it less the process's RSS before the model
was built (Python, torch, transformers), which is what checkpointing can shrink. Losses are printed to show
the two runs train alike. Writes WORK/grad-checkpointing.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, os, sys
import psutil, torch, transformers
import fidan.training.pretrain as p
from fidan.runtime.device import peak_rss_mb
baseline = psutil.Process(os.getpid()).memory_info().rss / 2**20
summary = p.pretrain(**json.loads(sys.argv[1]))
print("RESULT " + json.dumps({"baseline_mb": baseline, "peak_mb": peak_rss_mb(),
                             "train_seconds": summary["train_seconds"], "step": summary["step"]}))
"""


def child(args: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def losses(run: Path) -> list[float]:
    return [round(json.loads(x)["loss"], 4) for x in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(x)["kind"] == "train"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    from fidan.corpus.prepare import prepare_data
    from fidan.tokenizer.train import train_tokenizer

    data, tok = work / "data-train-only", work / "tok"
    if not (data / "manifest.json").exists():  # no validation split: the peak measured is training's
        prepare_data(source=["tr-treebank", "tr-speeches"], out=str(data), val_fraction=0.0)
    if not (tok / "tokenizer.json").exists():
        train_tokenizer(data=str(data), out=str(tok), vocab_size=8000)
    hf = work / "qwen3-standin"
    if not (hf / "config.json").exists():  # a Qwen3 of hizli's size: 4 layers, width 256
        from fidan.adapt.export import export_hf

        child({"data": str(data), "tokenizer": str(tok), "out": str(work / "qwen3-run"), "preset": "qwen3",
               "depth": 4, "block_size": a.block, "max_steps": 1, "batch_size": 1, "quiet": True, "force": True,
               "eval_every": 10**6})
        export_hf(model=str(work / "qwen3-run"), out=str(hf), force=True)
    common = {"data": str(data), "block_size": a.block, "batch_size": a.batch, "max_steps": a.steps,
              "warmup_steps": 1, "eval_every": 10**6, "checkpoint_every": 10**6, "eval_windows": 1,
              "precision": "fp32", "dropout": 0.0, "quiet": True, "force": True, "seed": 1}
    models = {"hizli": {"tokenizer": str(tok), "preset": "hizli"},
              "transformers Qwen3": {"init": str(hf), "load_dtype": "fp32"}}
    results = {}
    for name, model in models.items():
        for ckpt in (False, True):
            opts = {**common, **model, "out": str(work / "runs" / f"{name.split()[0]}-{int(ckpt)}"),
                    "grad_checkpointing": ckpt}
            if "init" in opts:
                opts.pop("dropout")
            r = child(opts)
            r["losses"] = losses(Path(opts["out"]))
            results[f"{name}, checkpointing {'on' if ckpt else 'off'}"] = r
            print(f"{name} ckpt={ckpt}: peak {r['peak_mb']:.0f} MB (baseline {r['baseline_mb']:.0f}), "
                  f"{r['train_seconds']:.1f} s, losses {r['losses']}", flush=True)
    out = {"block": a.block, "batch": a.batch, "steps": a.steps, "results": results,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    (work / "grad-checkpointing.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"\n| model (block {a.block}, batch {a.batch}) | checkpointing | peak RSS MB | peak - baseline MB | "
          "train s | ratio (peak) | ratio (peak - baseline) |")
    print("|---|---|---|---|---|---|---|")
    for name in models:
        off, on = results[f"{name}, checkpointing off"], results[f"{name}, checkpointing on"]
        for label, r in (("off", off), ("on", on)):
            ratio = "" if label == "off" else f"{on['peak_mb'] / off['peak_mb']:.2f}"
            net = "" if label == "off" else \
                f"{(on['peak_mb'] - on['baseline_mb']) / (off['peak_mb'] - off['baseline_mb']):.2f}"
            print(f"| {name} | {label} | {r['peak_mb']:.0f} | {r['peak_mb'] - r['baseline_mb']:.0f} | "
                  f"{r['train_seconds']:.1f} | {ratio} | {net} |")


if __name__ == "__main__":
    main()
