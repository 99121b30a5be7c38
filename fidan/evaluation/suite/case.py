"""`tr-case`: the case a postposition governs.

A Turkish postposition fixes the case of the noun before it: *yağmura rağmen* (dative), *yağmurdan
dolayı* (ablative), *arkadaşımla birlikte* (instrumental). Each item puts one noun before one
postposition in a sentence; the choices are the same noun in the dative, ablative and instrumental
(all real forms from zemberek's generator, consonant alternation included: *kitabıma, kitabımdan,
kitabımla*), and only the governed case is right. The postpositions are those whose complement has one
case in every occurrence in the Turkish Web Treebank's gold morphology (``ComplementType``, checked in
the tests); each case is right in the same number of items.
"""

from __future__ import annotations

from fidan.evaluation.suite.common import item, rng, sample
from fidan.evaluation.suite.forms import noun

NAME = "tr-case"
CASES = ("Dat", "Abl", "Ins")
PER_CASE = 160

# postposition → its case in the treebank's gold annotation
GOVERNS = {"göre": "Dat", "rağmen": "Dat", "karşın": "Dat", "ait": "Dat", "dair": "Dat",
           "dolayı": "Abl", "itibaren": "Abl", "beri": "Abl",
           "ilgili": "Ins", "birlikte": "Ins", "beraber": "Ins"}

PEOPLE = ["arkadaş", "kardeş", "komşu", "öğretmen", "doktor", "anne", "baba", "amca", "teyze", "dede", "kuzen",
          "müdür"]
OWNERS = ["komşu", "belediye", "okul", "devlet", "öğretmen", "aile", "şirket", "köy", "müze", "kardeş", "amca",
          "banka"]
SOURCES = ["rapor", "haber", "gazete", "uzman", "harita"]
CAUSES = ["yağmur", "kar", "fırtına", "sis", "hastalık", "soğuk", "trafik", "gürültü", "grev", "kaza", "sel",
          "deprem"]
TIMES = ["sabah", "akşam", "pazartesi", "salı", "çarşamba", "perşembe", "cuma", "cumartesi", "pazar", "ocak",
         "mart", "nisan", "mayıs", "haziran"]
TOPICS = ["tarih", "deniz", "müzik", "savaş", "bilim", "spor", "sağlık", "çevre", "eğitim", "ekonomi", "hayvan",
          "uzay", "su", "orman", "sanat"]

# postposition → (nouns, whether "my N" is used too (for people), frames); {} is where "noun postposition" goes.
FRAMES = {
    "göre": (PEOPLE + SOURCES, True, ["Bu akşam {} yarın kar yağacak.", "Sanırım {} bu yol daha kısa.",
                                       "Ne yazık ki {} toplantı iptal edildi."]),
    "rağmen": (CAUSES, False, ["Dün {} yola çıktık.", "Geçen hafta {} maç oynandı.", "Bu sabah {} işe gittim."]),
    "karşın": (CAUSES, False, ["Dün {} yola çıktılar.", "Geçen ay {} fabrika çalıştı.",
                               "Bu sabah {} okula gittik."]),
    "ait": (OWNERS, True, ["Bu bahçe {}.", "Şu eski ev {}.", "Bu kırmızı araba {}."]),
    "dair": (TOPICS, False, ["Dün akşam {} bir kitap okudum.", "Öğretmen {} bir soru sordu.",
                             "Gazetede {} bir yazı çıktı."]),
    "dolayı": (CAUSES, False, ["Dün {} okullar tatil edildi.", "Geçen hafta {} yol kapandı.",
                               "Bu sabah {} uçak kalkmadı.", "Sonunda {} maç ertelendi."]),
    "itibaren": (TIMES, False, ["Okullar {} açılacak.", "Yeni kurallar {} geçerli olacak.",
                                "Mağaza {} kapalı olacak.", "Otobüsler {} daha sık çalışacak."]),
    "beri": (TIMES, False, ["Kardeşim {} hasta.", "Annem {} bizde kalıyor.", "Musluktan {} su akmıyor.",
                            "Babam {} çok yorgun."]),
    "ilgili": (TOPICS, False, ["Kütüphanede {} bir kitap buldum.", "Sınavda {} üç soru vardı.",
                               "Televizyonda {} bir belgesel izledik."]),
    "birlikte": (PEOPLE, True, ["Hafta sonu {} sinemaya gittim.", "Dün akşam {} yemek yedik.",
                                "Yazın {} tatile çıktık."]),
    "beraber": (PEOPLE, True, ["Bu sabah {} pazara gittim.", "Geçen yıl {} yeni bir eve taşındık.",
                               "Her akşam {} yürüyüş yapıyoruz."]),
}


def plan() -> list[tuple]:
    """(postposition, noun, possessive, frame, answer position), the same number for each case."""
    r = rng(NAME)
    by_case: dict[str, list[tuple]] = {c: [] for c in CASES}
    for post, (nouns, mine, frames) in FRAMES.items():
        for lemma in nouns:
            for poss in ("Pnon", "P1sg") if mine and lemma in PEOPLE else ("Pnon",):
                for frame in frames:
                    by_case[GOVERNS[post]].append((post, lemma, poss, frame))
    rows = [row for case in CASES for row in sample(by_case[case], PER_CASE, r)]
    r.shuffle(rows)
    return [(*row, r.randrange(len(CASES))) for row in rows]


def realize(spec: tuple) -> dict:
    post, lemma, poss, frame, k = spec
    right = GOVERNS[post]
    opening, rest = frame.split("{}")
    forms = {case: f"{noun(lemma, case, poss)} {post}{rest}" for case in CASES}
    wrong = [forms[c] for c in CASES if c != right]
    return item(opening.rstrip(), forms[right], wrong, k, f"{post}:{lemma}+{poss}:{FRAMES[post][2].index(frame)}")
