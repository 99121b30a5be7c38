"""`tr-harmony`: a built-in Turkish multiple-choice set: the right suffix form among wrong-harmony forms.

Turkish suffixes change their vowel to agree with the word's last vowel (vowel harmony) and their first
consonant to agree with its last sound (d → t after a voiceless consonant). A model that has learned
Turkish should prefer ``evlerde`` to ``evlarda``. The words are regular
(no loanword exceptions, no consonant softening: every suffix here starts with a consonant).

Chance is 41.7% (2 choices for -lAr, -DA, -DAn, -lArDA; 4 for -lI, -sIz), but random weights are not
indifferent among the forms: an untrained model scores above chance, so `fidan eval mc` reports its
accuracy beside the trained model's.
"""

from __future__ import annotations

BACK = "aıou"
FRONT = "eiöü"
VOICELESS = "çfhkpsşt"

# Suffix templates: A is the two-way vowel (a/e), I the four-way one (ı/i/u/ü), D is d/t, C is c/ç.
SUFFIXES = {
    "lAr": "plural",
    "DA": "locative",
    "DAn": "ablative",
    "lArDA": "plural locative",
    "lI": "with",
    "sIz": "without",
}

# Sentence openings that the suffixed word continues (the model sees the opening, then each choice).
FRAMES = {
    "lAr": ["Bütün", "O güzel", "Eski"],
    "DA": ["Şu anda", "Dün akşam", "Çocuklar"],
    "DAn": ["Az önce", "Misafirler", "Sabah erkenden"],
    "lArDA": ["Yazın", "Bu köyde herkes", "Eskiden"],
    "lI": ["Bu", "Çok", "Oldukça"],
    "sIz": ["Bu", "O", "Tamamen"],
}

WORDS = [
    "ev", "okul", "kitap", "göz", "kuş", "masa", "deniz", "köy", "gün", "kız", "yol", "ağaç", "çiçek",
    "bahçe", "araba", "kapı", "süt", "tuz", "su", "yüz", "balık", "ışık", "orman", "dağ", "göl", "ülke",
    "üzüm", "mutfak", "pencere", "çocuk", "öğretmen", "kedi", "köpek", "bulut", "toprak", "şeker",
]


def last_vowel(word: str) -> str:
    for ch in reversed(word):
        if ch in BACK + FRONT:
            return ch
    raise ValueError(f"{word!r} has no vowel")


def two_way(word: str) -> str:
    return "a" if last_vowel(word) in BACK else "e"


def four_way(word: str) -> str:
    return {"a": "ı", "ı": "ı", "o": "u", "u": "u", "e": "i", "i": "i", "ö": "ü", "ü": "ü"}[last_vowel(word)]


def attach(word: str, template: str, vowels: dict[str, str] | None = None) -> str:
    """Add a suffix template to a word, one archiphoneme at a time.

    ``vowels`` forces the choice of A and I (for building wrong forms); by default harmony decides.
    """
    out = word
    for ch in template:
        if ch == "A":
            ch = (vowels or {}).get("A") or two_way(out)
        elif ch == "I":
            ch = (vowels or {}).get("I") or four_way(out)
        elif ch == "D":
            ch = "t" if out[-1] in VOICELESS else "d"
        elif ch == "C":
            ch = "ç" if out[-1] in VOICELESS else "c"
        out += ch
    return out


def forms(word: str, template: str) -> tuple[str, list[str]]:
    """The right form and every form with a wrong vowel choice (same consonants)."""
    right = attach(word, template)
    options = [right]
    a_choices = "ae" if "A" in template else [None]
    i_choices = "ıiuü" if "I" in template else [None]
    for a in a_choices:
        for i in i_choices:
            # Vary the vowel of each archiphoneme independently; repeated A's follow one another.
            form = word
            for ch in template:
                if ch == "A":
                    form += a
                elif ch == "I":
                    form += i
                else:
                    form = attach(form, ch)
            if form not in options:
                options.append(form)
    return right, options


def harmony_items() -> list[dict]:
    """The set, deterministic: each word with each suffix; the right answer's position rotates."""
    items = []
    for w, word in enumerate(WORDS):
        for s, template in enumerate(SUFFIXES):
            right, options = forms(word, template)
            wrong = options[1:]
            k = (w + s) % len(options)
            choices = wrong[:k] + [right] + wrong[k:]
            frame = FRAMES[template][(w + s) % len(FRAMES[template])]
            items.append({"context": frame, "choices": [" " + c for c in choices], "answer": k,
                          "id": f"{word}+{template}"})
    return items
