"""Loading a tokenizer folder (``tokenizer.json`` + ``tokenizer_config.json``) fast, without transformers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer

from fidan.errors import FidanError
from fidan.runtime.io import atomic_dir

EOS_TOKEN = "<|endoftext|>"


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of the byte-level alphabet: printable bytes stand for themselves, the rest are shifted past 255."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    shift = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + shift)
            shift += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


@dataclass
class TokenizerBundle:
    """A loaded tokenizer with what training needs to know about it."""

    path: Path
    tokenizer: Tokenizer
    config: dict
    sha256: str

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def eos_id(self) -> int:
        token = self.config.get("eos_token") or EOS_TOKEN
        if isinstance(token, dict):
            token = token.get("content", EOS_TOKEN)
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise FidanError(f"tokenizer {self.path} has no end-of-text token {token!r}; retrain it with fidan")
        return tid

    def special_id(self, name: str) -> int | None:
        """The id of a special token named in tokenizer_config.json (``bos_token``, ``eos_token``...), or None."""
        token = self.config.get(name)
        if isinstance(token, dict):
            token = token.get("content")
        return self.tokenizer.token_to_id(token) if isinstance(token, str) else None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def token_bytes(self) -> np.ndarray:
        """UTF-8 byte length of each token id (0 for special tokens), for bits-per-byte."""
        n = self.vocab_size
        out = np.zeros(n, dtype=np.int32)
        special = {t.content for t in self.tokenizer.get_added_tokens_decoder().values() if t.special}
        spec = json.loads(self.tokenizer.to_str())
        byte_level = "ByteLevel" in json.dumps(spec.get("decoder") or {})
        # WordPiece (and BPE with a suffix/prefix) mark pieces with a string that is not text.
        prefix = (spec.get("model") or {}).get("continuing_subword_prefix") or ""
        dec = _byte_decoder()
        for i in range(n):
            tok = self.tokenizer.id_to_token(i)
            if tok is None or tok in special:
                continue
            if prefix and tok.startswith(prefix) and len(tok) > len(prefix):
                tok = tok[len(prefix):]
            if byte_level and all(c in dec for c in tok):
                out[i] = len(tok)
            else:
                out[i] = len(self.tokenizer.decode([i], skip_special_tokens=False).encode("utf-8"))
        return out


def load_tokenizer(path: str | Path) -> TokenizerBundle:
    """Load a tokenizer folder written by ``fidan tokenizer train`` (or any HF fast-tokenizer folder)."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.exists():
        raise FidanError(f"tokenizer not found: {file}; train one with `fidan tokenizer train`")
    raw = file.read_bytes()
    try:
        tok = Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception
        raise FidanError(f"{file} is not a valid tokenizer.json ({e}); retrain it") from None
    cfg_file = file.parent / "tokenizer_config.json"
    config = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.exists() else {}
    special_map = file.parent / "special_tokens_map.json"  # older transformers folders name special tokens here
    if special_map.exists():
        try:
            extra = json.loads(special_map.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            extra = {}
        config = {**{k: v for k, v in extra.items() if k.endswith("_token")}, **config}
    return TokenizerBundle(file.parent, tok, config, hashlib.sha256(raw).hexdigest())


def add_special_tokens(src: str | Path, dst: str | Path, tokens: list[str], chat_template: str | None = None
                       ) -> TokenizerBundle:
    """Copy the tokenizer folder ``src`` to ``dst`` with ``tokens`` added as special tokens.

    Tokens already present keep their ids; new ones get the next ids. ``chat_template`` (Jinja) is stored
    in ``tokenizer_config.json``, where ``transformers.AutoTokenizer`` finds it.
    """
    src, dst = Path(src), Path(dst)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    new = [t for t in tokens if tok.token_to_id(t) is None]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in new])
    cfg_file = src / "tokenizer_config.json"
    config = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.exists() else {}
    extra = list(config.get("extra_special_tokens") or [])
    config["extra_special_tokens"] = extra + [t for t in tokens if t not in extra]
    if chat_template is not None:
        config["chat_template"] = chat_template
    with atomic_dir(dst) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    return load_tokenizer(dst)
