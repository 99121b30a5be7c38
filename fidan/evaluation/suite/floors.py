"""The figures a model's accuracy is read against, none of which needs the model.

- **chance**: the mean of 1 / number of choices.
- **unigram floor**: each choice scored by the log-frequency of its words in the bundled corpus (add-one
  smoothing, Turkish lower case), no context at all: what knowing only which words are common gets.
- **reference**: the character 7-gram model with Kneser-Ney smoothing (fidan/evaluation/suite/ngram.py)
  trained on the same corpus, scored like a language model: a model that knows only the last six
  characters.
- **trigger reference**: the morphological trigger model (fidan/evaluation/suite/trigger.py) trained on
  the same corpus: which words go with which person, tense, possessor and lemma, at a distance.

The references are not floors: they show that a set can be learned from the corpus, each where its
kind of context decides (a set passes that check when a reference is more than two standard errors
above chance and the unigram floor).

The corpus is the one `fidan demo` pretrains on: the speeches (``tr-speeches``) and the Turkish Web
Treebank's sentences (``tr-treebank``). The untrained-model floor depends on the architecture and is
measured with each model (fidan/evaluation/mc.py).
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

from fidan.errors import FidanError
from fidan.text.turkish import lower_tr, words

REFERENCE_ORDER = 7
REFERENCE = f"character {REFERENCE_ORDER}-gram, Kneser-Ney, trained on tr-speeches + tr-treebank"
TRIGGER = "morphological trigger model (zemberek's labels), trained on tr-speeches + tr-treebank"


@lru_cache(maxsize=1)
def corpus_texts() -> tuple[str, ...]:
    from fidan.text.bundled import speeches, treebank_sentences

    return tuple(d["text"] for d in speeches()) + tuple(d["text"] for d in treebank_sentences())


@lru_cache(maxsize=1)
def word_counts() -> Counter:
    counts: Counter = Counter()
    for text in corpus_texts():
        counts.update(words(lower_tr(text)))
    return counts


def unigram_scores(items: list[dict]) -> list[list[float]]:
    """Σ ln p(word) over each choice's words; p(word) = (count + 1) / (tokens + types + 1)."""
    counts = word_counts()
    denom = math.log(sum(counts.values()) + len(counts) + 1)
    return [[sum(math.log(counts.get(w, 0) + 1) - denom for w in words(lower_tr(c))) for c in it["choices"]]
            for it in items]


@lru_cache(maxsize=1)
def reference_model():
    from fidan.evaluation.suite.ngram import CharNgram

    return CharNgram(corpus_texts(), REFERENCE_ORDER)


def trigger_scores(items: list[dict]) -> list[list[float]]:
    from fidan.evaluation.suite import cache_dir, cache_key
    from fidan.evaluation.suite.trigger import trigger_model

    return trigger_model(cache_dir() / f"trigger-lexicon-{cache_key()}.json").scores(items)


def learnable(built: dict) -> str | None:
    """The first reference more than two standard errors above chance and the unigram floor, if any."""
    n = built["items_count"] if "items_count" in built else len(built["items"])
    for key, label in (("reference", "7-gram"), ("trigger", "trigger")):
        acc = (built.get(key) or {}).get("accuracy")
        floors = [built["chance"], (built.get("unigram") or {}).get("accuracy", 1.0)]
        if acc is not None and acc - 2 * standard_error(acc, n) > max(floors):
            return label
    return None


def standard_error(p: float, n: int) -> float:
    """sqrt(p (1 - p) / n): the spread of an accuracy measured on n items."""
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def _figures(items: list[dict], scores: list[list[float]]) -> dict:
    from fidan.evaluation.mc import mc_accuracy

    r = mc_accuracy(items, scores)
    return {"accuracy": r["accuracy"], "accuracy_norm": r["accuracy_norm"]}


def model_free(items: list[dict], trigger: bool = True) -> dict:
    """Chance, the unigram floor and the two references of a set (None with a note when the corpus
    packages are missing). ``trigger=False`` leaves the trigger reference out (None): for tr-harmony, whose
    wrong forms are misspellings that zemberek cannot label, and which is built without zemberek."""
    from fidan.evaluation.suite.ngram import reference_scores

    out: dict = {"items_count": len(items), "chance": sum(1 / len(it["choices"]) for it in items) / len(items)}
    try:
        out["unigram"] = _figures(items, unigram_scores(items))
        out["reference"] = {**_figures(items, reference_scores(reference_model(), items)), "model": REFERENCE}
        out["trigger"] = {**_figures(items, trigger_scores(items)), "model": TRIGGER} if trigger else None
    except FidanError as e:  # the bundled corpus is an extra (fidan[tr-data]), zemberek another (fidan[morph])
        out["unigram"] = out["reference"] = out["trigger"] = None
        out["floors_note"] = str(e)
    return out
