"""Vocabulary extension of a Qwen-tokenizer base, measured on a source left out of the choice.

For each held-out source in turn, the new tokens are chosen on the train split of the other sources of a
data folder and measured on every document of the held-out one, with both rules of `fidan vocab extend`:

- ``frequency``: BPE merges in order of pooled frequency over the whole train split (the rule before
  ``--select``; `--select frequency --sample-chars 0`);
- ``balanced``: the default: candidates on balanced counts, pruned by the tokens they save across sources
  (fidan/adapt/vocab_select.py), on up to ``--sample-chars`` characters of each source.

    python benchmarks/vocab_extension.py --work /tmp/vocab-bench [--add 8000] [--held-out tr-news ...]

The data folder (WORK/data, `fidan data prepare` of the five built-in sources) and Qwen's tokenizer
(WORK/qwen, `fidan tokenizer import`) are made when missing. Prints a markdown table; writes
WORK/vocab-extension.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from tokenizers import Tokenizer

import fidan
from fidan.adapt.vocab import extend_tokenizer, learn_extension
from fidan.adapt.vocab_select import sample_by_source, sampled, select_extension
from fidan.artifacts.datadir import iter_split_sources
from fidan.tokenizer.convert import import_qwen

SOURCES = ["tr-speeches", "tr-treebank", "tr-kenet", "tr-manpages", "tr-news"]


def documents(data: Path) -> dict[str, list[str]]:
    """Every document of the folder (both splits), by source."""
    return sample_by_source([*iter_split_sources(data, "train"), *iter_split_sources(data, "val")])


def cost(tok: Tokenizer, texts: list[str]) -> int:
    return sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))


def measure(base: Tokenizer, ext, texts: list[str], before: int) -> dict:
    extended, _ = extend_tokenizer(base, ext)
    after = cost(extended, texts)
    words = sum(len(t.split()) for t in texts)
    return {"new_tokens": len(ext.new_tokens), "tokens_after": after, "tokens_per_word": round(after / words, 4),
            "saved": round(1 - after / before, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/vocab-bench")
    ap.add_argument("--add", type=int, default=8000)
    ap.add_argument("--held-out", nargs="+", default=["tr-news", "tr-treebank", "tr-kenet", "tr-manpages",
                                                      "tr-speeches"])
    ap.add_argument("--sample-chars", type=int, default=4_000_000)
    ap.add_argument("--test-chars", type=int, default=1_000_000, help="held-out characters measured")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "qwen" / "tokenizer.json").exists():
        import_qwen(str(work / "qwen"), force=True)
    if not (work / "data" / "manifest.json").exists():
        fidan.prepare_data(source=SOURCES, out=str(work / "data"))
    base = Tokenizer.from_file(str(work / "qwen" / "tokenizer.json"))
    train = sample_by_source(iter_split_sources(work / "data", "train"))
    everything = documents(work / "data")
    rows = []
    for held in args.held_out:
        test = [t for _, t in sampled(((held, t) for t in everything[held]), args.test_chars)]
        before = cost(base, test)
        others = [(s, t) for s in train if s != held for t in train[s]]
        row = {"held_out": held, "chose_on": sorted({s for s, _ in others}), "documents": len(test),
               "words": sum(len(t.split()) for t in test), "tokens_before": before}
        t0 = time.time()
        old = learn_extension(base, (t for _, t in others), args.add)
        row["frequency"] = {**measure(base, old, test, before), "seconds": round(time.time() - t0, 1)}
        t0 = time.time()
        new = select_extension(base, sample_by_source(sampled(others, args.sample_chars)), args.add)
        row["balanced"] = {**measure(base, new, test, before), "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"add": args.add, "sample_chars": args.sample_chars, "test_chars": args.test_chars,
            "machine": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (work / "vocab-extension.json").write_text(json.dumps({**meta, "rows": rows}, indent=1), encoding="utf-8")
    print(f"\n{args.add} tokens added to Qwen's tokenizer; tokens saved on the held-out source\n")
    print("| held out | words | tokens/word (Qwen) | frequency | balanced |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['held_out']} | {r['words']:,} | {r['tokens_before'] / r['words']:.3f} | "
              f"{r['frequency']['saved']:.1%} | {r['balanced']['saved']:.1%} |")


if __name__ == "__main__":
    main()
