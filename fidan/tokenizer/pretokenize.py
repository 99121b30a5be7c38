"""The Turkish pre-tokenizer: a regex split that runs inside `tokenizers` (Rust), then byte-level mapping.

Pre-tokens are the pieces that BPE merges never cross. The rules, in order of the regex alternatives:

- a word is one run of letters and combining marks, with the space before it: `` evlerimizden``;
  Turkish letters (ç ğ ı İ ö ş ü) are ordinary letters here, so they never split a word;
- an apostrophe suffix is its own pre-token: ``Ankara'da`` → ``Ankara`` + ``'da``, ``2023'te`` →
  ``2023`` + ``'te``, so ``'da`` is the same token after every proper noun and number
  (both ' and ’ are apostrophes);
- numbers are one run of digits, or one digit each with ``split_digits``;
- punctuation runs and whitespace runs as in GPT-4-style patterns, newlines kept apart from words.

Every character lands in exactly one pre-token and the byte-level step maps all 256 bytes, so
``decode(encode(s)) == s`` for every string; nothing is normalized. The result is plain JSON in
tokenizer.json, so any `tokenizers` or `transformers` user loads it without fidan.
"""

from __future__ import annotations

from tokenizers import Regex, pre_tokenizers

from fidan.text.split_pattern import turkish_pattern

__all__ = ["turkish_pattern", "turkish_pretokenizer", "bytelevel_pretokenizer", "make_pretokenizer"]


def turkish_pretokenizer(split_digits: bool = False) -> pre_tokenizers.PreTokenizer:
    """Turkish split + byte-level mapping, both inside `tokenizers`."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(turkish_pattern(split_digits)), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def bytelevel_pretokenizer() -> pre_tokenizers.PreTokenizer:
    """GPT-2's byte-level pre-tokenizer (its English-tuned regex), the plain yardstick."""
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


PRETOKENIZERS = ("turkish", "turkish-digits", "bytelevel")


def make_pretokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    if name == "turkish":
        return turkish_pretokenizer(split_digits=False)
    if name == "turkish-digits":
        return turkish_pretokenizer(split_digits=True)
    if name == "bytelevel":
        return bytelevel_pretokenizer()
    raise ValueError(f"unknown pre-tokenizer {name!r}")
