"""Instruction-tuning quality: held-out answer-only loss before and after the demo's tuning step.

    fidan demo --out runs/demo --force                       # pretrains and tunes once (prints the ratio)
    python benchmarks/sft_quality.py --run runs/demo         # re-runs only the tuning step on that model

The tuning step is `fidan.demos.pipeline.instruction_tuning`: the offline instruction set (KeNet definitions,
chatterbot-corpus dialogs, questions on the speeches' metadata, food-safety FAQ), `fidan sft` for a CPU
time budget, held-out response-only loss (nats per supervised token, </RESP> included) before and after.
The target is after / before <= 0.6 (the lesson went from 3.84 to 1.82).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a pretrained run folder (e.g. the demo's)")
    parser.add_argument("--minutes", type=float, default=1.5, help="CPU minutes for tuning (the demo's default)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from fidan.demos.pipeline import instruction_tuning

    t0 = time.time()
    result = instruction_tuning(Path(args.run), args.minutes, args.seed, args.device)
    ratio = result["val_loss"] / result["val_loss_before"]
    print(f"\nmachine: {torch.get_num_threads()} threads, {cpu_model()}, torch {torch.__version__}")
    print(f"tuning: {result['step']} steps ({result['stopped'] or 'full schedule'}), {time.time() - t0:.0f} s wall")
    print(f"held-out answer loss: before {result['val_loss_before']:.3f}, after {result['val_loss']:.3f} "
          f"nats/token; ratio {ratio:.2f} (target <= 0.60: {'met' if ratio <= 0.6 else 'missed'})")
    print(f"held-out answer bits/byte: before {result['val_bpb_before']:.3f}, after {result['val_bpb']:.3f}")


if __name__ == "__main__":
    main()
