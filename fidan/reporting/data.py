"""The report's data and tokenizer sections: each artifact read through the module that owns its format.

The data folder's manifest (either kind) and its token statistics come from ``fidan.artifacts.datadir``,
the tokenizer from ``fidan.artifacts.tokenizer``. Only the word-level figures on a held-out sample
(tokens per word, frequent words kept whole) are measured here: no stage records them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from fidan.artifacts.datadir import DataSummary, describe_data, iter_split, token_stats
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.errors import FidanError
from fidan.reporting.markdown import table
from fidan.text.turkish import words

SAMPLE_CHARS = 200_000  # word statistics read at most this much held-out text


def tokenizer_facts(tok_dir: Path) -> dict:
    """Vocabulary, model type and special tokens of a tokenizer folder."""
    tok = load_tokenizer(tok_dir)
    return {"vocab_size": tok.vocab_size, "model": type(tok.tokenizer.model).__name__,  # BPE, Unigram, ...
            "special_tokens": [t.content for t in tok.tokenizer.get_added_tokens_decoder().values() if t.special]}


def word_stats(tok_dir: Path, data: Path) -> dict:
    """Tokens per word and how many of the 100 most frequent words are one token, on held-out text."""
    tok = load_tokenizer(tok_dir)
    docs, size = [], 0
    for doc in iter_split(data, "val"):
        docs.append(doc)
        size += len(doc)
        if size >= SAMPLE_CHARS:
            break
    n_words = n_tokens = 0
    single: Counter = Counter()
    freq: Counter = Counter()
    for enc, doc in zip(tok.tokenizer.encode_batch(docs, add_special_tokens=False), docs, strict=True):
        n_tokens += len(enc.ids)
        offsets = enc.offsets
        j = 0
        for s, e in _word_spans(doc):
            # Tokens that overlap the word; a leading space in the same token does not count against it.
            while j < len(offsets) and offsets[j][1] <= s:
                j += 1
            k = j
            while k < len(offsets) and offsets[k][0] < e:
                k += 1
            w = doc[s:e]
            freq[w] += 1
            single[w] += (k - j) == 1
            n_words += 1
    if not n_words:
        return {}
    top = [w for w, _ in freq.most_common(100)]
    return {"tokens_per_word": n_tokens / n_words, "top100_single_token": sum(single[w] == freq[w] for w in top) / len(top),
            "sample_words": n_words,
            "split_examples": [(w, [tok.decode([i]) for i in tok.encode(w)]) for w in top if single[w] < freq[w]][:5]}


def _word_spans(text: str) -> Iterator[tuple[int, int]]:
    pos = 0
    for w in words(text):
        s = text.index(w, pos)
        pos = s + len(w)
        yield s, pos


def data_section(cfg: dict, root: Path) -> list[str]:
    """The data folder the run read, and the run's tokenizer."""
    L = ["## Data", ""]
    data = Path(cfg["data"]) if cfg.get("data") else None
    summary: DataSummary | None = None
    try:
        summary = describe_data(data) if data else None
    except FidanError:
        summary = None
    tokens = token_stats(data, cfg["tokenizer_sha256"]) if summary and cfg.get("tokenizer_sha256") else None
    if summary:
        facts = [f"manifest created {summary.created}" if summary.created else "",
                 f"split rule: {summary.split_rule}" if summary.split_rule else ""]
        facts = [f for f in facts if f]
        L += [f"Data folder `{data}`" + (f" ({', '.join(facts)})." if facts else "."), ""]
        L += _sources_table(summary)
        if summary.kind == "corpus":
            L += table([(name, sp["documents"], sp["characters"], sp["bytes"], (tokens or {}).get(name, {}).get("tokens"))
                        for name, sp in summary.splits.items()], ("split", "documents", "characters", "bytes", "tokens"))
        elif summary.splits:
            L += table([(name, sp["examples"]) for name, sp in summary.splits.items()], ("split", "examples"))
        if summary.dropped:
            L += ["Dropped while cleaning: " + ", ".join(f"{v:,} {k.replace('_', ' ')}"
                                                         for k, v in summary.dropped.items()) + ".", ""]
    else:
        L += [f"The data folder `{data}` is not readable from here; the run's config records its shard hashes.", ""]

    L += ["## Tokenizer", ""]
    tok_dir = root / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        return L + ["The run holds no tokenizer/ folder.", ""]
    st = tokenizer_facts(tok_dir)
    if summary and summary.kind == "corpus" and "val" in summary.splits:
        st.update(word_stats(tok_dir, data))
    rows = [("type", st.get("model")), ("vocabulary", st["vocab_size"]),
            ("special tokens", ", ".join(f"`{t}`" for t in st["special_tokens"]) or "–")]
    for split in ("train", "val"):
        bpt = (tokens or {}).get(split, {}).get("bytes_per_token")
        if bpt:
            rows.append((f"bytes per token ({split})", f"{bpt:.2f}"))
    if "tokens_per_word" in st:
        rows.append(("tokens per word (held-out sample)", f"{st['tokens_per_word']:.2f} over {st['sample_words']:,} words"))
        rows.append(("100 most frequent words that are one token", f"{st['top100_single_token']:.0%}"))
    L += table(rows, ("", ""))
    if st.get("split_examples"):
        L += ["Frequent words split into pieces: " + "; ".join(
            f"{w} → {' · '.join(repr(p) for p in pieces)}" for w, pieces in st["split_examples"]) + ".", ""]
    return L


def _sources_table(summary: DataSummary) -> list[str]:
    if not summary.sources:
        return []
    if summary.kind == "corpus":
        return table([(s.get("spec"), s.get("read"), s.get("kept")) for s in summary.sources],
                     ("source", "documents read", "kept"))
    return table([(s["name"], s.get("train"), s.get("val"), s.get("description")) for s in summary.sources],
                 ("source", "train", "val", "what"))
