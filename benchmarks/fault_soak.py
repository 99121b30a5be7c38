"""A longer fault soak than the test suite's: real `fidan` processes killed with SIGKILL at seeded random
moments, then resumed and compared step by step with an uninterrupted run; and checkpoints damaged in
seeded random ways (cut short, a byte flipped, a file deleted, emptied), each of which must be detected.

    python benchmarks/fault_soak.py --kills 20 --damages 30

Prints the counts: trials survived out of trials run, damaged checkpoints detected out of injected.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fidan.artifacts.runs import checkpoint_damage, checkpoint_dirs, read_metrics
from fidan.corpus.prepare import prepare_data
from fidan.tokenizer.train import train_tokenizer

TEXT = ["Türkiye Cumhuriyeti 1923 yılında kuruldu ve başkenti Ankara oldu.",
        "Öğretmenler çocuklara ılık süt ve çörek ikram ettiler.",
        "Ağaçların gölgesinde oturan yaşlı adam gazetesini okuyordu.",
        "Çiftçiler tarlalarını sürdü, buğday ektiler ve yağmuru beklediler."]


def losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run) if r["kind"] == "train"]


def fidan(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fidan", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def kill_trials(name: str, args: list[str], work: Path, n: int, rng: random.Random) -> dict:
    whole = work / f"{name}-whole"
    t0 = time.time()
    assert fidan(*args, "--out", str(whole)).wait() == 0, f"{name}: the uninterrupted run failed"
    span = time.time() - t0
    expected = losses(whole)
    survived = killed = 0
    failures: list[dict] = []
    for i in range(n):
        run = work / f"{name}-{i}"
        proc = fidan(*args, "--out", str(run))
        try:
            proc.wait(timeout=rng.uniform(0.1, span))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
        sound = all(checkpoint_damage(c) is None for c in checkpoint_dirs(run))
        ok = fidan(*args, "--out", str(run), "--resume").wait() == 0
        same = losses(run) == expected
        survived += sound and ok and same
        if not (sound and ok and same):
            failures.append({"trial": i, "sound": sound, "resumed": ok, "same_losses": same,
                             "steps": [s for s, _ in losses(run)], "differs_at": next(
                                 (a[0] for a, b in zip(losses(run), expected, strict=False) if a != b), None)})
        shutil.rmtree(run, ignore_errors=True)
    return {"trials": n, "killed": killed, "survived": survived, "seconds_per_run": round(span, 1),
            "failures": failures}


def damage_trials(args: list[str], work: Path, n: int, rng: random.Random) -> dict:
    base = work / "damage-base"
    assert fidan(*args, "--out", str(base), "--until-step", "6").wait() == 0
    detected = resumed = 0
    kinds: dict[str, int] = {}
    for i in range(n):
        run = work / f"damage-{i}"
        shutil.copytree(base, run)
        newest = checkpoint_dirs(run)[-1]
        target = rng.choice(sorted(p for p in newest.iterdir() if p.is_file()))
        kind = rng.choice(["cut short", "byte flipped", "deleted", "emptied"])
        kinds[kind] = kinds.get(kind, 0) + 1
        data = target.read_bytes()
        if kind == "cut short":
            target.write_bytes(data[: rng.randrange(max(1, len(data)))])
        elif kind == "byte flipped":
            at = rng.randrange(len(data))
            target.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
        elif kind == "deleted":
            target.unlink()
        else:
            target.write_bytes(b"")
        detected += checkpoint_damage(newest) is not None
        resumed += fidan(*args, "--out", str(run), "--resume").wait() == 0
        shutil.rmtree(run, ignore_errors=True)
    return {"injected": n, "detected": detected, "resumed_from_the_one_before": resumed, "kinds": kinds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--damages", type=int, default=30)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        docs = work / "docs.jsonl"
        docs.write_text("".join(json.dumps({"text": f"{TEXT[i % 4]} {TEXT[(i * 3) % 4]} Belge {i}."},
                                           ensure_ascii=False) + "\n" for i in range(300)), encoding="utf-8")
        prepare_data(source=[str(docs)], out=str(work / "data"), val_fraction=0.2)
        train_tokenizer(data=str(work / "data"), out=str(work / "tok"), vocab_size=400)
        sft_data = work / "sft.jsonl"
        sft_data.write_text("".join(json.dumps({"instruction": f"Soru {i}: başkent neresi?", "output": f"Ankara {i}."},
                                               ensure_ascii=False) + "\n" for i in range(60)), encoding="utf-8")
        common = ["--batch-size", "4", "--max-steps", "16", "--checkpoint-every", "2", "--keep-checkpoints", "2",
                  "--eval-every", "4", "--precision", "fp32", "--peak-gflops", "100", "--quiet"]
        pre = ["pretrain", "--data", str(work / "data"), "--tokenizer", str(work / "tok"), "--block-size", "32",
               "--depth", "1", "--eval-windows", "4", *common]
        result = {"pretrain": kill_trials("pretrain", pre, work, args.kills, rng)}
        assert fidan(*pre, "--out", str(work / "base")).wait() == 0
        tune = ["sft", "--model", str(work / "base"), "--data", str(sft_data), *common]
        result["sft"] = kill_trials("sft", tune, work, args.kills, rng)
        result["damaged checkpoints"] = damage_trials(pre, work, args.damages, rng)
    result["seconds"] = round(time.time() - t0)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
