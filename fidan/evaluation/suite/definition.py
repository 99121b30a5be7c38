"""`tr-definition`: the word for a dictionary definition (KeNet, the Turkish WordNet).

Each item quotes a KeNet definition and asks for its word: *"Görme organı" anlamına gelen kelime:* →
*göz*. Every word (right or wrong) occurs at least three times in the bundled corpus, so a model
pretrained on it has met them all. The wrong choices are KeNet words of the same part of speech with
nearly the same corpus frequency (so word frequency alone cannot find the answer), never a synonym (no
shared synset) and never a word whose stem is in the definition; every choice is a word zemberek
knows as a common word.

`fidan data instructions` turns KeNet definitions of words with a single sense into question-answer
pairs for instruction tuning, so this set uses only words with two or more senses (their first sense's
definition), and leaves out the definition of every synset that holds a word of a single sense (what
the instruction builder can emit, whatever its --kenet-max): no definition here is one the model was
tuned on. Every definition here is one the ``tr-kenet`` corpus source leaves out (fidan/text/kenet.py):
nor was it pretrained on. The tests check both by hash against the sources' own output.
"""

from __future__ import annotations

import re

from fidan.evaluation.suite.common import item, rng
from fidan.evaluation.suite.forms import is_real_form
from fidan.text.kenet import norm, reserved_definitions, sense_counts, synsets
from fidan.text.turkish import TURKISH_LOWER, casefold_tr

NAME = "tr-definition"
SIZE = 500
PLANNED = 800  # candidates in order; the first SIZE whose words zemberek knows make the set
MIN_COUNT = 3  # an answer or wrong choice occurs at least this often in the bundled corpus
NEAR = 12  # wrong choices are drawn from the NEAR words on either side in corpus frequency
POS = {"n": "isim", "v": "fiil", "a": "sıfat"}
_WORD = re.compile(f"^[{TURKISH_LOWER}]{{3,14}}$")


def _stem(word: str, pos: str) -> str:
    stem = word[:-3] if pos == "v" and word.endswith(("mak", "mek")) else word
    return stem[:4]


def _mentions(definition: str, word: str, pos: str) -> bool:
    stem = _stem(word, pos)
    return any(w.startswith(stem) for w in re.findall(r"\w+", casefold_tr(definition)))


def plan() -> list[tuple]:
    """(word, part of speech, definition, candidate wrong words, answer position), PLANNED of them."""
    from fidan.evaluation.suite.floors import word_counts

    counts = word_counts()
    rows = synsets()
    senses = sense_counts(rows)
    synonyms: dict[str, set[int]] = {}
    for i, (_, literals, _) in enumerate(rows):
        for word, _ in literals:
            synonyms.setdefault(word, set()).add(i)
    # what `fidan data instructions` can emit: the definition of any synset with a single-sense word
    used = {norm(d) for _, literals, d in rows if any(senses[w] == 1 for w, _ in literals)}
    first: dict[str, tuple[int, str, str]] = {}  # word → (sense, pos, definition) of its lowest sense
    for pos, literals, definition in rows:
        if pos not in POS or '"' in definition or not 20 <= len(definition) <= 150 or len(definition.split()) < 3:
            continue
        for word, sense in literals:
            if (_WORD.match(word) and senses[word] >= 2 and counts.get(word, 0) >= MIN_COUNT
                    and (word not in first or sense < first[word][0])):
                first[word] = (sense, pos, definition)
    # wrong choices come from the words of the same part of speech nearest in corpus frequency
    pool = {p: sorted((w for w, (_, q, _) in first.items() if q == p), key=lambda w: (counts[w], w)) for p in POS}
    rank = {w: i for p in POS for i, w in enumerate(pool[p])}
    r = rng(NAME)
    reserved = reserved_definitions()  # what the tr-kenet corpus source leaves out
    words = sorted(w for w, (_, pos, d) in first.items()
                   if norm(d) not in used and norm(d) in reserved and not _mentions(d, w, pos))
    r.shuffle(words)
    out = []
    for word in words[:PLANNED]:
        _, pos, definition = first[word]
        i = rank[word]
        near = [w for w in pool[pos][max(0, i - NEAR):i + NEAR + 1] if w != word
                and not synonyms[w] & synonyms[word] and not _mentions(definition, w, pos)]
        out.append((word, pos, definition, tuple(r.sample(near, min(8, len(near)))), r.randrange(4)))
    return out


def realize(spec: tuple) -> dict | None:
    """The item, or None when zemberek does not know the word or three of its candidates."""
    word, pos, definition, candidates, k = spec
    wrong = [w for w in candidates if is_real_form(w)][:3]
    if not is_real_form(word) or len(wrong) < 3:
        return None
    return item(f'"{definition}" anlamına gelen kelime:', word, wrong, k, f"{word}:{POS[pos]}")
