"""Training tokens/s of the shared training loop against an earlier fidan checkout, side by side.

    git worktree add /tmp/fidan-before <commit>          # the loop to compare against
    python benchmarks/trainer_speed.py --before /tmp/fidan-before

Each case runs the same command in both source trees in turn (A B A B ...), in fresh processes, on the
same data folder and tokenizer (the bundled speeches + treebank, vocab 8000, built once under --work).
A run's figure is the median tokens/s of its steps after the first three (warm-up); the reported ratio
is the median of the pair-by-pair ratios (after / before).

Cases: pretraining `ders` and `hizli` (their default precision: bf16 where the CPU has it), and
instruction tuning: the earlier tuning loop (fp32 only) against the shared loop in bf16 and in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

PRETRAIN = ("from fidan.training.pretrain import pretrain; pretrain(data={data!r}, tokenizer={tok!r}, out={out!r}, "
            "preset={preset!r}, max_steps={steps}, eval_every=10**6, checkpoint_every=10**6, quiet=True{extra})")
SFT = ("from fidan.training.sft import sft; sft(model={base!r}, data={sft_data!r}, out={out!r}, max_steps={steps}, "
       "batch_size=16, lr=2e-3, dropout=0.0, eval_every=10**6, checkpoint_every=10**6, device='cpu', "
       "quiet=True{extra})")


def run_case(tree: Path, code: str, out: Path) -> float:
    code = f"import fidan; assert fidan.__file__.startswith({str(tree.resolve())!r}), fidan.__file__; {code}"
    env = {**os.environ, "PYTHONPATH": str(tree), "TOKENIZERS_PARALLELISM": "false"}
    # cwd outside both trees: `python -c` puts the working directory first on sys.path.
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=out.parent)
    if proc.returncode:
        raise SystemExit(f"failed in {tree}:\n{proc.stderr[-2000:]}")
    rates = [json.loads(line)["tokens_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    return statistics.median(rates[3:])


def prepare(work: Path) -> tuple[Path, Path, Path, Path]:
    """Data, tokenizer, a short pretrained `ders` base and an instruction set, built once."""
    from fidan.bench.bundled import bundled_data
    from fidan.corpus.instructions import build_instructions
    from fidan.training.pretrain import pretrain

    data, tok = (Path(p) for p in bundled_data(work))
    base, inst = work / "base", work / "sft-data"
    if not (base / "model.safetensors").exists():
        pretrain(data=str(data), tokenizer=str(tok), out=str(base), max_steps=20, quiet=True, force=True)
    if not inst.exists():
        build_instructions(out=str(inst), kenet_max=1000, skip_missing=True)
    return data, tok, base, inst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="a checkout of the earlier fidan")
    parser.add_argument("--after", type=Path, default=HERE, help="the fidan to measure (default: this checkout)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-trainer"), help="data and tokenizer cache")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args()
    data, tok, base, inst = prepare(args.work.resolve())
    fill = dict(data=str(data), tok=str(tok), base=str(base), sft_data=str(inst), steps=args.steps)
    cases = [
        ("pretrain ders", PRETRAIN.format(preset="ders", extra="", **fill, out="{out}"),
         PRETRAIN.format(preset="ders", extra="", **fill, out="{out}")),
        ("pretrain hizli", PRETRAIN.format(preset="hizli", extra="", **fill, out="{out}"),
         PRETRAIN.format(preset="hizli", extra="", **fill, out="{out}")),
        ("sft: before fp32 vs after bf16", SFT.format(extra="", **fill, out="{out}"),
         SFT.format(extra=", precision='bf16'", **fill, out="{out}")),
        ("sft: before fp32 vs after fp32", SFT.format(extra="", **fill, out="{out}"),
         SFT.format(extra=", precision='fp32'", **fill, out="{out}")),
    ]
    import torch

    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print("| case | before tokens/s | after tokens/s | after / before (median of pairs) |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case, (name, before_code, after_code) in enumerate(cases):
            if args.only not in name:
                continue
            pairs = []
            for rep in range(args.reps):
                b_out, a_out = Path(tmp) / f"b{case}-{rep}", Path(tmp) / f"a{case}-{rep}"
                b = run_case(args.before, before_code.replace("{out}", str(b_out)), b_out)
                a = run_case(args.after, after_code.replace("{out}", str(a_out)), a_out)
                pairs.append((b, a))
            ratio = statistics.median(a / b for b, a in pairs)
            print(f"| {name} | {statistics.median(b for b, _ in pairs):,.0f} | "
                  f"{statistics.median(a for _, a in pairs):,.0f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
