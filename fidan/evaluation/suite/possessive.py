"""`tr-possessive`: the possessive suffix agrees with the possessor's person.

After a genitive pronoun the possessed noun carries the matching possessive suffix: *benim kitabım*,
*senin kitabın*, *onun kitabı*, *bizim kitabımız*, *sizin kitabınız*. Each item gives the pronoun; the
choices are the noun with four different possessive suffixes (zemberek's forms), only one of them the
pronoun's person. *bizim* never gets *kitabım* as a wrong choice: colloquial Turkish says *bizim ev* for
"my home", so that pairing is not clearly wrong.
"""

from __future__ import annotations

from fidan.evaluation.suite.common import item, rng, sample
from fidan.evaluation.suite.forms import noun

NAME = "tr-possessive"
SIZE = 500

# pronoun → (its genitive, the possessive it asks for); a closed class, written out
PERSONS = {"ben": ("benim", "P1sg"), "sen": ("senin", "P2sg"), "o": ("onun", "P3sg"), "biz": ("bizim", "P1pl"),
           "siz": ("sizin", "P2pl")}
NOT_WRONG = {("biz", "P1sg")}
THINGS = ["araba", "ev", "kitap", "çanta", "oda", "telefon", "bilgisayar", "bisiklet", "defter", "kalem", "saat",
          "anahtar", "ayakkabı", "gömlek", "ceket", "şemsiye", "bahçe", "masa"]
OPENERS = ["Sanırım", "Galiba", "Bence", "Anlaşılan", "Bak,"]
RESTS = ["çok eski.", "burada.", "kayboldu.", "yeni.", "nerede?", "çok güzel.", "kapının önünde."]


def plan() -> list[tuple]:
    """(pronoun, noun, predicate, opener, wrong possessives, answer position)."""
    r = rng(NAME)
    rows = sample([(p, t, rest) for p in PERSONS for t in THINGS for rest in RESTS], SIZE, r)
    out = []
    for pron, thing, rest in rows:
        wrong = [q for _, q in PERSONS.values() if q != PERSONS[pron][1] and (pron, q) not in NOT_WRONG]
        out.append((pron, thing, rest, r.choice(OPENERS), tuple(r.sample(wrong, 3)), r.randrange(4)))
    return out


def realize(spec: tuple) -> dict:
    pron, thing, rest, opener, wrong, k = spec
    genitive, poss = PERSONS[pron]
    choices = {q: f"{noun(thing, 'Nom', q)} {rest}" for q in (poss, *wrong)}
    return item(f"{opener} {genitive}", choices[poss], [choices[q] for q in wrong], k, f"{pron}:{thing}+{poss}")
