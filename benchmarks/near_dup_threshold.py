"""Choosing `fidan data prepare --near-dup`'s default: planted near-duplicates among the bundled corpus, swept
over thresholds, shingle sizes, signature lengths and LSH bandings.

    python benchmarks/near_dup_threshold.py --planted 500 --seeds 0 1 2

The distinct documents: the bundled speeches and treebank sentences, cleaned as `data prepare` cleans them
(fidan.text.turkish.normalize_text), at least 20 characters, exact copies removed, in that order.

The planted copies: --planted documents drawn at random (per seed) from the distinct ones, each with about a
tenth of its words edited: round(0.1 * words) edits, at least one, at distinct word positions (a word is
a run of non-space characters; the spaces and newlines between words stay). Each edit is, with equal
chance, a substitution (the word replaced by another drawn from all words of the corpus), a deletion (the
word and the space after it), or an insertion (a drawn word and a space put after it). A copy is cleaned
too; one that equals a distinct document or is under 20 characters is left out. The copies come after
all distinct documents, so a copy's original is always the earlier, kept document.

Measured per setting: removed = planted copies found / planted (per seed; the worst seed is reported) and
kept = distinct documents not removed / distinct documents (the same for every seed, since the distinct
documents come first). The distinct documents removed at the chosen setting are printed beside the document
each matched, with the exact Jaccard of their shingle sets, to check by hand whether the corpus itself
holds near-copies.

The rule: for each shingle size / signature length / banding, the highest threshold that removes >= 90%
of the planted copies on every seed and keeps >= 97% of the distinct documents; the default is the
setting whose rule-chosen threshold has the largest margin min(removed - 90%, kept - 97%), the cheaper
signature on a tie. Last, `prepare_data` runs end to end (default quality filters) with near-dup off and at
the chosen default, on seed 0's corpus, to show the same figures through the whole pipeline and its cost.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from fidan.artifacts.datadir import iter_split
from fidan.corpus.neardup import BANDS, DEFAULT_THRESHOLD, NUM_PERM, SHINGLE, MinHasher, NearDuplicates
from fidan.corpus.passes import SIGN_BATCH
from fidan.corpus.prepare import prepare_data
from fidan.text.bundled import speeches, treebank_sentences
from fidan.text.turkish import lower_tr, normalize_text

THRESHOLDS = [round(0.30 + 0.05 * i, 2) for i in range(13)]  # 0.30 ... 0.90
REMOVE_TARGET, KEEP_TARGET = 0.90, 0.97
EDIT_RATE = 0.10


def distinct_documents() -> tuple[list[str], int]:
    """The distinct cleaned documents, and how many of them (the first ones) are speeches."""
    speech = [normalize_text(d["text"]) for d in speeches()]
    sentence = [normalize_text(d["text"]) for d in treebank_sentences()]
    docs = list(dict.fromkeys(d for d in speech + sentence if len(d) >= 20))
    n_speech = len({d for d in speech if len(d) >= 20})
    return docs, n_speech


def edit(doc: str, rng: random.Random, vocab: list[str], rate: float = EDIT_RATE) -> str:
    """``doc`` with round(rate * words) (at least one) substitutions, deletions or insertions."""
    parts = re.split(r"(\s+)", doc)  # words at even positions, the whitespace after each at odd ones
    words = [i for i in range(0, len(parts), 2) if parts[i]]
    for i in rng.sample(words, max(1, round(rate * len(words)))):
        op = rng.randrange(3)
        if op == 0:
            new = parts[i]
            while new == parts[i]:
                new = rng.choice(vocab)
            parts[i] = new
        elif op == 1:
            parts[i] = ""
            if i + 1 < len(parts):
                parts[i + 1] = ""
        else:
            parts[i] = f"{parts[i]} {rng.choice(vocab)}"
    return normalize_text("".join(parts))


def plant(docs: list[str], n: int, seed: int, rate: float = EDIT_RATE) -> tuple[list[str], list[int]]:
    """Edited copies of ``n`` documents drawn at random, and the index of each one's original."""
    rng = random.Random(seed)
    vocab = [w for d in docs for w in d.split()]
    seen = set(docs)
    copies, origins = [], []
    for i in rng.sample(range(len(docs)), n):
        c = edit(docs[i], rng, vocab, rate)
        if c not in seen and len(c) >= 20:
            seen.add(c)
            copies.append(c)
            origins.append(i)
    return copies, origins


