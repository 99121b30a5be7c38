"""Per-core speed of encoding by pre-token on natural text seen once: the dictionary starts empty.

    python benchmarks/encode_cold.py --tokenizer /tmp/encbench/tok-bpe16k [--rounds 5]

`benchmarks/encode_speed.py` measures whole commands on a 100 MB folder built by repeating the bundled
corpus with edits, where most pre-tokens come back many times. This measures the other end: every
document of the bundled speeches and treebank (a data folder made with `fidan data prepare --no-quality`,
each document once), in one process on one thread, in batches of 1 MB as a worker encodes them, by
`tokenizers`' `encode_batch_fast` and by fidan's pre-token encoder (a new one, empty, every round), in
turn. Both must give the same ids. Prints MB/s of each, the ratio (median over rounds), the distinct
pre-tokens met and how many documents went to the tokenizer whole.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread, as in a worker process

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="a tokenizer folder made by `fidan tokenizer train`")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from fidan.artifacts.datadir import SPLITS, iter_split
    from fidan.artifacts.pretoken_cache import PretokenEncoder
    from fidan.artifacts.token_encode import WORKER_BATCH_BYTES
    from fidan.artifacts.tokenizer import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run([sys.executable, "-m", "fidan", "data", "prepare", "--source", "tr-speeches", "--source",
                        "tr-treebank", "--no-quality", "--out", str(data)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        docs = [d for s in SPLITS for d in iter_split(data, s)]
    n_bytes = sum(len(d.encode()) for d in docs)
    batches, batch, size = [], [], 0
    for d in docs:
        batch.append(d)
        size += len(d)
        if size >= WORKER_BATCH_BYTES:
            batches.append(batch)
            batch, size = [], 0
    batches.append(batch)
    tok = load_tokenizer(args.tokenizer).tokenizer
    dtype = np.uint16 if tok.get_vocab_size() <= 65536 else np.uint32

    def by_tokenizer() -> list[bytes]:
        return [np.asarray(e.ids, dtype=dtype).tobytes() for b in batches
                for e in tok.encode_batch_fast(b, add_special_tokens=False)]

    def by_pretoken() -> list[bytes]:
        enc = by_pretoken.last = PretokenEncoder(tok, dtype)
        return [ids for b in batches for ids in enc(b)]

    times: dict[str, list[float]] = {"tokenizers encode_batch_fast": [], "fidan pre-token encoder": []}
    results = {}
    for _ in range(args.rounds):
        for name, fn in zip(times, (by_tokenizer, by_pretoken), strict=True):
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    same = results["tokenizers encode_batch_fast"] == results["fidan pre-token encoder"]
    enc = by_pretoken.last
    pieces = sum(len(enc.split.findall(d)) for d in docs)
    print(f"{len(docs):,} documents, {n_bytes / 1e6:.2f} MB, {pieces:,} pre-tokens, {len(enc.ids):,} distinct; "
          f"{enc.whole} documents encoded whole by the tokenizer; same ids: {same}")
    for name, ts in times.items():
        print(f"{name}: {n_bytes / 1e6 / statistics.median(ts):.2f} MB/s (median of {len(ts)})")
    ratio = statistics.median(a / b for a, b in zip(*times.values(), strict=True))
    print(f"pre-token encoder / tokenizers: {ratio:.2f}x")
    if not same:
        raise SystemExit("the ids differ")


if __name__ == "__main__":
    main()
