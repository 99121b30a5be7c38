"""`fidan tokenizer encode` speed: the piecewise encoder against the old loop and raw `tokenizers`.

    python benchmarks/encode_speed.py --work /tmp/encbench            # builds a ~100 MB data folder and a 16k BPE
    python benchmarks/encode_speed.py --data DATA --tokenizer TOK --work /tmp/encbench

Without --data, the bundled speeches and treebank sentences are written over and over (each copy with 10%
of its words replaced by other words of the corpus, seeded, so that deduplication keeps them) into one
JSONL file of --mb megabytes, and `fidan data prepare --no-quality` makes the data folder. Without
--tokenizer, `fidan tokenizer train --vocab-size 16000` (BPE, Turkish pre-tokenizer) is trained on the
bundled corpus alone. Both are kept in --work for the next run.

Contenders, each its own process, in turn, --rounds times (A B C D A B C D ...):

- old: the loop `fidan tokenizer encode` ran before the piecewise encoder, copied below as the yardstick
  (encode_batch of 512 documents, ids through np.fromiter, one file per split);
- raw: `tokenizers`' own encode_batch (and encode_batch_fast) on the same documents, already in memory,
  about 4 MB of text per call; only the calls are timed: the ceiling for one process;
- fidan w1, fidan w2: `fidan tokenizer encode --force --workers 1|2`, the whole command timed.

MB/s = UTF-8 megabytes (10^6 bytes) of the documents ÷ seconds. The ratio to the old loop is the median
of the per-round ratios. Peak RSS is the largest sum, over a process and all its descendants (worker
processes included), of the resident sets seen by polling every 100 ms. Then fidan w2 is killed (SIGKILL,
the whole process group) once half its pieces are done and run again: it must say "resuming" and write
train.bin and val.bin with the same sha256 as an uninterrupted run and as the old loop.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def old_encode_splits(data: Path, tokenizer: Path, out: Path) -> None:
    """The yardstick: `encode_splits` as it was before the piecewise encoder (same logic, own output folder)."""
    from tqdm.auto import tqdm

    from fidan.artifacts.datadir import SPLITS, iter_split, load_manifest
    from fidan.artifacts.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    manifest = load_manifest(data)
    dtype = np.dtype(np.uint16) if tok.vocab_size <= 65536 else np.dtype(np.uint32)
    eos = tok.eos_id
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        n_docs = manifest["splits"][split]["documents"]
        with open(out / f"{split}.bin", "wb") as f, tqdm(total=n_docs, desc=f"encode {split}", unit="doc") as bar:
            batch: list[str] = []

            def flush(batch: list[str]) -> int:
                encs = tok.tokenizer.encode_batch(batch, add_special_tokens=False)
                ids = np.fromiter((i for e in encs for i in (*e.ids, eos)), dtype=np.int64)
                f.write(ids.astype(dtype).tobytes())
                bar.update(len(batch))
                return len(ids)

            for doc in iter_split(data, split):
                batch.append(doc)
                if len(batch) == 512:
                    flush(batch)
                    batch = []
            if batch:
                flush(batch)


def raw_encode(data: Path, tokenizer: Path, fast: bool) -> float:
    """Seconds for `tokenizers` alone to encode every document, ~4 MB of text per call (reading not timed)."""
    from tokenizers import Tokenizer

    from fidan.artifacts.datadir import SPLITS, iter_split

    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    batches, batch, size = [], [], 0
    for split in SPLITS:
        for doc in iter_split(data, split):
            batch.append(doc)
            size += len(doc)
            if size >= 4_000_000:
                batches.append(batch)
                batch, size = [], 0
    batches.append(batch)
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    start = time.perf_counter()
    for b in batches:
        encode(b, add_special_tokens=False)
    return time.perf_counter() - start


def run_measured(cmd: list[str], env: dict | None = None, stop=None) -> dict:
    """Run ``cmd``; wall seconds, peak RSS (MB) of the process tree, its stdout, and whether ``stop`` ended it."""
    import psutil

    errors = tempfile.TemporaryFile("w+")  # progress bars and errors: shown only when the command fails
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    top, peak, killed = psutil.Process(proc.pid), 0, False
    while proc.poll() is None:
        try:
            tree = [top, *top.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        if stop is not None and stop():
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.1)
    out = proc.stdout.read()
    seconds = time.perf_counter() - start
    if proc.returncode and not killed:
        errors.seek(0)
        raise SystemExit(f"{' '.join(cmd)} failed with status {proc.returncode}:\n{out}{errors.read()[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": peak / 1e6, "stdout": out, "killed": killed}


def sha(folder: Path) -> dict[str, str]:
    return {s: hashlib.sha256((folder / f"{s}.bin").read_bytes()).hexdigest() for s in ("train", "val")}


def build_corpus(work: Path, mb: float) -> Path:
    """~``mb`` MB of distinct Turkish documents as a data folder (kept for the next run)."""
    from fidan.text.bundled import speeches, treebank_sentences

    data = work / f"data-{mb:g}mb"
    if (data / "manifest.json").exists():
        return data
    docs = [d["text"] for d in speeches()] + [d["text"] for d in treebank_sentences()]
    vocab = [w for d in docs[:200] for w in d.split()]
    rng = random.Random(0)
    src, written = work / f"corpus-{mb:g}mb.jsonl", 0
    with open(src, "w", encoding="utf-8") as f:
        while written < mb * 1e6:
            for doc in docs:
                words = doc.split(" ")
                for i in rng.sample(range(len(words)), max(1, len(words) // 10)):
                    words[i] = rng.choice(vocab)
                text = " ".join(words)
                f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
                written += len(text.encode("utf-8"))
    fidan = [sys.executable, "-m", "fidan"]
    subprocess.run([*fidan, "data", "prepare", "--source", str(src), "--out", str(data), "--no-quality"],
                   check=True, stderr=subprocess.DEVNULL)
    src.unlink()
    return data


def build_tokenizer(work: Path) -> Path:
    tok = work / "tok-bpe16k"
    if (tok / "tokenizer.json").exists():
        return tok
    fidan = [sys.executable, "-m", "fidan"]
    small = work / "data-bundled"
    if not (small / "manifest.json").exists():
        subprocess.run([*fidan, "data", "prepare", "--source", "tr-speeches", "--source", "tr-treebank",
                        "--out", str(small)], check=True, stderr=subprocess.DEVNULL)
    subprocess.run([*fidan, "tokenizer", "train", "--data", str(small), "--vocab-size", "16000", "--out", str(tok)],
                   check=True, stderr=subprocess.DEVNULL)
    return tok


def machine() -> str:
    import platform

    import tokenizers

    from fidan.runtime.environment import cpu_model

    return (f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
            f"tokenizers {tokenizers.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="folder for the data folder, tokenizer and results.json")
    ap.add_argument("--data", help="a data folder from `fidan data prepare` (default: build one of --mb MB)")
    ap.add_argument("--tokenizer", help="a tokenizer folder (default: train a 16k BPE on the bundled corpus)")
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", choices=["old", "raw", "raw-fast"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one contender, in its own process
        if args.child == "old":
            old_encode_splits(Path(args.data), Path(args.tokenizer), Path(args.out))
        else:
            print(json.dumps({"seconds": raw_encode(Path(args.data), Path(args.tokenizer), args.child == "raw-fast")}))
        return

    from fidan.artifacts.datadir import load_manifest
    from fidan.artifacts.token_encode import PIECE_BYTES, plan_pieces, tokens_dir, work_dir
    from fidan.artifacts.tokenizer import load_tokenizer

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else build_corpus(work, args.mb)
    tokp = Path(args.tokenizer) if args.tokenizer else build_tokenizer(work)
    manifest = load_manifest(data)
    n_bytes = sum(manifest["splits"][s]["bytes"] for s in ("train", "val"))
    tok = load_tokenizer(tokp)
    out, pieces_dir = tokens_dir(data, tok), work_dir(data, tok)
    n_pieces = len(plan_pieces(data, manifest, PIECE_BYTES))
    print(f"machine: {machine()}")
    print(f"data: {data} ({n_bytes / 1e6:.1f} MB of text, {n_pieces} pieces); tokenizer: {tokp}")

    me = [sys.executable, str(Path(__file__).resolve()), "--work", str(work)]
    fidan = [sys.executable, "-m", "fidan", "tokenizer", "encode", "--data", str(data), "--tokenizer", str(tokp)]
    old_out = work / "old-tokens"
    contenders = {
        "old loop": [*me, "--child", "old", "--data", str(data), "--tokenizer", str(tokp), "--out", str(old_out)],
        "raw encode_batch": [*me, "--child", "raw", "--data", str(data), "--tokenizer", str(tokp)],
        "raw encode_batch_fast": [*me, "--child", "raw-fast", "--data", str(data), "--tokenizer", str(tokp)],
        "fidan --workers 1": [*fidan, "--force", "--workers", "1"],
        "fidan --workers 2": [*fidan, "--force", "--workers", "2"],
    }
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    shas: dict[str, dict] = {}
    for r in range(args.rounds):
        for name, cmd in contenders.items():
            res = run_measured(cmd)
            if name.startswith("raw"):
                res["seconds"] = json.loads(res["stdout"].strip().splitlines()[-1])["seconds"]
            res.pop("stdout")
            runs[name].append(res)
            print(f"round {r + 1}: {name}: {res['seconds']:.1f} s, {n_bytes / 1e6 / res['seconds']:.2f} MB/s, "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
            if name == "old loop":
                shas[name] = sha(old_out)
            elif name.startswith("fidan"):
                shas[name] = sha(out)

    old = runs["old loop"]
    table = []
    for name, rs in runs.items():
        secs = [x["seconds"] for x in rs]
        ratio = statistics.median(o["seconds"] / x["seconds"] for o, x in zip(old, rs, strict=True))
        table.append({"contender": name, "seconds_median": statistics.median(secs),
                      "mb_per_s": n_bytes / 1e6 / statistics.median(secs), "ratio_to_old": ratio,
                      "peak_rss_mb": max(x["peak_rss_mb"] for x in rs)})

    # Kill halfway, run again: the finished pieces are kept, the output is the same.
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(pieces_dir, ignore_errors=True)

    def half_done() -> bool:
        return pieces_dir.is_dir() and sum(p.suffix == ".bin" for p in pieces_dir.iterdir()) >= n_pieces // 2

    killed = run_measured([*fidan, "--workers", "2"], stop=half_done)
    left = sorted(p.name for p in pieces_dir.glob("*.bin")) if pieces_dir.is_dir() else []
    complete_after_kill = (out / "meta.json").exists()
    again = run_measured([*fidan, "--workers", "2"])
    resumed = next((line for line in again["stdout"].splitlines() if line.startswith("resuming")), None)
    resume = {"killed": killed["killed"], "pieces_left_by_kill": len(left), "pieces": n_pieces,
              "output_complete_after_kill": complete_after_kill, "message": resumed,
              "rerun_seconds": again["seconds"], "sha256": sha(out),
              "same_as_uninterrupted": sha(out) == shas["fidan --workers 2"],
              "same_as_old_loop": sha(out) == shas["old loop"],
              "all_runs_agree": len({json.dumps(v, sort_keys=True) for v in shas.values()}) == 1}

    print("\n| contender | MB/s | × old loop | peak RSS (MB) |\n|---|---|---|---|")
    for row in table:
        print(f"| {row['contender']} | {row['mb_per_s']:.2f} | {row['ratio_to_old']:.2f} | {row['peak_rss_mb']:.0f} |")
    print(f"\nkill at half: {resume['pieces_left_by_kill']} of {n_pieces} pieces left, final output present: "
          f"{complete_after_kill}; rerun said {resumed!r}, {again['seconds']:.1f} s; same sha256 as an "
          f"uninterrupted run: {resume['same_as_uninterrupted']}, as the old loop: {resume['same_as_old_loop']}")
    (work / "results.json").write_text(json.dumps(
        {"machine": machine(), "data": str(data), "tokenizer": str(tokp), "bytes": n_bytes, "pieces": n_pieces,
         "rounds": runs, "table": table, "resume": resume}, indent=2) + "\n")
    shutil.rmtree(old_out, ignore_errors=True)


if __name__ == "__main__":
    main()
