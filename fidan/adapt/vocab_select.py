"""Which new tokens to add: the ones that save the most tokens across the kinds of text in the data.

Pooled frequency (``learn_extension`` over all the data at once) lets the largest source, or the kind of
text that repeats itself most, choose the tokens: on text of another kind many of them never fire. The
``balanced`` rule chooses by tokens saved, measured on each source of the data apart:

1. Each source's pre-tokens are counted (at most ``sample_chars`` characters of each), and each source's
   counts are scaled up to the largest source's total, so every kind of text weighs the same.
2. BPE merges over the base segmentation are learned on those pooled, balanced counts, for more new
   tokens than asked (``candidates`` times as many): the candidates.
3. The candidates are pruned to ``n_new``: the extended tokenizer encodes every source's words, each new
   token's use in the final segmentation (the tokens it saves) is counted per source, and the new tokens
   that nothing else is built from and that save the least are dropped, a share at a time, re-measuring
   after each round. What a token saves is counted **without the source where it saves the most**: a token
   that only one kind of text uses scores little, one that every kind uses scores high. With a single
   source there is nothing to leave out, and the plain total counts.

A token's merge needs the tokens it joins, so only tokens that no kept merge uses are dropped; the merges
that stay keep their learned order, and the result is a valid extension (``extend_tokenizer``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from tokenizers import Tokenizer

from fidan.adapt.vocab import Extension, count_words, extend_tokenizer, learn_from_counts

SELECT = ("balanced", "frequency")


def sampled(documents: Iterable[tuple[str, str]], sample_chars: int = 0) -> Iterator[tuple[str, str]]:
    """(source, text) pairs, stopping each source at ``sample_chars`` characters (0: all of them)."""
    sizes: Counter = Counter()
    for source, text in documents:
        if sample_chars:
            if sizes[source] >= sample_chars:
                continue
            text = text[: sample_chars - sizes[source]]
            sizes[source] += len(text)
        yield source, text


def sample_by_source(documents: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Documents grouped by source."""
    groups: dict[str, list[str]] = {}
    for source, text in documents:
        groups.setdefault(source, []).append(text)
    return groups


def select_extension(tok: Tokenizer, sources: Mapping[str, Iterable[str]], n_new: int, min_frequency: int = 2,
                     candidates: float = 1.5, step: float = 0.5) -> Extension:
    """Up to ``n_new`` new tokens for ``tok`` chosen by the tokens they save across ``sources`` (see above)."""
    counts = {name: count_words(tok, texts) for name, texts in sources.items()}
    counts = {name: c for name, c in counts.items() if c}
    totals = {name: sum(c.values()) for name, c in counts.items()}
    top = max(totals.values(), default=0)
    scale = {name: top / total for name, total in totals.items()}
    pooled: Counter = Counter()
    for name, c in counts.items():
        for word, n in c.items():
            pooled[word] += n * scale[name]
    pooled = Counter({w: max(1, round(n)) for w, n in pooled.items()})
    ext = learn_from_counts(tok, pooled, max(n_new, int(n_new * candidates)), min_frequency)
    return prune(tok, ext, counts, scale, n_new, min_frequency, step)


def prune(tok: Tokenizer, ext: Extension, counts: dict[str, Counter], scale: dict[str, float], n_new: int,
          min_frequency: int, step: float = 0.5) -> Extension:
    """``ext`` cut down to at most ``n_new`` new tokens, dropping those that save the least across sources, and
    any that saves fewer than ``min_frequency`` tokens on the data itself."""
    merges = list(ext.merges)
    new = {t.token: t for t in ext.new_tokens}
    while new:
        extended, ids = extend_tokenizer(tok, Extension(merges=merges, new_tokens=list(new.values())))
        used = token_use(extended, counts, min(ids))
        parts = {p for a, b in merges for p in (a, b)}
        leaves = [t for t in new if t not in parts]
        rare = {t for t in leaves if sum(u[t] for u in used.values()) < min_frequency}
        score = {t: _score([used[name][t] * scale[name] for name in used]) for t in leaves}
        drop = set(rare)
        want = len(new) - n_new - len(drop)  # still over budget after the rare ones go
        if want > 0:
            ranked = sorted((t for t in leaves if t not in rare), key=lambda t: score[t])
            drop.update(ranked[: min(want, int(want * step) + 1)])
        if not drop:
            break
        new = {t: v for t, v in new.items() if t not in drop}
        merges = [(a, b) for a, b in merges if a + b not in drop]
    return Extension(merges=merges, new_tokens=list(new.values()), words=sum(sum(c.values()) for c in counts.values()))


def _score(saved: list[float]) -> float:
    """Tokens saved, without the source where the token saves the most (all of it for a single source)."""
    return sum(saved) - max(saved) if len(saved) > 1 else sum(saved)


def token_use(extended: Tokenizer, counts: dict[str, Counter], first_new: int) -> dict[str, Counter]:
    """For each source, how often each new token (id ``first_new`` or above) is in the words' segmentation."""
    model = extended.model
    seen: dict[str, list[str]] = {}
    used: dict[str, Counter] = {}
    for name, words in counts.items():
        use: Counter = Counter()
        for word, n in words.items():
            pieces = seen.get(word)
            if pieces is None:
                pieces = seen[word] = [t.value for t in model.tokenize(word) if t.id >= first_new]
            for p in pieces:
                use[p] += n
        used[name] = use
    return used
