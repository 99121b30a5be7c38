"""The suite's second reference: a morphological trigger model learned from the bundled corpus.

The character 7-gram sees six characters back, so it cannot learn an agreement across words (*ben ...
gidiyorum*, *benim ... arabam*, *dün ... gittim*) or what a definition is about. This model is the
classic "trigger" language model (a word in the sentence raises the probability of what follows),
over morphology:

- every word type of the corpus is analysed once by zemberek (cached); its **labels** are the person
  of a finite verb (``agr=A1sg``), its tense (``tense=Past``), a noun's possessor (``poss=P1sg``) and
  its lemma (``lemma=göz``), each reading of an ambiguous word weighted 1 / number of readings;
- it counts, in every sentence of the corpus, which words (triggers) stand before a word with each
  label, at most ``WINDOW`` words back (for lemmas, on either side: what a word occurs near);
- a choice is scored like naive Bayes: for each of its labels, log p(label) + Σ over the context's
  words of log p(label | trigger) / p(label), with p(label | trigger) smoothed towards p(label).

What is learned is only which words go with which labels in the corpus; nothing about a set's
construction rule is given to it. Choices that differ in one morpheme differ in one label, so only that
label's statistics decide between them.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

from fidan.text.turkish import lower_tr, words

WINDOW = 8  # words back a trigger may stand from the word it predicts
SMOOTHING = 20.0  # pseudo-counts pulling p(label | trigger) towards p(label)
FINITE = {"Past", "Narr", "Fut", "Aor", "Prog1", "Prog2", "Pres", "Cond", "Neces", "Opt", "Imp", "Desr"}
PERSON = re.compile(r"^A[123](?:sg|pl)$")
POSSESSOR = re.compile(r"^P[123](?:sg|pl)$")


def labels_of(analyses: list[str]) -> dict[str, float]:
    """Weighted labels of a word from zemberek's readings (``format_string`` of each analysis)."""
    out: dict[str, float] = defaultdict(float)
    if not analyses:
        return {}
    share = 1.0 / len(analyses)
    for text in analyses:
        lemma = text[1:text.index(":")]
        out[f"lemma={lemma.lower()}"] += share
        last = text.split("→")[-1]  # the last inflectional group decides person, tense and possessor
        tags = [t.split(":")[-1] for t in re.split(r"[+|]", last)]
        pos = tags[0] if tags else ""
        tenses = [t for t in tags if t in FINITE]
        if pos == "Verb" and tenses:
            out[f"tense={tenses[0]}"] += share
            person = [t for t in tags if PERSON.match(t)]
            if person:
                out[f"agr={person[-1]}"] += share
        if pos == "Noun":
            poss = [t for t in tags if POSSESSOR.match(t)]
            if poss:
                out[f"poss={poss[-1]}"] += share
    return dict(out)


CHUNK = 2_000  # word types per task of an analysing process


def _analyse_chunk(types: list[str]) -> dict[str, dict[str, float]]:
    from fidan.text.zemberek import morphology

    m = morphology()
    out = {}
    for w in types:
        readings = [r for r in m.analyze(w).analysis_results if not r.is_unknown()]
        common = [r for r in readings if r.item.secondary_pos.name not in ("ProperNoun", "Abbreviation")]
        out[w] = labels_of([r.format_string() for r in (common or readings)])
    return out


def _analyse(types: list[str], workers: int | None = None) -> dict[str, dict[str, float]]:
    """Labels of each word type, from one process per core when there are many (fidan.text.zemberek)."""
    from fidan.text.zemberek import map_chunks, workers_for

    chunks = [types[i:i + CHUNK] for i in range(0, len(types), CHUNK)]
    out: dict[str, dict[str, float]] = {}
    for part in map_chunks(_analyse_chunk, chunks, workers_for(len(types)) if workers is None else workers):
        out.update(part)
    return out


class Lexicon:
    """Word type → weighted labels, analysed once and kept in a JSON file beside the suite's cache."""

    def __init__(self, path: Path | None):
        self.path = path
        self.table: dict[str, dict[str, float]] = {}
        if path is not None and path.exists():
            self.table = json.loads(path.read_text(encoding="utf-8"))

    def labels(self, types: set[str]) -> dict[str, dict[str, float]]:
        missing = sorted(t for t in types if t not in self.table)
        if missing:
            self.table.update(_analyse(missing))
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(self.table, ensure_ascii=False), encoding="utf-8")
                tmp.replace(self.path)
        return {t: self.table[t] for t in types}


