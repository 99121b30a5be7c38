"""`tr-person` and `tr-tense`: the verb agrees with its subject's person and with the time adverb.

Both sets are sentences "time adverb (pronoun) complement verb." whose verb zemberek generates.

- ``tr-person``: the subject pronoun fixes the person ending: *Şimdi ben okula gidiyorum* (not
  *gidiyorsun, gidiyor, gidiyoruz*). The tense is the same in every choice; only the person differs.
- ``tr-tense``: the time adverb fixes the tense, with the person the same in both choices: after *dün,
  geçen hafta, ...* the past (*gittim*), not the future (*gideceğim*); after *yarın, gelecek hafta,
  ...* the future, not the past. Half the items have each kind of adverb, and the choices are the same
  two tenses in both halves, so a model that prefers one tense whatever the adverb scores 50%, chance.
  No third choice is wrong after both kinds of adverb: the aorist and the progressive are good Turkish
  after *yarın* (*yarın giderim, yarın gidiyorum*), the reported past after *dün* (*dün gitmişim*).
"""

from __future__ import annotations

from fidan.evaluation.suite.common import item, rng, sample
from fidan.evaluation.suite.forms import verb

SIZE = 500

PERSONS = {"ben": "A1sg", "sen": "A2sg", "o": "A3sg", "biz": "A1pl", "siz": "A2pl"}
ALL_PERSONS = ("A1sg", "A2sg", "A3sg", "A1pl", "A2pl", "A3pl")

# (complement, verb): what the subject does
VERB_PHRASES = [("okula", "gitmek"), ("eve", "dönmek"), ("kitap", "okumak"), ("mektup", "yazmak"), ("çay", "içmek"),
                ("denize", "girmek"), ("trene", "binmek"), ("bahçede", "çalışmak"), ("futbol", "oynamak"),
                ("müzik", "dinlemek"), ("pazara", "gitmek"), ("yemek", "pişirmek"), ("parkta", "yürümek"),
                ("televizyon", "izlemek"), ("resim", "yapmak"), ("şarkı", "söylemek"), ("sinemaya", "gitmek"),
                ("kahvaltı", "yapmak"), ("arabayı", "yıkamak"), ("çiçekleri", "sulamak"), ("odayı", "temizlemek"),
                ("kapıyı", "açmak")]

# tr-person: adverbs that suit the tense used in every choice
PERSON_TIMES = {"Bugün": "Past", "Az önce": "Past", "Şimdi": "Prog1", "Şu anda": "Prog1", "Birazdan": "Fut",
                "Bu akşam": "Fut", "Her gün": "Aor", "Genellikle": "Aor"}

# tr-tense: adverb → the right tense; the other of the two is the wrong choice
PAST = ["Dün", "Dün akşam", "Geçen hafta", "Geçen yıl", "İki gün önce", "Geçen ay", "Geçen pazar"]
FUTURE = ["Yarın", "Yarın sabah", "Gelecek hafta", "Seneye", "İki gün sonra", "Haftaya", "Gelecek ay"]
TENSES = {**{a: "Past" for a in PAST}, **{a: "Fut" for a in FUTURE}}

PERSON_NAME = "tr-person"
TENSE_NAME = "tr-tense"


def person_plan() -> list[tuple]:
    """(adverb, pronoun, verb phrase index, wrong persons, answer position)."""
    r = rng(PERSON_NAME)
    rows = sample([(a, p, v) for a in PERSON_TIMES for p in PERSONS for v in range(len(VERB_PHRASES))], SIZE, r)
    out = []
    for adverb, pron, v in rows:
        wrong = tuple(r.sample([q for q in ALL_PERSONS if q != PERSONS[pron]], 3))
        out.append((adverb, pron, v, wrong, r.randrange(4)))
    return out


def person_realize(spec: tuple) -> dict:
    adverb, pron, v, wrong, k = spec
    complement, lemma = VERB_PHRASES[v]
    tense = PERSON_TIMES[adverb]
    say = {q: verb(lemma, tense, q) + "." for q in (PERSONS[pron], *wrong)}
    return item(f"{adverb} {pron} {complement}", say[PERSONS[pron]], [say[q] for q in wrong], k,
                f"{pron}:{lemma}+{tense}")


def tense_plan() -> list[tuple]:
    """(adverb, person, verb phrase index, answer position), half with past and half with future adverbs;
    no pronoun: Turkish drops it."""
    r = rng(TENSE_NAME)
    rows = [row for adverbs in (PAST, FUTURE) for row in sample(
        [(a, p, v) for a in adverbs for p in ALL_PERSONS for v in range(len(VERB_PHRASES))], SIZE // 2, r)]
    r.shuffle(rows)
    return [(*row, r.randrange(2)) for row in rows]


def tense_realize(spec: tuple) -> dict:
    adverb, person, v, k = spec
    complement, lemma = VERB_PHRASES[v]
    right = TENSES[adverb]
    wrong = "Fut" if right == "Past" else "Past"
    return item(f"{adverb} {complement}", verb(lemma, right, person) + ".", [verb(lemma, wrong, person) + "."], k,
                f"{adverb}:{lemma}+{person}")
