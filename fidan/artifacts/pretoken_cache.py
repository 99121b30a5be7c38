"""A faster way to encode documents with fidan's own byte-level BPE tokenizers: pre-token by pre-token.

`tokenizers` spends most of its time on fidan's Turkish split regex (Oniguruma, ~2.5 MB/s on one core;
the BPE merges are cheap), and encodes the same words over and over. Here the split runs in the
`regex` module (~10 MB/s) and every distinct pre-token is encoded once, by the tokenizer's own BPE model,
and kept in a dictionary; a document's ids are its pre-tokens' ids joined.

The ids are the tokenizer's own, exactly:

- the shortcut is taken only for a tokenizer whose whole pipeline is the Turkish split followed by the
  byte-level mapping (no normalizer, BPE without dropout); a new pre-token is then mapped to bytes as
  the tokenizer maps it and handed to the tokenizer's own BPE model, as the tokenizer does with each
  pre-token;
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
from tokenizers.pre_tokenizers import ByteLevel

from fidan.text.split_pattern import turkish_pattern

# Distinct pre-tokens kept (~150 bytes each): the dictionary is emptied when full, so memory stays flat.
MAX_ENTRIES = 300_000
_CLASSES = (r"[\p{L}\p{M}]", r"\p{N}", r"\s")


def _byte_level_table() -> dict[int, str]:
    """The byte-level alphabet (GPT-2's): printable bytes stand for themselves, the rest from U+0100 on."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    moved = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(0x100 + i) for i, b in enumerate(moved)}}


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
        self.dtype = np.dtype(dtype)
        self.encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        self.split = regex.compile(pattern)
        added = sorted({t["content"] for t in spec.get("added_tokens", []) if t.get("content")}, key=len,
                       reverse=True)
        self.added = regex.compile("|".join(map(regex.escape, added))) if added else None
        self.ids: dict[str, bytes] = {}
        self.good: set[str] = set()  # characters both engines put in the same classes
        self.bad: set[str] = set()
        self.whole = 0  # documents handed to the tokenizer whole
        self._onig = [pre_tokenizers.Split(Regex(c), behavior="removed") for c in _CLASSES]
        self._re = [regex.compile(c) for c in _CLASSES]
        # A pre-token's UTF-8 bytes, read as Latin-1 (one character per byte), then translated.
        self._to_byte_level = str.maketrans({chr(b): c for b, c in _byte_level_table().items()})
        self._model = tokenizer.model
        probe = "aZ ~\n\t\x00\x7f\u00e7\u0131\u20ac\U0001f600"
        if ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(probe)[0][0] != self._bytes(probe):
            raise ValueError("this tokenizers' byte-level alphabet is not the one expected")

    def _bytes(self, piece: str) -> str:
        return piece.encode().decode("latin-1").translate(self._to_byte_level)

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
        if not all([self._agree(ch) for ch in set("".join(new))]):  # (every character checked, once)
            new = {p for p in new if not self.bad.intersection(p)}
        tokenize, to_bytes, dtype = self._model.tokenize, self._bytes, self.dtype
        for p in new:
            ids[p] = np.array([t.id for t in tokenize(to_bytes(p))], dtype=dtype).tobytes()
        out: list[bytes | None] = []
        for ps in pieces:
            try:
                out.append(None if ps is None else b"".join(map(ids.__getitem__, ps)))
            except KeyError:  # a piece with a character the engines disagree on
                out.append(None)
        slow = [i for i, b in enumerate(out) if b is None]
        self.whole += len(slow)
        if slow:
            for i, e in zip(slow, self.encode([docs[i] for i in slow], add_special_tokens=False), strict=True):
                out[i] = np.asarray(e.ids, dtype=self.dtype).tobytes()
        return out  # type: ignore[return-value]
