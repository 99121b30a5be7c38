"""`tr-question`: the question particle's form and place.

The particle *mi* is written apart from the word it questions, takes that word's vowel (*gitti mi*,
*aldı mı*, *oldu mu*, *gördü mü*) and, with the progressive and the aorist, carries the person ending
itself (*gidiyor musun?*, *gider misiniz?*), while the past keeps the person on the verb (*gittin mi?*).
Each item asks a question of a subject pronoun; the choices are built from zemberek's forms of the verb
and of the particle:

- for *sen, siz, biz*: the right form; the person on the wrong word (*gitti misin?*, *gidiyorsun mu?*);
  a particle with the wrong vowel; both mistakes at once;
- for *o* (no person ending): the particle with each of its four vowels.
"""

from __future__ import annotations

from fidan.evaluation.suite.common import item, rng, sample
from fidan.evaluation.suite.forms import particle, particle_vowel, verb
from fidan.evaluation.suite.verbs import VERB_PHRASES

NAME = "tr-question"
SIZE = 500

TIMES = {"Dün": "Past", "Geçen hafta": "Past", "Şimdi": "Prog1", "Şu anda": "Prog1", "Her gün": "Aor",
         "Genellikle": "Aor"}
PERSONS = {"sen": "A2sg", "siz": "A2pl", "biz": "A1pl", "o": "A3sg"}
VOWELS = "ıiuü"


def plan() -> list[tuple]:
    """(adverb, pronoun, verb phrase index, wrong vowels, answer position)."""
    r = rng(NAME)
    rows = sample([(a, p, v) for a in TIMES for p in PERSONS for v in range(len(VERB_PHRASES))], SIZE, r)
    return [(*row, r.random(), r.random(), r.randrange(4)) for row in rows]


def _question(form: str, person: str, wrong_vowel: float | None = None) -> str:
    """``form`` followed by the particle with ``person``: harmonic, or (``wrong_vowel`` in [0, 1)) one of
    the three other vowels."""
    right = particle_vowel(form)
    vowel = right
    if wrong_vowel is not None:
        others = [v for v in VOWELS if v != right]
        vowel = others[int(wrong_vowel * len(others))]
    return f"{form} {particle(vowel, person)}?"


def realize(spec: tuple) -> dict:
    adverb, pron, v, u1, u2, k = spec
    complement, lemma = VERB_PHRASES[v]
    tense, person = TIMES[adverb], PERSONS[pron]
    context = f"{adverb} {pron} {complement}"
    if person == "A3sg":
        bare = verb(lemma, tense, "A3sg")
        right = _question(bare, "A3sg")
        wrong = [f"{bare} {particle(x, 'A3sg')}?" for x in VOWELS if x != particle_vowel(bare)]
        return item(context, right, wrong, k, f"{pron}:{lemma}+{tense}")
    on_verb, bare = verb(lemma, tense, person), verb(lemma, tense, "A3sg")
    if tense == "Past":  # the person stays on the verb
        right, misplaced = (on_verb, "A3sg"), (bare, person)
    else:  # the person moves onto the particle
        right, misplaced = (bare, person), (on_verb, "A3sg")
    wrong = [_question(*misplaced), _question(*right, wrong_vowel=u1), _question(*misplaced, wrong_vowel=u2)]
    return item(context, _question(*right), wrong, k, f"{pron}:{lemma}+{tense}")