def sign_all(hasher: MinHasher, docs: list[str]) -> np.ndarray:
    """Signatures of ``docs`` in batches of about SIGN_BATCH characters, as `data prepare` signs them."""
    out, batch, chars = [], [], 0
    for d in docs:
        batch.append(d)
        chars += len(d)
        if chars >= SIGN_BATCH:
            out.append(hasher.signatures(batch))
            batch, chars = [], 0
    return np.concatenate(out + ([hasher.signatures(batch)] if batch else []))


def run(sigs: np.ndarray, threshold: float, bands: int) -> tuple[np.ndarray, dict[int, int]]:
    """Which documents near-dup removes, in order, and for each removed one the document it matched."""
    nd = NearDuplicates(threshold, bands=bands, num_perm=sigs.shape[1])
    removed = nd.find(sigs, record=True)
    return removed, nd.matches


def sweep(docs: list[str], planted: dict[int, list[str]], settings: list[tuple[int, int, int]]) -> list[dict]:
    """For each (shingle, num_perm, bands) and threshold: worst-seed removed share, kept share, and the CPU
    time of signing the distinct documents."""
    rows = []
    for shingle, num_perm, bands in settings:
        hasher = MinHasher(shingle, num_perm)
        t0 = time.process_time()
        base = sign_all(hasher, docs)
        sign_s = time.process_time() - t0
        extra = {seed: sign_all(hasher, copies) for seed, copies in planted.items()}
        for threshold in THRESHOLDS:
            found, kept = [], None
            for seed in planted:
                removed, _ = run(np.concatenate([base, extra[seed]]), threshold, bands)
                found.append(float(removed[len(docs):].mean()))
                kept = float(1 - removed[:len(docs)].mean())  # the same for every seed: distinct documents first
            rows.append({"shingle": shingle, "num_perm": num_perm, "bands": bands, "rows": num_perm // bands,
                         "threshold": threshold, "removed": min(found), "removed_mean": float(np.mean(found)),
                         "kept": kept, "sign_s": sign_s})
        print(f"  swept shingle {shingle}, {num_perm} perms, {bands} bands", flush=True)
    return rows


def choose(rows: list[dict]) -> tuple[dict | None, list[dict]]:
    """Per setting, the highest threshold meeting both targets; then the setting with the largest margin."""
    best = []
    for key in sorted({(r["shingle"], r["num_perm"], r["bands"]) for r in rows}):
        ok = [r for r in rows if (r["shingle"], r["num_perm"], r["bands"]) == key
              and r["removed"] >= REMOVE_TARGET and r["kept"] >= KEEP_TARGET]
        if ok:
            pick = max(ok, key=lambda r: r["threshold"])
            best.append({**pick, "margin": min(pick["removed"] - REMOVE_TARGET, pick["kept"] - KEEP_TARGET)})
    # ties (to 0.1%): fewer permutations, then fewer bands (less to compute and to hold)
    chosen = max(best, key=lambda r: (round(r["margin"], 3), -r["num_perm"], -r["bands"])) if best else None
    return chosen, best


def jaccard(a: str, b: str, shingle: int) -> float:
    a, b = lower_tr(a), lower_tr(b)
    sa = {a[i:i + shingle] for i in range(max(1, len(a) - shingle + 1))}
    sb = {b[i:i + shingle] for i in range(max(1, len(b) - shingle + 1))}
    return len(sa & sb) / len(sa | sb)


def show_removed(docs: list[str], n_speech: int, chosen: dict) -> None:
    """The distinct documents removed at the chosen setting, beside their matches, for a check by hand."""
    hasher = MinHasher(chosen["shingle"], chosen["num_perm"])
    removed, match = run(sign_all(hasher, docs), chosen["threshold"], chosen["bands"])
    print(f"\n{int(removed.sum())} distinct documents removed at the chosen setting:")
    for i in np.flatnonzero(removed):
        j = match[i]
        kind = "speech" if i < n_speech else "sentence"
        print(f"- [{kind} {i} ~ {j}, exact Jaccard {jaccard(docs[i], docs[j], chosen['shingle']):.2f}]\n"
              f"    removed: {docs[i][:300]!r}\n    matched: {docs[j][:300]!r}")


