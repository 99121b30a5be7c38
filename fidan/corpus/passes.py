"""The passes of `fidan data prepare` over a corpus cut into units (fidan/corpus/units.py).

1. **scan** (each unit, in parallel): clean each document, drop short ones, and note an 8-byte digest of
   each one's text, plus (when repeated_lines is on) the digests of its long lines.
2. **plan** (once): which documents are the first copy of their text over the whole corpus, in unit
   order; which lines recur in enough distinct documents to be boilerplate. Both from the digests alone,
   the line digests taken a slice of the hash space at a time so memory stays bounded.
3. **filter** (each unit, in parallel): the quality filters on first copies; each surviving document as
   its output line, with its final digest, split, size and (for --near-dup) MinHash signature.
4. **merge** (once, fidan/corpus/prepare.py): drops the texts that the filters made equal to an earlier
   one and near-duplicates, in corpus order, and writes the shards.

A ``code:`` source's documents (Unit.code) are kept as read: no cleaning, no quality filters, no line
digests, no near-duplicate signature; only min_chars and the exact deduplication apply to them.

Every decision depends on the documents and their order only, so any number of workers gives the same
data folder, and a resumed run the same as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fidan.corpus.neardup import NUM_PERM, signatures
from fidan.corpus.quality import QualityFilter, line_digests
from fidan.corpus.units import Unit
from fidan.text.turkish import normalize_text

SPLIT_RULE = "blake2b-64(cleaned document text) mod 1,000,000 < val_fraction * 1,000,000 → val, else train"
LINE_BUCKETS = 16  # slices of the line-hash space the plan counts one at a time
SIGN_BATCH = 16_000  # characters of documents signed together (fastest on the bundled corpus: 8-16k)


@dataclass(frozen=True)
class Settings:
    """What the passes need to know of a preparation's options (sent to the worker processes)."""

    text_field: str
    min_chars: int
    val_fraction: float
    quality: dict  # filter name -> settings (fidan.corpus.quality.resolve)
    near_dup: float

    def fingerprint(self, *parts: str) -> str:
        blob = json.dumps([asdict(self), *parts], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @property
    def line_chars(self) -> int | None:
        """repeated_lines' min_chars when that filter is on, else None (no line digests needed)."""
        rule = self.quality.get("repeated_lines")
        return int(rule["min_chars"]) if rule else None


def digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def split_of(text: str, val_fraction: float) -> str:
    """Stable, content-based split: the same document always lands in the same split (none in val at 0)."""
    return "val" if _held_out(digest(text), val_fraction) else "train"


def _held_out(text_digest: int, val_fraction: float) -> bool:
    return (text_digest % 1_000_000) < val_fraction * 1_000_000


def _cleaned(unit: Unit, settings: Settings, count):
    """(cleaned text, or None when shorter than min_chars) per document of the unit, in order."""
    for raw in unit.documents(settings.text_field):
        count(len(raw))
        text = raw if unit.code else normalize_text(raw)
        yield text if len(text) >= settings.min_chars else None


def scan_unit(unit: Unit, folder: Path, count, settings: Settings) -> None:
    """Pass 1 for one unit: ``digests.npy`` (one per document kept by length), ``lines.npy`` (distinct
    (line digest, document digest) pairs, sorted) and ``meta.json`` (documents read, too short)."""
    digests, lines, docs = array("Q"), array("Q"), array("Q")
    read = short = 0
    for text in _cleaned(unit, settings, count):
        read += 1
        if text is None:
            short += 1
            continue
        d = digest(text)
        digests.append(d)
        if settings.line_chars is not None and not unit.code:
            for line in line_digests(text, settings.line_chars):
                lines.append(int.from_bytes(line, "little"))
                docs.append(d)
    count.flush()
    np.save(folder / "digests.npy", np.frombuffer(digests, dtype=np.uint64))
    if settings.line_chars is not None:
        pairs = np.stack([np.frombuffer(lines, np.uint64), np.frombuffer(docs, np.uint64)], axis=1)
        np.save(folder / "lines.npy", _distinct_pairs(pairs))
    (folder / "meta.json").write_text(json.dumps({"read": read, "too_short": short}))


def _distinct_pairs(pairs: np.ndarray) -> np.ndarray:
    """Rows of an (n, 2) uint64 array, distinct and sorted by the first column, then the second."""
    if not len(pairs):
        return pairs.reshape(0, 2)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    keep = np.ones(len(pairs), bool)
    keep[1:] = (pairs[1:, 0] != pairs[:-1, 0]) | (pairs[1:, 1] != pairs[:-1, 1])
    return pairs[keep]


def plan(scans: list[Path], folder: Path, settings: Settings) -> None:
    """Pass 2: ``first.npy`` (per document kept by length, over all units in order: the first copy of its
    text) and ``repeated.npy`` (sorted digests of lines in at least min_documents distinct documents)."""
    folder.mkdir(parents=True, exist_ok=True)
    digests = np.concatenate([np.load(s / "digests.npy", allow_pickle=False) for s in scans] or [np.zeros(0, np.uint64)])
    first = np.zeros(len(digests), bool)
    first[np.unique(digests, return_index=True)[1]] = True
    np.save(folder / "first.npy", first)
    del digests
    if settings.line_chars is None:
        return
    least = settings.quality["repeated_lines"]["min_documents"]
    tables = [np.load(s / "lines.npy", mmap_mode="r", allow_pickle=False) for s in scans]
    edges = [np.uint64(b * (2**64 // LINE_BUCKETS)) for b in range(LINE_BUCKETS)]
    common = []
    for b in range(LINE_BUCKETS):
        parts = []
        for t in tables:
            lo = np.searchsorted(t[:, 0], edges[b], side="left")
            hi = len(t) if b + 1 == LINE_BUCKETS else np.searchsorted(t[:, 0], edges[b + 1], side="left")
            parts.append(np.asarray(t[lo:hi]))
        pairs = _distinct_pairs(np.concatenate(parts) if parts else np.zeros((0, 2), np.uint64))
        values, counts = np.unique(pairs[:, 0], return_counts=True)
        common.append(values[counts >= least])
    np.save(folder / "repeated.npy", np.concatenate(common) if common else np.zeros(0, np.uint64))


class _Signer:
    """MinHash signatures of the documents given, computed in batches of about SIGN_BATCH characters
    (signing a batch costs less than signing its documents one by one)."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.chars = 0
        self.done: list[np.ndarray] = []

    def add(self, text: str) -> None:
        self.pending.append(text)
        self.chars += len(text)
        if self.chars >= SIGN_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.done.append(signatures(self.pending))
        self.pending, self.chars = [], 0

    def result(self) -> np.ndarray:
        self._flush()
        return np.concatenate(self.done) if self.done else np.zeros((0, NUM_PERM), np.uint32)


def filter_unit(unit: Unit, folder: Path, count, settings: Settings, plan_dir: str, offset: int) -> None:
    """Pass 3 for one unit: the quality filters on the first copies; the survivors as ``docs.jsonl``
    lines with ``final.npy`` (digest of the final text), ``changed.npy`` (the filters cut lines),
    ``val.npy`` (held out), ``chars.npy``, ``nbytes.npy`` (UTF-8), ``sig.npy`` (--near-dup, not for code) and
    ``stats.json``."""
    first = np.load(Path(plan_dir) / "first.npy", mmap_mode="r", allow_pickle=False)
    filters = QualityFilter(settings.quality)
    if settings.line_chars is not None:
        filters.common_lines = {v.tobytes() for v in np.load(Path(plan_dir) / "repeated.npy", allow_pickle=False)}
    prose = not unit.code
    signer = _Signer() if settings.near_dup and prose else None
    final, changed, val, chars, nbytes = array("Q"), array("b"), array("b"), array("q"), array("q")
    low = 0
    j = offset
    with open(folder / "docs.jsonl", "w", encoding="utf-8") as out:
        for text in _cleaned(unit, settings, count):
            if text is None:
                continue
            j += 1
            if not first[j - 1]:
                continue
            kept = filters.apply(text, settings.min_chars) if filters.settings and prose else text
            if kept is None:
                low += 1
                continue
            d = digest(kept)
            final.append(d)
            changed.append(kept != text)
            val.append(_held_out(d, settings.val_fraction))
            chars.append(len(kept))
            line = json.dumps({"text": kept, "source": unit.source}, ensure_ascii=False) + "\n"
            nbytes.append(len(kept.encode("utf-8")))
            if signer is not None:
                signer.add(kept)
            out.write(line)
    count.flush()
    for name, values, dtype in (("final", final, np.uint64), ("changed", changed, bool), ("val", val, bool),
                                ("chars", chars, np.int64), ("nbytes", nbytes, np.int64)):
        np.save(folder / f"{name}.npy", np.frombuffer(values, dtype=np.int8 if dtype is bool else dtype)
                .astype(dtype))
    if signer is not None:
        np.save(folder / "sig.npy", signer.result())
    (folder / "stats.json").write_text(json.dumps({"low_quality": low, "filters": filters.state()},
                                                  ensure_ascii=False))
