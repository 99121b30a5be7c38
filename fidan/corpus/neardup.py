"""Near-duplicate documents: MinHash signatures over character 5-grams, LSH bands to find candidates,
then the estimated Jaccard similarity decides.

The MinHash is computed with numpy (no extra library): each shingle's code points are folded into a
64-bit value, mixed (splitmix64) and cut to 32 bits, and each of the NUM_PERM hash functions is the top
32 bits of ``a * x + b`` modulo 2^64 with random ``a`` (odd) and ``b`` (multiply-add-shift, a universal
family). The hash functions are
fixed by a seed, so a signature is the same in every process and every run.

LSH alone at the decision threshold misses pairs near it (its banding is a soft cut), so candidates are
gathered by many short bands (32 bands of 4 values: a pair with Jaccard 0.6 shares a band 98.8% of the
time, one with 0.7 99.97%) and each candidate is checked against the threshold. Character shingles keep short sentences,
where one edited word breaks most word n-grams, findable. The first document of a cluster is kept.
The default threshold, shingle size and banding were chosen by benchmarks/near_dup_threshold.py
(benchmarks/RESULTS.md, "Near-duplicates: the default threshold").
"""

from __future__ import annotations

import numpy as np

from fidan.errors import BadInput
from fidan.text.turkish import lower_tr

