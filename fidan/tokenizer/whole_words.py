"""Roots and whole words on top of morpheme merges: the second phase of fidan's default Turkish tokenizer.

The first phase (train.py) learns BPE merges inside morphemes only. This phase spends the rest of the
vocabulary in two parts, each unit joined into one token by merges appended after every morpheme merge:
first the roots of the training words (the analyzer's first morpheme, after a space, counted over every
word built on it, and capitalized, since roots also open sentences), then the most frequent words:

- a word is a pre-token of letters (with its leading space, as the pre-tokenizer cuts it, or an
  apostrophe suffix such as ``'ndaki``), in the byte-level alphabet;
- words are taken by frequency, which is also the order of tokens saved per vocabulary entry (a word
  of p pieces needs at most p - 1 new tokens and saves p - 1 tokens per occurrence);
- a word's pieces are what the merges so far make of it (simulated exactly as `tokenizers`' BPE
  applies merges: the lowest-ranked adjacent pair first, leftmost on ties); they are joined left to
  right, root first, so the intermediate tokens are stems (``␣ev`` + ``ler`` → ``␣evler``);
- a new merge's rank is after every earlier one, so it fires only once every morpheme merge is done:
  in any other word the morpheme merges still decide the cuts, and a word joined here always encodes
  to its one token.

The result is an ordinary BPE model (vocabulary and ranked merges) in tokenizer.json.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer

CAPITAL_SHARE = 0.3  # a capitalized root counts this share of its root's occurrences


def word_pretokens(tok: Tokenizer, docs: Iterable[str]) -> Counter:
    """Counts of the pre-tokens that are words (letters, an optional leading space, or an apostrophe
    suffix), as byte-level strings, under the tokenizer's own pre-tokenizer."""
    counts: Counter = Counter()
    pre = tok.pre_tokenizer
    for doc in docs:
        for piece, (a, b) in pre.pre_tokenize_str(doc):
            text = doc[a:b]
            core = text[1:] if text[:1] in " \t'’" else text
            if core.isalpha():
                counts[piece] += 1
    return counts


def bpe_pieces(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """What a BPE model with these merge ranks makes of one pre-token (byte-level symbols)."""
    syms = list(word)
    while len(syms) > 1:
        best, at = None, -1
        for i in range(len(syms) - 1):
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        syms[at:at + 2] = [syms[at] + syms[at + 1]]
    return syms


def add_whole_words(tok: Tokenizer, counts: Counter, budget: int, min_count: int = 2) -> tuple[Tokenizer, int]:
    """Append merges that make the most frequent words single tokens, using at most ``budget`` new
    vocabulary entries; returns the tokenizer and the number of words joined."""
    spec = json.loads(tok.to_str())
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    ranks = {pair: r for r, pair in enumerate(merges)}
    next_id = max(vocab.values()) + 1
    added = joined = 0
    for word, n in counts.most_common():
        if added >= budget or n < min_count:
            break
        pieces = bpe_pieces(word, ranks)
        if len(pieces) < 2:
            continue
        steps, acc = [], pieces[0]
        for piece in pieces[1:]:
            steps.append((acc, piece))
            acc += piece
        new = sum(a + b not in vocab for a, b in steps)
        if added + new > budget:
            continue  # too long for what is left; a shorter word may still fit
        for a, b in steps:
            if a + b not in vocab:
                vocab[a + b] = next_id
                next_id += 1
                added += 1
            if (a, b) not in ranks:  # an existing merge of these two fires anyway, and earlier
                ranks[(a, b)] = len(merges)
                merges.append((a, b))
        joined += 1
    model["merges"] = [list(m) for m in merges]
    return Tokenizer.from_str(json.dumps(spec)), joined


def root_pretokens(tok: Tokenizer, word_counts: Counter, segments: dict, capital_share: float = CAPITAL_SHARE) -> Counter:
    """Counts of each analyzed word's root (its first morpheme) as a pre-token after a space, summed over
    the words built on it, and of its capitalized form (a share of that count: roots open sentences and
    names), as byte-level strings."""
    from fidan.text.turkish import capitalize_tr

    roots: Counter = Counter()
    for word, n in word_counts.items():
        cuts = segments.get(word)
        if cuts is None or word[:1] in "'’":
            continue
        root = word[:cuts[0]] if cuts else word
        roots[root] += n
    out: Counter = Counter()
    pre = tok.pre_tokenizer
    for root, n in roots.items():
        for form, share in ((root, 1.0), (capitalize_tr(root), capital_share)):
            pieces = pre.pre_tokenize_str(" " + form)
            if len(pieces) == 1:
                out[pieces[0][0]] += max(1, round(n * share))
    return out
