"""Planted near-duplicates in the bundled corpus: how many `fidan data prepare --near-dup T` finds (recall),
and how many other documents it removes.

    python benchmarks/near_duplicates.py --threshold 0.5 --planted 300

Copies of randomly chosen documents, with 5-20% of their words replaced, deleted or followed by an
inserted word (seeded), are added to the speeches and treebank sentences; the prepared data folder then
shows which copies and which originals survived.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from fidan.artifacts.datadir import iter_split
from fidan.corpus.prepare import prepare_data
from fidan.text.bundled import speeches, treebank_sentences
from fidan.text.turkish import normalize_text


def perturb(doc: str, rng: random.Random, vocab: list[str]) -> str:
    words = doc.split()
    k = max(1, round(len(words) * rng.uniform(0.05, 0.20)))
    for i in rng.sample(range(len(words)), min(k, len(words))):
        op = rng.random()
        words[i] = rng.choice(vocab) if op < 0.5 else "" if op < 0.75 else f"{words[i]} {rng.choice(vocab)}"
    return " ".join(w for w in words if w)


def planted_corpus(n: int, seed: int) -> tuple[list[str], list[str]]:
    docs = [normalize_text(d["text"]) for d in speeches()] + [normalize_text(d["text"]) for d in treebank_sentences()]
    docs = list(dict.fromkeys(d for d in docs if len(d) >= 20))
    rng = random.Random(seed)
    vocab = [w for d in docs[:500] for w in d.split()]
    copies = [normalize_text(perturb(docs[i], rng, vocab)) for i in rng.sample(range(len(docs)), n)]
    return docs, [c for c in copies if c not in set(docs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    docs, copies = planted_corpus(args.planted, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "corpus.jsonl"
        src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs + copies), "utf-8")
        t0 = time.time()
        prepare_data(source=[str(src)], out=str(Path(tmp) / "d"), val_fraction=0.05, near_dup=args.threshold,
                     min_chars=20)
        seconds = time.time() - t0
        kept = {d for split in ("train", "val") for d in iter_split(Path(tmp) / "d", split)}
    found = sum(c not in kept for c in copies) / len(copies)
    lost = sum(d not in kept for d in docs)
    print(json.dumps({"documents": len(docs), "planted": len(copies), "threshold": args.threshold,
                      "recall": round(found, 4), "other_documents_removed": lost,
                      "other_removed_share": round(lost / len(docs), 4), "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