SHINGLE = 5  # characters
NUM_PERM = 128
BANDS = 32  # LSH bands of NUM_PERM // BANDS signature values each
DEFAULT_THRESHOLD = 0.6
_CHUNK = 8192  # shingles per block of the (NUM_PERM, block) product: 8 MB
_FOLD = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: folds a shingle's code points into one value


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit moves about half of the output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class MinHasher:
    """MinHash signatures of ``num_perm`` uint32 values over character ``shingle``-grams of lower-cased text.

    Documents are signed in batches: their shingles are hashed in one pass over the joined text, and the
    minimum of each hash function is taken per document with ``np.minimum.reduceat``, so a batch of short
    sentences costs little more than one long document of the same length."""

    def __init__(self, shingle: int = SHINGLE, num_perm: int = NUM_PERM, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.shingle, self.num_perm = shingle, num_perm
        # multiply-add-shift: the top 32 bits of (a * x + b) mod 2^64 for 32-bit x, a odd
        self._a = (rng.integers(0, 2**63, num_perm, dtype=np.uint64) << np.uint64(1) | np.uint64(1))[:, None]
        self._b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)[:, None]

    def _fold(self, cp: np.ndarray, n: int, width: int) -> np.ndarray:
        h = np.zeros(n, np.uint64)
        for j in range(width):
            h = h * _FOLD + cp[j:j + n]  # uint64 arithmetic wraps around, as a hash should
        return _mix(h) >> np.uint64(32)

    def shingles(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The distinct 32-bit shingle hashes of each text, as (hashes, document of each), sorted by
        document; a text shorter than a shingle is one shingle, so every text has at least one."""
        lows = [lower_tr(t) for t in texts]
        lengths = np.array([len(t) for t in lows], np.int64)
        ends = np.cumsum(lengths)
        cp = np.frombuffer("".join(lows).encode("utf-32-le"), np.uint32).astype(np.uint64)
        k = self.shingle
        n = max(0, len(cp) - k + 1)
        starts = ends - lengths
        ok = np.ones(n, bool)  # a window that starts in a document's last k-1 characters crosses its end
        for j in range(1, k):
            edge = ends - j
            ok[edge[(edge >= 0) & (edge < n)]] = False
        pos = np.flatnonzero(ok)
        keys = [(np.searchsorted(starts, pos, "right") - 1).astype(np.uint64) << np.uint64(32)
                | self._fold(cp, n, k)[pos]]
        for d in np.flatnonzero(lengths < k):  # too short for one window: the whole text is the shingle
            keys.append(np.array([np.uint64(d) << np.uint64(32) | self._fold(cp[starts[d]:ends[d]], 1,
                                                                           int(lengths[d]))[0]], np.uint64))
        keys = np.sort(np.concatenate(keys))  # sorted and compared: faster than np.unique's hash table here
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
        return keys & np.uint64(0xFFFFFFFF), keys >> np.uint64(32)

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 signatures."""
        out = np.full((len(texts), self.num_perm), np.iinfo(np.uint64).max, np.uint64)
        if not texts:
            return out.astype(np.uint32)
        h, doc = self.shingles(texts)
        first = np.searchsorted(doc, np.arange(len(texts), dtype=np.uint64))  # where each document's run starts
        for lo in range(0, len(h), _CHUNK):
            hi = min(lo + _CHUNK, len(h))
            block = self._a * h[lo:hi]
            block += self._b
            d0, d1 = int(doc[lo]), int(doc[hi - 1]) + 1  # the documents this block holds (a part of)
            cuts = np.maximum(first[d0:d1], lo) - lo
            np.minimum(out[d0:d1], np.minimum.reduceat(block, cuts, axis=1).T, out=out[d0:d1])
        return (out >> np.uint64(32)).astype(np.uint32)

    def signature(self, text: str) -> np.ndarray:
        return self.signatures([text])[0]


_DEFAULT = MinHasher()


def signatures(texts: list[str]) -> np.ndarray:
    """Documents' MinHash signatures ((len(texts), NUM_PERM) uint32): computed where the documents are read,
    compared in one place later."""
    return _DEFAULT.signatures(texts)


def signature(text: str) -> np.ndarray:
    return _DEFAULT.signature(text)


class NearDuplicates:
    """Near-duplicate removal over a whole corpus, in corpus order: a document is removed when a kept
    earlier one shares an LSH band with it and their estimated Jaccard reaches the threshold.

    Two steps keep memory small: every document's band keys (BANDS uint32 values) are computed first,
    so only buckets that more than one document falls into need an entry; then the documents that share
    a bucket are decided in order. Signatures are read where they lie (rows of memory-mapped arrays)."""

    def __init__(self, threshold: float, bands: int = BANDS, num_perm: int = NUM_PERM):
        if not 0 < threshold < 1:
            raise BadInput(f"--near-dup must be in (0, 1) (an estimated Jaccard similarity; "
                           f"{DEFAULT_THRESHOLD} is the default) or 0 to turn it off, got {threshold}")
        self.threshold, self.bands, self.rows = threshold, bands, num_perm // bands
        self._weights = _mix(np.arange(1, self.rows + 1, dtype=np.uint64))
        self.removed = 0
        self.clusters = 0  # groups of near-duplicates: kept documents with at least one removed copy
        self.matches: dict[int, int] = {}  # filled when asked for: removed document -> the kept one it matched

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """(n, BANDS) uint32: each band's values hashed to one number (a collision only adds a candidate)."""
        band = np.asarray(sigs[:, :self.bands * self.rows], np.uint64).reshape(len(sigs), self.bands, self.rows)
        return (_mix((band * self._weights).sum(axis=2)) >> np.uint64(32)).astype(np.uint32)

    def find(self, sigs: np.ndarray, record: bool = False) -> np.ndarray:
        """Which rows of ``sigs`` (documents in corpus order; a memory map will do) are near-duplicates of
        an earlier kept row. ``record`` fills ``matches``."""
        keys = np.concatenate([self.band_keys(np.asarray(sigs[i:i + 8192])) for i in range(0, len(sigs), 8192)]
                              or [np.zeros((0, self.bands), np.uint32)])
        shared = np.zeros(keys.shape, bool)  # the document's bucket in that band holds another document
        for b in range(self.bands):
            _, inverse, counts = np.unique(keys[:, b], return_inverse=True, return_counts=True)
            shared[:, b] = counts[inverse.reshape(-1)] > 1
        buckets: dict[int, list[int]] = {}
        removed = np.zeros(len(sigs), bool)
        matched: set[int] = set()
        for i in np.flatnonzero(shared.any(axis=1)).tolist():  # a document alone in every bucket stays
            ids = [(int(b) << 32) | int(keys[i, b]) for b in np.flatnonzero(shared[i])]
            sig = np.asarray(sigs[i])
            for k in sorted({k for key in ids for k in buckets.get(key, ())}):
                if np.count_nonzero(sigs[k] == sig) >= self.threshold * len(sig):
                    removed[i] = True
                    matched.add(k)
                    if record:
                        self.matches[i] = k
                    break
            else:
                for key in ids:
                    buckets.setdefault(key, []).append(i)
        self.removed += int(removed.sum())
        self.clusters += len(matched)
        return removed
