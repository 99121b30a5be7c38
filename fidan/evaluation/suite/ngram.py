"""A character n-gram language model with interpolated Kneser-Ney smoothing: the suite's reference model.

It is trained in seconds on the bundled corpus (the text `fidan demo` pretrains on) and scores a choice
as a language model does, Σ log p(character | the n - 1 characters before it), the context included.
It sees only ``order - 1`` characters back: it can learn the local morphology (vowel harmony, which
case comes before *rağmen*) but not an agreement across several words. Each n-gram is packed into one
int64 (``bits`` per character, the most recent character lowest), so counting and lookup are numpy
sorts and binary searches.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np

UNKNOWN, BOUNDARY = 0, 1
MAX_SYMBOLS = 256


class CharNgram:
    def __init__(self, texts: Iterable[str], order: int = 7):
        texts = list(texts)
        freq: Counter = Counter()
        for t in texts:
            freq.update(t)
        alphabet = [c for c, _ in freq.most_common(MAX_SYMBOLS - 2)]
        self.ids = {c: i + 2 for i, c in enumerate(alphabet)}
        self.vocab = len(alphabet) + 2
        self.bits = (self.vocab - 1).bit_length()
        if self.bits * order > 62:
            raise ValueError(f"order {order} does not fit in 62 bits at {self.bits} bits per character")
        self.order = order
        seq = np.concatenate([self._encode(t) for t in texts]) if texts else np.zeros(0, np.int64)
        self.tables = self._count(seq)

    def _encode(self, text: str) -> np.ndarray:
        """A document's symbols after ``order - 1`` boundary symbols (what a document starts from)."""
        ids = [self.ids.get(c, UNKNOWN) for c in text]
        return np.array([BOUNDARY] * (self.order - 1) + ids, dtype=np.int64)

    def _keys(self, seq: np.ndarray, k: int) -> np.ndarray:
        """The k-gram ending at each position from k - 1 on, packed (the newest symbol in the lowest bits)."""
        n = len(seq) - k + 1
        key = np.zeros(max(n, 0), dtype=np.int64)
        for j in range(k):  # j symbols back from the end
            key |= seq[k - 1 - j:k - 1 - j + n] << (self.bits * j)
        return key

    def _count(self, seq: np.ndarray) -> list[tuple]:
        """Per order 1..n: sorted gram keys, their counts (raw for the highest order, continuation counts
        below), and per context: its keys, total count and number of distinct next symbols; a discount."""
        tables: list[tuple] = []
        higher = None
        for k in range(self.order, 0, -1):
            if higher is None:
                grams, counts = np.unique(self._keys(seq, k), return_counts=True)
            else:  # Kneser-Ney: how many distinct symbols precede the gram, not how often it occurs
                grams, counts = np.unique(higher & ((1 << (self.bits * k)) - 1), return_counts=True)
            higher = grams
            contexts, first, types = np.unique(grams >> self.bits, return_index=True, return_counts=True)
            totals = np.add.reduceat(counts, first) if len(first) else counts[:0]
            n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
            discount = min(max(n1 / (n1 + 2 * n2), 0.1), 0.9) if n1 + n2 else 0.75
            tables.append((grams, counts, contexts, totals, types, discount))
        return tables[::-1]  # index k - 1 holds order k

    @staticmethod
    def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros(len(query), dtype=np.float64)
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return np.where(keys[pos] == query, values[pos], 0).astype(np.float64)

    def logprob(self, context: str, text: str) -> float:
        """Σ ln p(c | previous order - 1 characters) over the characters of ``text`` after ``context``,
        in nats; the context is read from the start of a document."""
        seq = self._encode(context + text)
        start = len(seq) - len(text)
        probs = np.full(len(text), 1.0 / self.vocab)
        for k in range(1, self.order + 1):
            grams, counts, contexts, totals, types, d = self.tables[k - 1]
            query = np.zeros(len(text), dtype=np.int64)
            for j in range(k):
                query |= seq[start - j:len(seq) - j] << (self.bits * j)
            c = self._lookup(grams, counts, query)
            total = self._lookup(contexts, totals, query >> self.bits)
            kinds = self._lookup(contexts, types, query >> self.bits)
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            mixed = np.maximum(c - d, 0) / safe + d * kinds / safe * probs
            probs = np.where(seen, mixed, probs)
        return float(np.log(probs).sum()) if len(text) else 0.0


def reference_scores(model: CharNgram, items: list[dict]) -> list[list[float]]:
    return [[model.logprob(it["context"], c) for c in it["choices"]] for it in items]


def bits_per_char(model: CharNgram, text: str) -> float:
    """Bits per character of ``text`` read from the start of a document."""
    return -model.logprob("", text) / len(text) / math.log(2)
