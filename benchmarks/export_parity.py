"""Export parity: max |logit difference| between a fidan model and its `fidan export hf` folder loaded with
AutoModelForCausalLM, for every preset at its full size, and `fidan eval bpb` of a trained run against
its export.

    python benchmarks/export_parity.py [--run TRAINED_RUN --data DATA]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import transformers

import fidan
from fidan.artifacts.runs import copy_tokenizer, save_weights
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.model.gpt import GPT, PRESETS, config_from_preset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="a tokenizer folder (its size sets the vocabulary)")
    ap.add_argument("--run", help="a trained fidan run, to compare eval bpb with its export")
    ap.add_argument("--data", help="the data folder whose val split eval bpb scores")
    args = ap.parse_args()
    tok = load_tokenizer(args.tokenizer)
    work = Path(tempfile.mkdtemp(prefix="fidan-export-"))
    torch.manual_seed(0)
    print("| preset | transformers class | parameters | max abs logit difference (fp32) |\n|---|---|---|---|")
    for preset in PRESETS:
        model = GPT(config_from_preset(preset, tok.vocab_size))
        with torch.no_grad():  # away from the initialisation: zero-init projections would hide mapping errors
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        save_weights(model, work / preset)
        copy_tokenizer(tok, work / preset)
        out = fidan.export_hf(model=str(work / preset), out=str(work / f"{preset}-hf"))
        hf = transformers.AutoModelForCausalLM.from_pretrained(str(work / f"{preset}-hf")).eval()
        x = torch.randint(0, tok.vocab_size, (4, model.config.block_size))
        with torch.no_grad():
            diff = (hf(x).logits - model.eval()(x)[0]).abs().max().item()
        print(f"| {preset} | {out['architecture']} | {out['parameters']:,} | {diff:.2e} |")
    if args.run and args.data:
        fidan.export_hf(model=args.run, out=str(work / "run-hf"))
        a = fidan.eval_bpb(model=args.run, text=args.data, split="val", out=str(work / "a.json"))["bpb"]
        b = fidan.eval_bpb(model=str(work / "run-hf"), text=args.data, split="val", out=str(work / "b.json"))["bpb"]
        print(f"\neval bpb on the val split: fidan run {a:.6f}, exported folder {b:.6f}, difference {abs(a - b):.2e}")


if __name__ == "__main__":
    main()
