"""What `fidan classify train` and `fidan classify eval` leave in a run's ``eval/`` for the report and
`fidan compare`: the figures of each split (``eval/SPLIT.json``, ``eval/file-*/eval.json``), the run's
summary (``eval/summary.json``) and the predictions beside each split's figures (``SPLIT-predictions.jsonl``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fidan.artifacts.schema import Record
from fidan.runtime.io import atomic_write_text

EVAL_DIR = "eval"
RETRAIN = "train the classifier again with `fidan classify train` (or score the file again with `fidan classify eval`)"


@dataclass
class ClassifierMetrics(Record):
    """One split's figures (scikit-learn's definitions)."""

    KIND = "classifier-metrics"
    FIX = RETRAIN

    accuracy: float
    macro_f1: float
    weighted_f1: float
    n: int
    per_class: dict  # label → {"precision", "recall", "f1", "support"}
    confusion: list  # rows: gold label, columns: predicted
    split: str | None = None
    labels: list[str] = field(default_factory=list)

    @staticmethod
    def predictions_of(path: Path) -> Path:
        """The predictions file written beside a split's figures."""
        return path.with_name(path.stem + "-predictions.jsonl")


@dataclass
class ClassifierSummary(Record):
    """The run's figures on every split (``val_macro_f1``, ``test_accuracy``, ... in ``extra``), with the
    TF-IDF baseline's and the hyper-parameter search's."""

    KIND = "classifier-summary"
    FILE = f"{EVAL_DIR}/summary.json"
    FIX = RETRAIN

    kind: str  # the classifier: tfidf, encoder, decoder, ...
    labels: list[str] = field(default_factory=list)
    baseline: dict | None = None
    search: dict | None = None
    seconds: float | None = None

    def figure(self, split: str, name: str) -> float | None:
        return self.extra.get(f"{split}_{name}")


def write_predictions(path: Path, texts: list[str], labels: list[str], probs: np.ndarray,
                      gold: list[str] | None = None) -> None:
    """One JSON line per text: the text, the predicted label, every label's probability (and the gold label)."""
    lines = []
    for i, text in enumerate(texts):
        row = {"text": text, "label": labels[int(np.argmax(probs[i]))],
               "probs": {n: round(float(x), 6) for n, x in zip(labels, probs[i], strict=True)}}
        if gold is not None:
            row["gold"] = gold[i]
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def labelled_pairs(path: Path) -> list[list[str]] | None:
    """The (text, gold label) pairs of a predictions file, sorted; None when it is missing, unreadable or has
    no gold labels (predictions of unlabelled texts)."""
    try:
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        return sorted([r["text"], r["gold"]] for r in rows)
    except (OSError, ValueError, KeyError, TypeError):
        return None
