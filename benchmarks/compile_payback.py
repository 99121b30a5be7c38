"""When torch.compile pays for itself: its compile time against the steps it makes faster.

    python benchmarks/compile_payback.py --data runs/demo/data --tokenizer runs/demo/tokenizer
    python benchmarks/compile_payback.py --data D --tokenizer T --preset hizli --precision bf16 --steps 80

For each preset and precision it runs `fidan pretrain` twice in fresh processes, `--no-compile` and
`--compile`, for --steps steps (each compiled run with an empty inductor cache, as a user's first run has),
and reads the step times from metrics.jsonl. The compile time is how much longer the first compiled step takes
than the first eager one, plus what a compiled step saves (both first steps also warm up the allocator); the speed-up is the eager median over the compiled median (steps after the fifth);
a run repays compiling once it is longer than compile time / (1 - 1 / speed-up). fidan's default compiles
a run with 5 minutes or more of training left (fidan/training/compiling.py): the last column says whether
that threshold is past the break-even point here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

THRESHOLD_MIN = 5.0  # fidan.training.compiling.PAYS_AFTER_S / 60


def step_times(run: Path) -> list[float]:
    clock = [json.loads(line)["train_s"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "train"]
    return [b - a for a, b in zip([0.0, *clock[:-1]], clock, strict=True)]


def train(data: str, tokenizer: str, preset: str, precision: str, steps: int, compiled: bool, root: Path) -> list[float]:
    out = root / f"{preset}-{precision}-{'compiled' if compiled else 'eager'}"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": tempfile.mkdtemp(dir=root)}  # a cold compile
    cmd = [sys.executable, "-m", "fidan", "pretrain", "--data", data, "--tokenizer", tokenizer, "--preset", preset,
           "--precision", precision, "--max-steps", str(steps), "--eval-every", str(10 * steps), "--eval-windows",
           "1", "--out", str(out), "--quiet", "--compile" if compiled else "--no-compile"]
    subprocess.run(cmd, check=True, env=env)
    return step_times(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--preset", action="append", help="ders, hizli (repeatable; default both)")
    ap.add_argument("--precision", action="append", help="fp32, bf16 (repeatable; default both)")
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    print(f"torch threads: {os.environ.get('OMP_NUM_THREADS', 'all cores')}, load average {os.getloadavg()[0]:.2f}")
    print("| preset, precision | eager s/step | compiled s/step | speed-up | compile time | repaid after | "
          f"default ({THRESHOLD_MIN:.0f} min) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset or ["ders", "hizli"]:
            for precision in args.precision or ["fp32", "bf16"]:
                eager = train(args.data, args.tokenizer, preset, precision, args.steps, False, Path(tmp))
                comp = train(args.data, args.tokenizer, preset, precision, args.steps, True, Path(tmp))
                e, c = statistics.median(eager[5:]), statistics.median(comp[5:])
                compile_s = comp[0] - eager[0] + (e - c)
                speedup = e / c
                repaid = compile_s / (1 - 1 / speedup) / 60 if speedup > 1 else float("inf")
                verdict = "past break-even" if repaid < THRESHOLD_MIN else "**not** past break-even"
                print(f"| {preset}, {precision} | {e:.3f} | {c:.3f} | {speedup:.2f}x | {compile_s:.1f} s | "
                      f"{repaid:.1f} min | {verdict} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
