"""The Turkish split pattern: the rules of fidan's pre-tokenizer, as one regex (Oniguruma syntax, as
`tokenizers` uses; the `regex` module reads it the same way). See fidan/tokenizer/pretokenize.py."""

from __future__ import annotations

_SPACE = r"[^\S\r\n]?"  # one optional space or tab, never a newline
_LETTERS = r"[\p{L}\p{M}]+"
_APOSTROPHE_SUFFIX = r"['’][\p{L}\p{M}]+"
_TAIL = r"|[^\S\r\n]?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def turkish_pattern(split_digits: bool = False) -> str:
    """The split regex (Oniguruma syntax, as `tokenizers` uses)."""
    digits = r"\p{N}" if split_digits else r"\p{N}+"
    return f"{_SPACE}{_LETTERS}|{_APOSTROPHE_SUFFIX}|{_SPACE}{digits}{_TAIL}"
