"""What a classifier's evaluation leaves behind: metrics JSON, a confusion-matrix PNG, predictions with
probabilities, and the lines printed (train, eval and the report read the same files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fidan.artifacts.classifier_results import ClassifierMetrics, write_predictions
from fidan.classify.metrics import classification_metrics, metrics_table, plot_confusion


def score_split(probs: np.ndarray, gold: list[int], labels: list[str], texts: list[str], out: Path, name: str,
                title: str = "", extra: dict | None = None) -> dict:
    """Metrics of one split written under ``out`` as ``NAME.json``, ``NAME-predictions.jsonl`` and
    ``NAME-confusion.png``; returns the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    pred = probs.argmax(1).tolist() if len(probs) else []
    m = classification_metrics(gold, pred, labels)
    m = ClassifierMetrics.from_dict({**m, "split": name, "labels": labels, **(extra or {})}).save(out / f"{name}.json")
    write_predictions(out / f"{name}-predictions.jsonl", texts, labels, probs, [labels[i] for i in gold])
    plot_confusion(m["confusion"], labels, out / f"{name}-confusion.png", title or name)
    return m


def summary_line(m: dict) -> str:
    return f"macro-F1 {m['macro_f1']:.3f}, accuracy {m['accuracy']:.3f}, weighted F1 {m['weighted_f1']:.3f}"


def print_metrics(m: dict, labels: list[str], title: str) -> None:
    print(f"{title}: {summary_line(m)} ({m['n']} texts)")
    for line in metrics_table(m, labels):
        print("  " + line)
