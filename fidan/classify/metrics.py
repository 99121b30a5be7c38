"""Classification figures (scikit-learn's definitions) and the confusion-matrix plot (predictions are written by
fidan.artifacts.classifier_results)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fidan.errors import MissingExtra
from fidan.runtime.plots import figure


def _sk_metrics():
    try:
        from sklearn import metrics
    except ImportError:
        raise MissingExtra("classification metrics need scikit-learn: pip install 'fidan[classify]'") from None
    return metrics


def classification_metrics(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro-F1, weighted F1, per-class precision/recall/F1/support and the confusion matrix
    (rows: true, columns: predicted, every label present even when absent from the data)."""
    sk = _sk_metrics()
    ids = list(range(len(labels)))
    if len(y_true) == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0, "n": 0, "confusion": [[0] * len(ids) for _ in ids],
                "per_class": {n: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for n in labels}}
    p, r, f, s = sk.precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "accuracy": round(float(sk.accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(float(sk.f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)), 6),
        "weighted_f1": round(float(sk.f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)), 6),
        "per_class": {n: {"precision": round(float(p[i]), 6), "recall": round(float(r[i]), 6),
                          "f1": round(float(f[i]), 6), "support": int(s[i])} for i, n in enumerate(labels)},
        "confusion": sk.confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "n": len(y_true),
    }


def metrics_table(metrics: dict, labels: list[str]) -> list[str]:
    """Markdown: one row per class, then the overall figures."""
    lines = ["| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name in labels:
        c = metrics["per_class"][name]
        lines.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    lines.append(f"accuracy {metrics['accuracy']:.3f} · macro-F1 {metrics['macro_f1']:.3f} · "
                 f"weighted F1 {metrics['weighted_f1']:.3f} · {metrics['n']} texts")
    return lines


def plot_confusion(confusion: list[list[int]], labels: list[str], out: Path, title: str = "") -> Path:
    """Counts in each cell; colour by row share, so a small class's errors show as clearly as a big one's."""
    counts = np.array(confusion, dtype=float)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    k = len(labels)
    size = (max(4.0, 1.0 + 0.55 * k), max(3.4, 0.8 + 0.5 * k))
    with figure(out, size=size, title=title) as (_, axes):
        ax = axes[0, 0]
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8 if k > 8 else 10,
                        color="white" if share[i, j] > 0.6 else "black")
        turn = k > 2 and max(len(x) for x in labels) * k > 20  # long names side by side would overlap
        ax.set_xticks(range(k), labels, rotation=35 if turn else 0, ha="right" if turn else "center",
                      rotation_mode="anchor")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.grid(False)
    return Path(out)
