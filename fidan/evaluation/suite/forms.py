"""Turkish word forms from zemberek's generator, and the check that a word is a real form.

Every word a suite item shows (right answer or distractor) that carries a suffix is generated here from
a dictionary item and a morpheme sequence (``kitap`` + ``A3sg P1sg Ins`` → ``kitabımla``), so a wrong
choice is a real Turkish form in the wrong place, never a misspelling.
"""

from __future__ import annotations

from functools import cache, lru_cache

from fidan.errors import FidanError
from fidan.text.zemberek import morphology

# The morpheme sequence of each part of speech starts with the POS morpheme zemberek's graph begins with.
POS = {"Noun": "Noun", "Verb": "Verb", "Pron": "Pronoun", "Ques": "Question"}


@lru_cache(maxsize=1)
def _morphemes() -> dict:
    morphology()  # imports zemberek the quiet way first
    from zemberek.morphology.morphotactics.turkish_morphotactics import get_morpheme_map

    return get_morpheme_map()


def _item(lemma: str, pos: str):
    """The dictionary item of ``lemma`` with this part of speech (a common word, not a proper noun)."""
    want = POS[pos]
    for item in morphology().lexicon.item_map.get(lemma, []):
        if item.primary_pos.name == want and item.secondary_pos.name not in ("ProperNoun", "Abbreviation"):
            return item
    raise FidanError(f"zemberek's lexicon has no {pos} {lemma!r}; the suite's word lists need fixing")


@cache
def form(lemma: str, pos: str, *morphemes: str) -> str:
    """The surface form zemberek generates: ``form("kitap", "Noun", "A3sg", "P1sg", "Ins")`` → ``kitabımla``.

    A verb's lemma is its infinitive (``gitmek``). Exactly one surface is expected; anything else is a
    bug in the word lists, raised rather than guessed.
    """
    table = _morphemes()
    seq = tuple(table[m] for m in (pos, *morphemes))
    generated = morphology().word_generator.generate(item=_item(lemma, pos), morphemes=seq)
    surfaces = sorted({r.surface for r in generated})
    if len(surfaces) != 1:
        raise FidanError(f"zemberek generates {surfaces or 'nothing'} for {lemma} {pos} {' '.join(morphemes)}; "
                         "the suite's word lists need fixing")
    return surfaces[0]


def noun(lemma: str, case: str = "Nom", poss: str = "Pnon", number: str = "A3sg") -> str:
    return form(lemma, "Noun", number, poss, case)


def verb(lemma: str, *morphemes: str) -> str:
    return form(lemma, "Verb", *morphemes)


@cache
def is_real_form(word: str) -> bool:
    """Whether zemberek analyses ``word`` as a form of a common word (its proper-noun readings, which
    accept almost any string, do not count)."""
    for analysis in morphology().analyze(word).analysis_results:
        item = analysis.item
        if not analysis.is_unknown() and item.secondary_pos.name not in ("ProperNoun", "Abbreviation"):
            return True
    return False


BACK, FRONT = "aıou", "eiöü"


def last_vowel(word: str) -> str:
    return next(c for c in reversed(word) if c in BACK + FRONT)


def particle_vowel(word: str) -> str:
    """The vowel of the question particle after ``word`` (four-way harmony: gitti mi, aldı mı, oldu mu, gördü mü)."""
    return {"a": "ı", "ı": "ı", "o": "u", "u": "u", "e": "i", "i": "i", "ö": "ü", "ü": "ü"}[last_vowel(word)]


def particle(vowel: str, person: str = "A3sg") -> str:
    """The question particle with this vowel and person (``misin``, ``musunuz``); zemberek lists each vowel
    as its own item."""
    return form("m" + vowel, "Ques", "Pres", person)
