"""Language identification for `fidan data prepare`: keep documents that are Turkish.

The detector is lingua's (`lingua-language-detector`, the `quality` extra), built from the languages a
Turkish corpus meets: its Turkic neighbours, the languages of the region and of the web. Fewer languages
make it faster and leave the confidence to split among real alternatives. Turkmen is not among lingua's
languages, and lingua takes Turkmen text for Turkish with full confidence; so a hand-written check follows
when lingua says Turkish: letters that the Azerbaijani and Turkmen alphabets have and Turkish does not
(ə; ň, ý), at least 1% of a sample's letters, mark the text as one of those
(benchmarks/RESULTS.md).

A long document is judged on a sample, three stretches from its start, middle and end, so the cost per
document stays bounded and a foreign header or footer alone does not decide.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from fidan.errors import MissingExtra

LANGUAGES = ("TURKISH", "AZERBAIJANI", "KAZAKH", "ENGLISH", "GERMAN", "FRENCH", "SPANISH", "ITALIAN", "DUTCH",
             "PORTUGUESE", "RUSSIAN", "UKRAINIAN", "BULGARIAN", "GREEK", "ARABIC", "PERSIAN", "ALBANIAN",
             "BOSNIAN", "ROMANIAN", "HUNGARIAN", "INDONESIAN", "POLISH")
# Letters of the Azerbaijani (ə) and Turkmen (ň, ý) alphabets that Turkish lacks, and the language each marks
# (Turkmen ä and ž are left out: German and Slavic names in Turkish text carry them too).
OTHER_TURKIC = {"ə": "az", "ň": "tk", "ý": "tk"}
OTHER_TURKIC_SHARE = 0.01  # in Django's translations: ə 9.5% of Azerbaijani letters; ý 2.7%, ň 2.2% of Turkmen
INSTALL_HINT = "pip install 'fidan[quality]'"


def available() -> bool:
    """Whether lingua is installed."""
    try:
        import lingua  # noqa: F401
    except ImportError:
        return False
    return True


@lru_cache(maxsize=1)
def _detector():
    try:
        from lingua import Language, LanguageDetectorBuilder
    except ImportError:
        raise MissingExtra(f"the language filter needs lingua-language-detector: {INSTALL_HINT}, "
                           "or pass --skip-filter language") from None
    langs = [getattr(Language, name) for name in LANGUAGES]
    return LanguageDetectorBuilder.from_languages(*langs).build(), Language.TURKISH


def describe() -> str:
    """The detector and its languages, for the manifest."""
    from importlib.metadata import version

    return (f"lingua-language-detector {version('lingua-language-detector')}, high accuracy, languages: "
            + ", ".join(name.lower() for name in LANGUAGES))


def sample(text: str, chars: int) -> str:
    """The text itself, or three stretches of about ``chars / 3`` characters from its start, middle and end,
    cut at spaces."""
    if len(text) <= chars:
        return text
    third = max(1, chars // 3)
    parts = []
    last = len(text) - third
    for start in (0, (len(text) - third) // 2, last):
        if start:  # begin after a space, end before one: whole words only
            space = text.find(" ", start)
            start = space + 1 if 0 <= space < start + 50 else start
        piece = text[start:start + third]
        cut = piece.rfind(" ")
        parts.append(piece[:cut] if cut > third // 2 and start + third < len(text) else piece)
    return "\n".join(parts)


def other_turkic(text: str) -> str | None:
    """"az" or "tk" when the text carries enough Azerbaijani or Turkmen letters that Turkish lacks, else None."""
    lower = text.lower()
    marks = Counter({lang: 0 for lang in ("az", "tk")})
    for ch, lang in OTHER_TURKIC.items():
        marks[lang] += lower.count(ch)
    total = sum(marks.values())
    if not total or total < OTHER_TURKIC_SHARE * sum(c.isalpha() for c in lower):
        return None
    return marks.most_common(1)[0][0]


def identify(text: str, sample_chars: int = 1000) -> tuple[str, float]:
    """(the most likely language's ISO 639-1 code, the confidence that the text is Turkish) for a sample."""
    detector, turkish = _detector()
    text = sample(text, sample_chars)
    values = detector.compute_language_confidence_values(text)
    top = values[0] if values and values[0].value > 0 else None
    if top is None:
        return "unknown", 0.0
    if top.language == turkish:
        other = other_turkic(text)
        if other:
            return other, 0.0
    tr = next((v.value for v in values if v.language == turkish), 0.0)
    return top.language.iso_code_639_1.name.lower(), float(tr)

