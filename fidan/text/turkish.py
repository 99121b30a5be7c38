"""Turkish text rules: normalization for corpora and Turkish-correct casing.

Python's ``str.lower()`` maps ``I`` to ``i`` and ``İ`` to ``i̇`` (i + combining dot), which is wrong
for Turkish, where the dotted and dotless i are distinct letters: I↔ı and İ↔i.
"""

from __future__ import annotations

import re
import unicodedata

TURKISH_LOWER = "abcçdefgğhıijklmnoöprsştuüvyz"
TURKISH_UPPER = "ABCÇDEFGĞHIİJKLMNOÖPRSŞTUÜVYZ"

_UPPER_MAP = str.maketrans({"ı": "I", "i": "İ"})

# Control characters (Unicode category Cc) except newline and tab, plus a few invisible format
# characters that only add noise to a corpus. Zero-width joiners stay: emoji sequences need them.
_DROP_FORMAT = {"\ufeff", "\u00ad", "\u200b", "\u2060"}
# Category Cc is U+0000-U+001F and U+007F-U+009F; tab (U+0009) and newline (U+000A) stay.
_DROP = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f" + "".join(sorted(_DROP_FORMAT)) + "]")
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace except newline
_MANY_NEWLINES = re.compile(r"\n{3,}")


def lower_tr(text: str) -> str:
    """Lowercase with Turkish rules: ``I`` → ``ı``, ``İ`` → ``i`` (also when written as I + U+0307)."""
    # str.replace runs in C over the whole string; translate() with a mapping calls back per character.
    return text.replace("I\u0307", "i").replace("I", "ı").replace("İ", "i").lower()


def upper_tr(text: str) -> str:
    """Uppercase with Turkish rules: ``ı`` → ``I``, ``i`` → ``İ``."""
    return text.translate(_UPPER_MAP).upper()


def capitalize_tr(text: str) -> str:
    """First letter upper, the rest lower, with Turkish rules (``istanbul`` → ``İstanbul``)."""
    return upper_tr(text[:1]) + lower_tr(text[1:]) if text else text


# A word with its apostrophe suffix (which stays lower case); a suffix after a number is left alone.
_LETTER_RUN = re.compile(r"(?<![\w'’])[^\W\d_]+(?:['’][^\W\d_]+)?")


def title_tr(text: str) -> str:
    """Every word capitalized with Turkish rules (``ılık irmak`` → ``Ilık İrmak``); other characters kept."""
    return _LETTER_RUN.sub(lambda m: capitalize_tr(m.group(0)), text)


def casefold_tr(text: str) -> str:
    """A caseless key for comparing Turkish words: NFC, then Turkish lowercase (``İSTANBUL`` ≡ ``istanbul``,
    but ``ırmak`` ≠ ``irmak``)."""
    return lower_tr(unicodedata.normalize("NFC", text))


def normalize_text(text: str) -> str:
    """Normalize a document: NFC, control characters removed, whitespace tidied.

    Newlines are kept (paragraphs carry meaning); runs of other whitespace become one space,
    spaces around line ends are trimmed, and more than one blank line becomes one.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _DROP.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


# Letter runs or digit runs, each with an apostrophe suffix kept attached.
WORD_RE = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?|\d+(?:['’][^\W\d_]+)?", re.UNICODE)


def words(text: str) -> list[str]:
    """Words as a Turkish reader sees them: letter runs, with an apostrophe suffix kept attached
    (``Ankara'da``, ``2023'te``)."""
    return WORD_RE.findall(text)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of :func:`words` in ``text``."""
    return [m.span() for m in WORD_RE.finditer(text)]
