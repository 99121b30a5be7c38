"""`tr-order`: natural against scrambled word order.

Turkish moves whole phrases around freely, but inside a phrase the order is fixed: modifiers before
the noun (*iki kırmızı elma*), the possessor before the possessed (*masanın üstüne*). Each item is a
sentence "subject, place, object, verb" (*yaşlı adam masanın üstüne iki kırmızı elma koydu.*) after a
time adverb; the wrong choices are the same words in a random order that breaks every phrase (no two
neighbours of a phrase stay neighbours in their order) and does not end in the verb, so every choice
holds exactly the same words: word frequencies alone cannot tell them apart.
"""

from __future__ import annotations

import random

from fidan.evaluation.suite.common import item, rng, sample
from fidan.evaluation.suite.forms import noun, verb

NAME = "tr-order"
SIZE = 500

SUBJECTS = [("yaşlı", "adam"), ("küçük", "kız"), ("genç", "öğretmen"), ("yorgun", "işçi"), ("yaşlı", "kadın"),
            ("küçük", "çocuk"), ("genç", "doktor"), ("çalışkan", "öğrenci")]
PLACES = [("masa", "üst"), ("kutu", "iç"), ("raf", "üst"), ("kapı", "ön"), ("sepet", "iç"), ("pencere", "ön"),
          ("dolap", "iç")]
OBJECTS = [("iki", "kırmızı", "elma"), ("üç", "sarı", "limon"), ("beş", "beyaz", "yumurta"), ("dört", "yeşil", "kalem"),
           ("iki", "mavi", "tabak"), ("üç", "eski", "kitap"), ("iki", "büyük", "karpuz"), ("dört", "temiz", "bardak")]
VERBS = ["koymak", "bırakmak"]
OPENERS = ["Dün akşam", "Bu sabah", "Az önce", "Geçen hafta", "O gün"]


def scrambles(phrases: list[list[str]], n: int, r: random.Random) -> list[list[str]]:
    """``n`` different orders of the words that keep no within-phrase neighbours together and do not
    end with the last phrase (the verb)."""
    words = [w for p in phrases for w in p]
    pairs = {(p[i], p[i + 1]) for p in phrases for i in range(len(p) - 1)}
    found: list[list[str]] = []
    while len(found) < n:
        order = words[:]
        r.shuffle(order)
        if order[-1] == phrases[-1][-1] or order in found:
            continue
        if any((a, b) in pairs for a, b in zip(order, order[1:], strict=False)):
            continue
        found.append(order)
    return found


def plan() -> list[tuple]:
    """(opener, subject, place, object, verb indices, answer position, scramble seed)."""
    r = rng(NAME)
    rows = sample([(o, s, p, b, v) for o in range(len(OPENERS)) for s in range(len(SUBJECTS))
                   for p in range(len(PLACES)) for b in range(len(OBJECTS)) for v in range(len(VERBS))], SIZE, r)
    return [(*row, r.randrange(4), r.randrange(2**31)) for row in rows]


def realize(spec: tuple) -> dict:
    o, s, p, b, v, k, seed = spec
    owner, part = PLACES[p]
    phrases = [list(SUBJECTS[s]), [noun(owner, "Gen"), noun(part, "Dat", "P3sg")], list(OBJECTS[b]),
               [verb(VERBS[v], "Past", "A3sg")]]
    wrong = [" ".join(w) + "." for w in scrambles(phrases, 3, random.Random(seed))]
    right = " ".join(w for ph in phrases for w in ph) + "."
    return item(OPENERS[o], right, wrong, k, f"{SUBJECTS[s][1]}:{owner}:{OBJECTS[b][2]}:{VERBS[v]}")
