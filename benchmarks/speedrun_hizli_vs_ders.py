"""Time to quality: does `hizli` reach, within 2 minutes, the held-out bits per byte `ders` reaches in 10?

    python benchmarks/speedrun_hizli_vs_ders.py                    # ders 10 min, then hizli 2 min
    python benchmarks/speedrun_hizli_vs_ders.py --ders-minutes 5   # a shorter reference

Both run `fidan bench speedrun` on the bundled corpus with the same tokenizer (vocab 8000). The ders
run's final held-out bpb becomes hizli's --target-bpb; the plot overlays both curves. Time is training
time (evaluation excluded). Run it on a quiet machine: the load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import os

import torch

from fidan.bench.speedrun import bench_speedrun
from fidan.runtime.environment import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/speedrun")
    parser.add_argument("--ders-minutes", type=float, default=10.0)
    parser.add_argument("--hizli-minutes", type=float, default=2.0)
    parser.add_argument("--reuse-ders", action="store_true", help="reuse an earlier ders run in --work")
    args = parser.parse_args()

    loads = [os.getloadavg()[0]]
    ders_dir = os.path.join(args.work, "speedrun-ders")
    if args.reuse_ders:
        import json

        ders = json.loads(open(os.path.join(ders_dir, "speedrun.json"), encoding="utf-8").read())
    else:
        ders = bench_speedrun(preset="ders", minutes=args.ders_minutes, work=args.work, force=True)
    loads.append(os.getloadavg()[0])
    hizli = bench_speedrun(preset="hizli", minutes=args.hizli_minutes, work=args.work, target_bpb=ders["final_bpb"],
                           compare=[ders_dir], force=True)
    loads.append(os.getloadavg()[0])
    print(f"\nmachine: {os.cpu_count()} cores, {cpu_model()}, torch {torch.__version__}; load average "
          + " / ".join(f"{x:.2f}" for x in loads) + " (start / after ders / after hizli)")
    print(f"ders : {ders['final_bpb']:.4f} bits/byte after {ders['train_seconds']:.0f} s ({ders['steps']} steps)")
    print(f"hizli: {hizli['final_bpb']:.4f} bits/byte after {hizli['train_seconds']:.0f} s ({hizli['steps']} steps)")
    reached = hizli["seconds_to_target"]
    if reached is None:
        print(f"hizli did not reach {ders['final_bpb']:.4f} within {args.hizli_minutes:g} min (target missed)")
    else:
        verdict = "met" if reached <= 120 else "missed"
        print(f"hizli reached {ders['final_bpb']:.4f} after {reached:.0f} s of training (target <= 120 s: {verdict})")
    print(f"plot: {hizli['plot']}")


if __name__ == "__main__":
    main()