def end_to_end(docs: list[str], copies: list[str], threshold: float) -> None:
    """`prepare_data` with default settings, near-dup off and at ``threshold``: the shares removed and kept."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "corpus.jsonl"
        src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs + copies), "utf-8")
        kept = {}
        for name, near in (("off", 0.0), ("on", threshold)):
            prepare_data(source=[str(src)], out=str(Path(tmp) / name), val_fraction=0.05, near_dup=near)
            kept[name] = {d for split in ("train", "val") for d in iter_split(Path(tmp) / name, split)}
    base = [c for c in copies if c in kept["off"]]
    others = [d for d in docs if d in kept["off"]]
    print(json.dumps({"threshold": threshold, "planted_left_by_quality_filters": len(base),
                      "removed": round(sum(c not in kept["on"] for c in base) / len(base), 4),
                      "distinct_left_by_quality_filters": len(others),
                      "kept": round(sum(d in kept["on"] for d in others) / len(others), 4)}))


def settings_grid() -> list[tuple[int, int, int]]:
    """Shingle sizes at the default signature and banding; bandings and signature lengths at 5-grams."""
    grid = [(k, NUM_PERM, BANDS) for k in (3, 4, 5, 6, 7)]
    grid += [(SHINGLE, NUM_PERM, b) for b in (64, 42, 32, 16)]
    grid += [(SHINGLE, p, p // 3) for p in (64, 256)]
    return list(dict.fromkeys(grid))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planted", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    docs, n_speech = distinct_documents()
    planted = {s: plant(docs, args.planted, s) for s in args.seeds}
    print(f"{len(docs)} distinct documents ({n_speech} speeches), planted copies per seed: "
          f"{ {s: len(c) for s, (c, _) in planted.items()} }; {platform.processor() or platform.machine()}")
    rows = sweep(docs, {s: c for s, (c, _) in planted.items()}, settings_grid())
    chosen, best = choose(rows)
    print("\nsetting | highest threshold meeting both | removed (worst seed) | kept | margin | CPU s to sign the distinct documents")
    for r in best:
        print(f"{r['shingle']}-grams, {r['num_perm']} perms, {r['bands']}x{r['rows']} | {r['threshold']:.2f} | "
              f"{r['removed']:.1%} | {r['kept']:.1%} | {r['margin']:.1%} | {r['sign_s']:.2f}")
    if chosen is None:
        print("no setting meets both targets")
        return
    print(f"\nchosen: {chosen['shingle']}-grams, {chosen['num_perm']} perms, {chosen['bands']} bands, "
          f"threshold {chosen['threshold']:.2f}")
    print("\nthreshold | removed (worst seed) | removed (mean) | kept  -- at the chosen shingle/perms/bands")
    for r in rows:
        if (r["shingle"], r["num_perm"], r["bands"]) == (chosen["shingle"], chosen["num_perm"], chosen["bands"]):
            print(f"{r['threshold']:.2f} | {r['removed']:.1%} | {r['removed_mean']:.1%} | {r['kept']:.2%}")
    copies, origins = planted[args.seeds[0]]
    hasher = MinHasher(chosen["shingle"], chosen["num_perm"])
    sigs = sign_all(hasher, docs + copies)
    removed, _ = run(sigs, chosen["threshold"], chosen["bands"])
    found = removed[len(docs):]
    speech = np.array([o < n_speech for o in origins])
    print(f"\nseed {args.seeds[0]} by kind: copies of speeches {found[speech].mean():.1%} of {speech.sum()}, "
          f"of sentences {found[~speech].mean():.1%} of {(~speech).sum()}")
    print("\nedit rate | removed (seed", args.seeds[0], ")")
    for rate in (0.05, EDIT_RATE, 0.15, 0.20):
        other, _ = plant(docs, args.planted, args.seeds[0], rate)
        found, _ = run(np.concatenate([sigs[:len(docs)], sign_all(hasher, other)]),
                       chosen["threshold"], chosen["bands"])
        print(f"{rate:.0%} | {found[len(docs):].mean():.1%} of {len(other)}")
    show_removed(docs, n_speech, chosen)
    if (chosen["shingle"], chosen["num_perm"], chosen["bands"], chosen["threshold"]) != (
            SHINGLE, NUM_PERM, BANDS, DEFAULT_THRESHOLD):
        print("\nnote: fidan/corpus/neardup.py's defaults differ from the chosen setting; the run below uses them")
    print("\nend to end (prepare_data, default quality filters, seed", args.seeds[0], "corpus):")
    end_to_end(docs, copies, DEFAULT_THRESHOLD)


if __name__ == "__main__":
    main()
