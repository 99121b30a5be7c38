"""A faster way to encode documents with fidan's own byte-level BPE tokenizers: pre-token by pre-token.

`tokenizers` spends most of its time on fidan's Turkish split regex (Oniguruma, ~2.5 MB/s on one core;
the BPE merges are cheap), and encodes the same words over and over. Here the split runs in the
`regex` module (~10 MB/s) and every distinct pre-token is encoded once, by the tokenizer itself, and kept
in a dictionary; a document's ids are its pre-tokens' ids joined.

The ids are the tokenizer's own, exactly:

- the shortcut is taken only for a tokenizer whose whole pipeline is the Turkish split followed by the
  byte-level mapping (no normalizer, BPE without dropout): a pre-token's ids then do not depend on its
  neighbours, and a pre-token encoded on its own splits into itself again (only the pattern's last
  alternatives look ahead, and only at whitespace);
- both engines run the same pattern, whose meaning depends only on which characters are letters or
  marks, digits or whitespace; each character met is checked once for the three classes in Oniguruma
  (through `tokenizers`) and in `regex` (their Unicode versions differ), and a document with a character
  they disagree on goes to the tokenizer whole;
- so does a document that contains an added token's text (`<|endoftext|>` written out, say), which the
  tokenizer matches before splitting.
"""

from __future__ import annotations

import json

import numpy as np
import regex
from tokenizers import Regex, Tokenizer, pre_tokenizers

from fidan.text.split_pattern import turkish_pattern

# Distinct pre-tokens kept (~150 bytes each): the dictionary is emptied when full, so memory stays flat.
MAX_ENTRIES = 300_000
_CLASSES = (r"[\p{L}\p{M}]", r"\p{N}", r"\s")


def _split_pattern(spec: dict) -> str | None:
    """The Turkish split pattern if the tokenizer is exactly split + byte level, else None."""
    pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
    if spec.get("normalizer") is not None or model.get("type") != "BPE" or model.get("dropout") is not None:
        return None
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return None
    split, byte_level = steps
    pattern = (split.get("pattern") or {}).get("Regex")
    if (split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert")
            or pattern not in (turkish_pattern(False), turkish_pattern(True))):
        return None
    if byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex") or byte_level.get("add_prefix_space"):
        return None
    return pattern


class PretokenEncoder:
    """Encodes batches of documents to ids (as bytes of ``dtype``) with a pre-token dictionary."""

    def __init__(self, tokenizer: Tokenizer, dtype: np.dtype):
        spec = json.loads(tokenizer.to_str())
        pattern = _split_pattern(spec)
        if pattern is None:
            raise ValueError("not a tokenizer made of fidan's Turkish split and the byte-level mapping")
        self.tokenizer, self.dtype = tokenizer, np.dtype(dtype)
        self.encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        self.split = regex.compile(pattern)
        added = sorted({t["content"] for t in spec.get("added_tokens", []) if t.get("content")}, key=len,
                       reverse=True)
        self.added = regex.compile("|".join(map(regex.escape, added))) if added else None
        self.ids: dict[str, bytes] = {}
        self.good: set[str] = set()  # characters both engines put in the same classes
        self.bad: set[str] = set()
        self._onig = [pre_tokenizers.Split(Regex(c), behavior="removed") for c in _CLASSES]
        self._re = [regex.compile(c) for c in _CLASSES]

    @staticmethod
    def handles(tokenizer: Tokenizer) -> bool:
        return _split_pattern(json.loads(tokenizer.to_str())) is not None

    def _agree(self, ch: str) -> bool:
        if ch in self.good:
            return True
        if ch in self.bad:
            return False
        same = all((not onig.pre_tokenize_str(ch)) == bool(r.fullmatch(ch))
                   for onig, r in zip(self._onig, self._re, strict=True))
        (self.good if same else self.bad).add(ch)
        return same

    def _pieces(self, doc: str) -> list[str] | None:
        if self.added is not None and self.added.search(doc):
            return None
        pieces = self.split.findall(doc)
        # Every character lands in a pre-token; were one skipped, the tokenizer would keep it: go there.
        return pieces if sum(map(len, pieces)) == len(doc) else None

    def __call__(self, docs: list[str]) -> list[bytes]:
        """Each document's ids, as the tokenizer gives them with ``add_special_tokens=False``."""
        pieces = [self._pieces(d) for d in docs]
        ids = self.ids
        new = {p for ps in pieces if ps is not None for p in ps if p not in ids}
        if len(ids) + len(new) > MAX_ENTRIES:
            ids.clear()
            new = {p for ps in pieces if ps is not None for p in ps}
        fresh = [p for p in new if all(self._agree(ch) for ch in set(p))]
        for p, e in zip(fresh, self.encode(fresh, add_special_tokens=False) if fresh else (), strict=True):
            ids[p] = np.asarray(e.ids, dtype=self.dtype).tobytes()
        out: list[bytes | None] = []
        for ps in pieces:
            try:
                out.append(None if ps is None else b"".join(map(ids.__getitem__, ps)))
            except KeyError:  # a piece with a character the engines disagree on
                out.append(None)
        slow = [i for i, b in enumerate(out) if b is None]
        for i, e in zip(slow, self.encode([docs[i] for i in slow], add_special_tokens=False) if slow else (), strict=True):
            out[i] = np.asarray(e.ids, dtype=self.dtype).tobytes()
        return out  # type: ignore[return-value]
