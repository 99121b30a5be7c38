"""Tokenizer lab benchmark: training cost, encode speed and quality against Qwen and Mistral.

    fidan data prepare --source tr-speeches --source tr-treebank --out /tmp/tokdata
    python benchmarks/tokenizers_bench.py --data /tmp/tokdata --out /tmp/tokbench

1. Training cost: fidan's 32k BPE with the Turkish pre-tokenizer (the whole `fidan.train_tokenizer` call,
   reading shards and saving included) against the raw `tokenizers` BpeTrainer with GPT-2's byte-level
   pre-tokenizer on the same documents, run in turn (A B A B ...); the figure is the median pair ratio.
2. Encode speed: the two tokenizers from 1 encode the same documents one by one, in turn; median ratio.
3. `--morph` training time, with an empty analyzer cache (zemberek start and analyses included) and warm.
4. Quality: `fidan tokenizer eval` on the held-out val split for fidan's tokenizers and the references.
5. The `--morph-keep` dial: the same evaluation for several numbers of frequent words kept whole.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def raw_bpe(data: str, out: Path, vocab_size: int) -> None:
    """The yardstick: the `tokenizers` BpeTrainer exactly as its documentation shows it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from fidan.artifacts.datadir import iter_split

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(iter_split(data, "train"), trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, torch {torch.__version__}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="data folder from `fidan data prepare`")
    ap.add_argument("--out", required=True, help="folder for the tokenizers, results.json and results.png")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--pairs", type=int, default=3, help="A/B pairs for the timing ratios")
    ap.add_argument("--skip-cold", action="store_true", help="do not time --morph with an empty analyzer cache")
    ap.add_argument("--keep", type=int, default=1000, help="--morph-keep of the headline --morph tokenizer")
    ap.add_argument("--sweep", type=int, nargs="*", default=[0, 500, 1000, 2000, 5000],
                    help="--morph-keep values for the trade-off table")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    from fidan.artifacts.datadir import iter_split
    from fidan.tokenizer.evaluate import evaluate_tokenizers
    from fidan.tokenizer.train import train_tokenizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    v = args.vocab_size
    k = f"{v // 1000}k"
    print(f"machine: {machine()}")
    report: dict = {"machine": machine(), "vocab_size": v, "data": args.data}

    # 1. training cost, A B A B ...
    fidan_dir, raw_dir = out / f"fidan-bpe{k}", out / f"raw-bpe{k}"
    fidan_t, raw_t = [], []
    for _ in range(args.pairs):
        fidan_t.append(timed(lambda: train_tokenizer(data=args.data, out=str(fidan_dir), vocab_size=v, force=True)))
        raw_t.append(timed(lambda: raw_bpe(args.data, raw_dir, v)))
    train_ratio = statistics.median(a / b for a, b in zip(fidan_t, raw_t, strict=True))
    report["train"] = {"fidan_s": fidan_t, "raw_s": raw_t, "ratio_median": train_ratio}
    print(f"train {k} BPE: fidan {statistics.median(fidan_t):.2f}s, raw BpeTrainer {statistics.median(raw_t):.2f}s, "
          f"median ratio {train_ratio:.2f} (target <= 1.5)")

    # 2. encode speed, A B A B ...
    docs = list(iter_split(args.data, "train"))
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    fidan_tok = Tokenizer.from_file(str(fidan_dir / "tokenizer.json"))
    raw_tok = Tokenizer.from_file(str(raw_dir / "tokenizer.json"))

    def encode_all(tok: Tokenizer) -> None:
        for d in docs:
            tok.encode(d, add_special_tokens=False)

    encode_all(fidan_tok), encode_all(raw_tok)  # warm-up
    fe, re_ = [], []
    for _ in range(args.pairs):
        fe.append(timed(lambda: encode_all(fidan_tok)))
        re_.append(timed(lambda: encode_all(raw_tok)))
    enc_ratio = statistics.median(b / a for a, b in zip(fe, re_, strict=True))  # throughput ratio
    report["encode"] = {"bytes": n_bytes, "fidan_s": fe, "raw_s": re_, "throughput_ratio_median": enc_ratio}
    print(f"encode {n_bytes / 1e6:.2f} MB one document at a time: fidan {n_bytes / 1e6 / statistics.median(fe):.2f} MB/s, "
          f"plain byte-level BPE {n_bytes / 1e6 / statistics.median(re_):.2f} MB/s, "
          f"throughput ratio {enc_ratio:.2f} (target >= 0.5)")

    # 3. --morph training time (the headline tokenizer: --morph --min-frequency 1 --morph-keep KEEP)
    morph_dir = out / f"fidan-morph{k}"
    morph_args = {"vocab_size": v, "morph": True, "min_frequency": 1, "morph_keep": args.keep, "force": True}
    morph = {}
    if not args.skip_cold:
        cold = Path(tempfile.mkdtemp(prefix="fidan-cache-"))
        os.environ["FIDAN_CACHE"] = str(cold)
        import subprocess
        import sys

        # A fresh process, so the analyzer's start-up is paid as a user pays it.
        code = ("from fidan.tokenizer.train import train_tokenizer as t; "
                f"t(data={args.data!r}, out={str(morph_dir)!r}, **{morph_args!r})")
        morph["cold_s"] = timed(lambda: subprocess.run([sys.executable, "-c", code], check=True))
        shutil.rmtree(cold, ignore_errors=True)
        del os.environ["FIDAN_CACHE"]
    morph["warm_s"] = timed(lambda: train_tokenizer(data=args.data, out=str(morph_dir), **morph_args))
    report["morph_train"] = morph
    print(f"--morph {k} training: " + ", ".join(f"{key} {val:.1f}s" for key, val in morph.items()))

    # 4. quality on the held-out val split
    others = {}
    for algorithm in ("unigram", "wordpiece"):
        others[algorithm] = out / f"fidan-{algorithm}{k}"
        train_tokenizer(data=args.data, out=str(others[algorithm]), vocab_size=v, algorithm=algorithm, force=True)
    specs = [str(morph_dir), str(fidan_dir), str(others["unigram"]), str(others["wordpiece"]),
             str(raw_dir), "qwen", "qwen3.6", "mistral-tekken", "mistral-sp"]
    results = evaluate_tokenizers(specs, args.data, json=str(out / "eval.json"), plot=str(out / "eval.png"),
                                  force=True)
    report["eval"] = results
    by = {r["name"]: r for r in results}
    best_ref_pure = max(by[n]["pure"] for n in ("qwen", "qwen3.6", "mistral-tekken"))
    m = by[morph_dir.name]
    best_f1 = max(r["boundaries_morph"]["f1"] for r in results)
    checks = {
        "fertility <= 1.75": (m["fertility"], m["fertility"] <= 1.75),
        "%Pure >= 1.5x best of qwen/qwen3.6/tekken": (m["pure"] / best_ref_pure, m["pure"] >= 1.5 * best_ref_pure),
        "highest boundary F1 (analyzer) in the table": (m["boundaries_morph"]["f1"],
                                                        m["boundaries_morph"]["f1"] >= best_f1),
        "train time <= 1.5x raw BpeTrainer": (train_ratio, train_ratio <= 1.5),
        "encode throughput >= 0.5x plain BPE": (enc_ratio, enc_ratio >= 0.5),
    }
    report["targets"] = {name: {"value": val, "met": ok} for name, (val, ok) in checks.items()}
    print(f"\ntargets for {morph_dir.name}:")
    for name, (val, ok) in checks.items():
        print(f"  {'met   ' if ok else 'MISSED'} {name}: {val:.3f}")
    # 5. the --morph-keep dial: sequence length against morphological purity
    sweep = []
    for keep in args.sweep:
        path = out / f"morph{k}-keep{keep}"
        train_tokenizer(data=args.data, out=str(path), **{**morph_args, "morph_keep": keep})
        sweep.append(str(path))
    if sweep:
        report["sweep"] = evaluate_tokenizers(sweep, args.data, json=str(out / "sweep.json"), repeats=1, force=True)

    (out / "bench.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"→ {out}/bench.json, eval.json, eval.png")


if __name__ == "__main__":
    main()
