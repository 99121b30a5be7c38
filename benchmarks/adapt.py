"""Adapting a base model to Turkish, measured: vocabulary extension (merges against add_tokens), the
three initialisations of new rows, continued pretraining against the base trained for as long, LoRA
against full tuning.

    python benchmarks/adapt.py --base BASE_HF_DIR --data DATA --work /tmp/adapt-bench \
        [--add 4000] [--rows-minutes 1] [--adapt-minutes 4] [--sft-data SFT_DIR --sft-steps 150]

BASE_HF_DIR is a transformers folder (the stand-in: `fidan pretrain --preset qwen3 --tokenizer QWEN`
then `fidan export hf`). Prints a markdown summary and writes WORK/adapt-bench.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from tokenizers import AddedToken, Tokenizer

import fidan
from fidan.artifacts.datadir import iter_split


def tokens_per_word(tok: Tokenizer, texts: list[str]) -> tuple[float, int]:
    words = sum(len(t.split()) for t in texts)
    n = sum(len(tok.encode(t, add_special_tokens=False).ids) for t in texts)
    return n / words, n


def add_tokens_comparison(base: Path, extended: Path, texts: list[str]) -> dict:
    """The same new token strings given to ``add_tokens`` instead of merges: what happens to running text."""
    record = json.loads((extended / "extension.json").read_text(encoding="utf-8"))
    plain = Tokenizer.from_file(str(base / "tokenizer.json"))
    merged = Tokenizer.from_file(str(extended / "tokenizer.json"))
    added = Tokenizer.from_file(str(base / "tokenizer.json"))
    # add_tokens takes text: new tokens that end inside a UTF-8 character have none and are left out
    whole = [t["text"] for t in record["new_tokens"] if "\ufffd" not in t["text"]]
    added.add_tokens([AddedToken(t, normalized=False) for t in whole])
    sample = "Alarm çaldığında kalarak bekleyenler evlerine döndüler."
    result = {}
    for name, tok in (("base", plain), ("merges", merged), ("add_tokens", added)):
        tpw, n = tokens_per_word(tok, texts)
        ids = tok.encode(sample, add_special_tokens=False).ids
        result[name] = {"tokens_per_word": round(tpw, 3), "tokens": n,
                        "round_trip": all(tok.decode(tok.encode(t).ids) == t for t in texts[:200]),
                        "sample": [tok.decode([i]) for i in ids]}
    result["add_tokens"]["tokens_added"] = len(whole)
    return result


def sft_compare(base: Path, sft_data: str, work: Path, steps: int, r: int) -> dict:
    out = {}
    for name, extra in (("full", {}), (f"lora-r{r}", {"lora_r": r, "lora_alpha": 2 * r})):
        t = time.time()
        s = fidan.sft(model=str(base), data=sft_data, out=str(work / f"sft-{name}"), max_steps=steps,
                      eval_every=max(10, steps // 5), batch_size=16, force=True, quiet=True, seed=0, **extra)
        cfg = yaml.safe_load((work / f"sft-{name}" / "config.yaml").read_text(encoding="utf-8"))
        out[name] = {"val_loss": s["val_loss"], "val_loss_before": s["val_loss_before"],
                     "trainable": cfg.get("trainable_parameters"), "parameters": cfg.get("parameters"),
                     "seconds": round(time.time() - t, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", default="/tmp/adapt-bench")
    ap.add_argument("--add", type=int, default=4000)
    ap.add_argument("--rows-minutes", type=float, default=1.0)
    ap.add_argument("--adapt-minutes", type=float, default=4.0)
    ap.add_argument("--rows-lr", type=float, default=1e-2)
    ap.add_argument("--sft-data")
    ap.add_argument("--sft-steps", type=int, default=150)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--skip-control", action="store_true")
    ap.add_argument("--sft-only", action="store_true", help="only LoRA against full tuning (needs --sft-data)")
    args = ap.parse_args()
    work, base = Path(args.work), Path(args.base)
    work.mkdir(parents=True, exist_ok=True)
    val = list(iter_split(args.data, "val"))
    common = dict(data=args.data, batch_size=16, seed=0, eval_every=1000, max_steps=100_000, force=True, quiet=True)
    result: dict = {"base": str(base), "add": args.add}
    if args.sft_only:
        result["sft"] = sft_compare(base, args.sft_data, work, args.sft_steps, args.lora_r)
        (work / "adapt-bench-sft.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print_sft(result["sft"])
        return

    t = time.time()
    ext = fidan.extend_vocab(base=str(base), data=args.data, add=args.add, out=str(work / "extended"), force=True,
                             eval_docs=0)
    result["extend"] = {**ext["held_out"], "seconds": round(time.time() - t, 1)}
    result["add_tokens"] = add_tokens_comparison(base, work / "extended", val)

    rows = fidan.pretrain(init=str(work / "extended"), out=str(work / "new-rows"), only_new_embeddings=True,
                          budget_minutes=args.rows_minutes, lr=args.rows_lr, **common)
    adapted = fidan.pretrain(init=str(work / "new-rows"), out=str(work / "adapted"),
                             budget_minutes=args.adapt_minutes, **common)
    result["continued"] = {"minutes": args.rows_minutes + args.adapt_minutes, "new_rows_bpb": rows["val_bpb"],
                           "adapted_bpb": adapted["val_bpb"], "steps": [rows["step"], adapted["step"]]}
    base_bpb = fidan.eval_bpb(model=str(base), text=args.data, split="val", force=True,
                              out=str(work / "base-bpb.json"))["bpb"]
    result["base_bpb"] = base_bpb
    if not args.skip_control:  # the base, trained for as long without the extension
        control = fidan.pretrain(init=str(base), out=str(work / "control"),
                                 budget_minutes=args.rows_minutes + args.adapt_minutes, **common)
        result["control_bpb"] = control["val_bpb"]
    if args.sft_data:
        result["sft"] = sft_compare(base, args.sft_data, work, args.sft_steps, args.lora_r)
    (work / "adapt-bench.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))

    e = result["extend"]
    print(f"\nvocabulary: +{args.add} tokens; held-out tokens/word {e['tokens_per_word_before']:.3f} → "
          f"{e['tokens_per_word_after']:.3f} ({e['tokens_saved']:.1%} fewer), learned in {e['seconds']} s")
    print("bits per byte right after extension: " + ", ".join(f"{k} {v:.4f}" for k, v in e["bpb"].items()))
    print(f"add_tokens took {result['add_tokens']['add_tokens']['tokens_added']} of the {args.add} tokens "
          "(the rest end inside a character)")
    for name, r in result["add_tokens"].items():
        print(f"  {name:10s} tokens/word {r['tokens_per_word']}, round trip {r['round_trip']}: {r['sample']}")
    c = result["continued"]
    print(f"continued pretraining ({c['minutes']:g} min): new rows {c['new_rows_bpb']:.4f} → adapted "
          f"{c['adapted_bpb']:.4f}; base {base_bpb:.4f}" + (f"; base trained as long {result['control_bpb']:.4f}"
                                                             if "control_bpb" in result else ""))
    print_sft(result.get("sft") or {})


def print_sft(sft: dict) -> None:
    for name, r in sft.items():
        print(f"sft {name}: held-out answer loss {r['val_loss_before']:.3f} → {r['val_loss']:.3f}, trains "
              f"{r['trainable']:,} of {r['parameters']:,} ({r['trainable'] / r['parameters']:.2%}), {r['seconds']} s")
    if len(sft) == 2:
        full, lora = sft.values()
        print(f"LoRA / full held-out answer loss: {lora['val_loss'] / full['val_loss']:.3f}")


if __name__ == "__main__":
    main()