def sentences(texts) -> list[list[str]]:
    return [ws for t in texts for s in re.split(r"[.!?;:\n]+", lower_tr(t)) if (ws := words(s))]


class TriggerModel:
    def __init__(self, texts, lexicon: Lexicon):
        self.sentences = sentences(texts)
        self.lexicon = lexicon
        self._lemma: dict[str, str] = {}
        self.labels = lexicon.labels({w for s in self.sentences for w in s})
        self.pair: Counter = Counter()  # (trigger, label) → weighted count
        self.trigger_total: Counter = Counter()  # (trigger, family) → weighted count
        self.label_total: Counter = Counter()
        self.family_total: Counter = Counter()
        for s in self.sentences:
            for j, w in enumerate(s):
                near = None
                for label, weight in self.labels[w].items():
                    family = label.split("=")[0]
                    self.label_total[label] += weight
                    self.family_total[family] += weight
                    if family == "lemma":  # pairs are counted on demand: there are tens of thousands of lemmas
                        near = near or self._near(s, j)
                        for t in near:
                            self.trigger_total[t, family] += weight
                        continue
                    for t in set(s[max(0, j - WINDOW):j]):
                        self.pair[t, label] += weight
                        self.trigger_total[t, family] += weight
        self._lemmas: set[str] = set()

    def _near(self, s: list[str], j: int) -> set[str]:
        """The lemmas of the words on either side of ``s[j]``: what a word occurs near."""
        return {self.lemma(w) for w in s[max(0, j - WINDOW):j] + s[j + 1:j + 1 + WINDOW]}

    def lemma(self, word: str) -> str:
        """The word's likeliest lemma (the word itself when zemberek does not know it)."""
        if word not in self._lemma:
            labels = self.lexicon.labels({word})[word]
            lemmas = [(weight, label) for label, weight in labels.items() if label.startswith("lemma=")]
            self._lemma[word] = max(lemmas)[1][6:] if lemmas else word
        return self._lemma[word]

    def _count_lemmas(self, wanted: set[str]) -> None:
        """Co-occurrence counts of these lemma labels with the words around them."""
        wanted -= self._lemmas
        if not wanted:
            return
        for s in self.sentences:
            for j, w in enumerate(s):
                for label, weight in self.labels[w].items():
                    if label in wanted:
                        for t in self._near(s, j):
                            self.pair[t, label] += weight
        self._lemmas |= wanted

    def score(self, context: str, choice: str) -> float:
        before, said = words(lower_tr(context)), words(lower_tr(choice))
        table = self.lexicon.labels(set(before) | set(said))
        total = 0.0
        for j, w in enumerate(said):
            for label, weight in table[w].items():
                family = label.split("=")[0]
                if not self.family_total[family]:
                    continue
                # a lemma is predicted by what the whole context is about, a morpheme by the words just before
                triggers = {self.lemma(t) for t in before} if family == "lemma" else set((before + said[:j])[-WINDOW:])
                prior = (self.label_total[label] + 1.0) / (self.family_total[family] + 1.0)
                value = math.log(prior)
                for t in triggers:
                    p = (self.pair[t, label] + SMOOTHING * prior) / (self.trigger_total[t, family] + SMOOTHING)
                    value += math.log(p / prior)
                total += weight * value
        return total

    def scores(self, items: list[dict]) -> list[list[float]]:
        said = {w for it in items for c in it["choices"] for w in words(lower_tr(c))}
        self.lexicon.labels(said | {w for it in items for w in words(lower_tr(it["context"]))})  # analysed once
        self._count_lemmas({k for labels in self.lexicon.labels(said).values() for k in labels
                            if k.startswith("lemma=")})
        return [[self.score(it["context"], c) for c in it["choices"]] for it in items]


@lru_cache(maxsize=1)
def trigger_model(cache: Path | None = None) -> TriggerModel:
    from fidan.evaluation.suite.floors import corpus_texts

    return TriggerModel(corpus_texts(), Lexicon(cache))
