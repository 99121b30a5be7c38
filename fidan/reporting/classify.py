"""The report section of a text classifier: held-out figures beside the TF-IDF baseline's, per class, the
confusion matrix and the search, read from the run's ``eval/`` and ``search/`` files."""

from __future__ import annotations

from pathlib import Path

from fidan.artifacts.classifier_results import EVAL_DIR, ClassifierMetrics, ClassifierSummary
from fidan.reporting.markdown import fmt, table


def classification_section(root: Path, rel) -> list[str]:
    """[] unless ``root`` is a `fidan classify train` run; ``rel(png)`` gives an image's link."""
    summary = ClassifierSummary.read(root)
    if summary is None:
        return []
    labels = summary.labels or []
    L = ["## Classification", "",
         f"**{summary.kind}** classifier, {len(labels)} labels ({', '.join(labels)}).", ""]
    rows = []
    base = summary.baseline or {}
    for split in ("val", "test"):
        if f"{split}_macro_f1" not in summary.extra:
            continue
        for key, name in (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("weighted_f1", "weighted F1")):
            ours, theirs = summary.figure(split, key), base.get(f"{split}_{key}")
            gap = f"{ours - theirs:+.3f}" if ours is not None and theirs is not None else "–"
            rows.append((f"{split} {name}", fmt(ours), fmt(theirs) if theirs is not None else "–", gap))
    header = ("", summary.kind, "TF-IDF baseline", "difference") if base else ("", summary.kind, "", "")
    L += table(rows, header)
    test = ClassifierMetrics.load(root / EVAL_DIR / "test.json") or ClassifierMetrics.load(root / EVAL_DIR / "val.json")
    if test:
        L += [f"Per class ({test.split} split, {test.n} texts):", ""]
        L += table([(n, fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), c["support"])
                    for n, c in (test.per_class or {}).items()], ("label", "precision", "recall", "F1", "support"))
        png = root / EVAL_DIR / f"{test.split}-confusion.png"
        if png.exists():
            L += [f"![confusion matrix]({rel(png)})", ""]
    found = summary.search
    if found:
        verdict = "better than" if found.get("improved") else "no better than"
        L += [f"Hyper-parameter search: {found.get('trials')} trials ({found.get('pruned')} pruned); the best "
              f"validation macro-F1 {fmt(found.get('best_val_macro_f1'), 4)} (trial {found.get('best_trial')}) is "
              f"{verdict} the starting settings' {fmt(found.get('default_val_macro_f1'), 4)}; settings in "
              f"`search/best.yaml`.", ""]
        if (root / "search" / "trials.png").exists():
            L += [f"![search trials]({rel(root / 'search' / 'trials.png')})", ""]
    return L
