"""Turkish text rules: casing (I/ı, İ/i) and word spans."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fidan.text.turkish import (
    TURKISH_LOWER,
    TURKISH_UPPER,
    capitalize_tr,
    casefold_tr,
    lower_tr,
    title_tr,
    upper_tr,
    word_spans,
    words,
)


def test_dotted_and_dotless_i_map_to_their_own_partners():
    assert lower_tr("IŞIK") == "ışık"
    assert lower_tr("İSTANBUL") == "istanbul"
    assert upper_tr("ılık") == "ILIK"
    assert upper_tr("irmak") == "İRMAK"
    # Python's own rules get both wrong for Turkish:
    assert "IŞIK".lower() != "ışık" and "irmak".upper() != "İRMAK"


def test_decomposed_capital_dotted_i_lowercases_to_plain_i():
    assert lower_tr("I\u0307stanbul") == "istanbul"
    assert casefold_tr("I\u0307STANBUL") == casefold_tr("istanbul")


def test_alphabets_correspond_letter_by_letter():
    assert len(TURKISH_LOWER) == len(TURKISH_UPPER) == 29
    assert upper_tr(TURKISH_LOWER) == TURKISH_UPPER
    assert lower_tr(TURKISH_UPPER) == TURKISH_LOWER


@given(st.text(alphabet=TURKISH_LOWER + TURKISH_UPPER + " '.,0123456789", max_size=40))
def test_casing_round_trips_on_turkish_text(s):
    assert lower_tr(upper_tr(s)) == lower_tr(s)
    assert upper_tr(lower_tr(s)) == upper_tr(s)
    assert len(lower_tr(s)) == len(s) == len(upper_tr(s))


def test_capitalize_and_title_keep_apostrophe_suffixes_lower():
    assert capitalize_tr("istanbul") == "İstanbul"
    assert capitalize_tr("ILIK") == "Ilık"
    assert title_tr("ılık irmak, ANKARA'DA çay-ocağı 2023'te") == "Ilık İrmak, Ankara'da Çay-Ocağı 2023'te"


def test_casefold_separates_dotted_and_dotless():
    assert casefold_tr("IRMAK") == "ırmak" != casefold_tr("irmak")


def test_words_keep_apostrophe_suffixes_and_spans_match():
    text = "Ankara'da 2023'te, evlerimizden çıktık."
    assert words(text) == ["Ankara'da", "2023'te", "evlerimizden", "çıktık"]
    assert [text[a:b] for a, b in word_spans(text)] == words(text)
