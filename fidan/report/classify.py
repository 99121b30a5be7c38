"""The report section of a text classifier: held-out figures beside the TF-IDF baseline's, per class, the
confusion matrix and the search, read from the run's ``eval/`` and ``search/`` files."""

from __future__ import annotations

from pathlib import Path

from fidan.report.markdown import fmt, read_json, table


def classification_section(root: Path, rel) -> list[str]:
    """[] unless ``root`` is a `fidan classify train` run; ``rel(png)`` gives an image's link."""
    summary = read_json(root / "eval" / "summary.json")
    if not summary:
        return []
    labels = summary.get("labels") or []
    L = ["## Classification", "",
         f"**{summary.get('kind')}** classifier, {len(labels)} labels ({', '.join(labels)}).", ""]
    rows = []
    base = summary.get("baseline") or {}
    for split in ("val", "test"):
        if f"{split}_macro_f1" not in summary:
            continue
        for key, name in (("macro_f1", "macro-F1"), ("accuracy", "accuracy"), ("weighted_f1", "weighted F1")):
            ours, theirs = summary.get(f"{split}_{key}"), base.get(f"{split}_{key}")
            gap = f"{ours - theirs:+.3f}" if ours is not None and theirs is not None else "–"
            rows.append((f"{split} {name}", fmt(ours), fmt(theirs) if theirs is not None else "–", gap))
    header = ("", summary.get("kind"), "TF-IDF baseline", "difference") if base else ("", summary.get("kind"), "", "")
    L += table(rows, header)
    test = read_json(root / "eval" / "test.json") or read_json(root / "eval" / "val.json")
    if test:
        L += [f"Per class ({test.get('split')} split, {test.get('n')} texts):", ""]
        L += table([(n, fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), c["support"])
                    for n, c in (test.get("per_class") or {}).items()], ("label", "precision", "recall", "F1", "support"))
        png = root / "eval" / f"{test.get('split')}-confusion.png"
        if png.exists():
            L += [f"![confusion matrix]({rel(png)})", ""]
    found = summary.get("search")
    if found:
        verdict = "better than" if found.get("improved") else "no better than"
        L += [f"Hyper-parameter search: {found.get('trials')} trials ({found.get('pruned')} pruned); the best "
              f"validation macro-F1 {fmt(found.get('best_val_macro_f1'), 4)} (trial {found.get('best_trial')}) is "
              f"{verdict} the starting settings' {fmt(found.get('default_val_macro_f1'), 4)}; settings in "
              f"`search/best.yaml`.", ""]
        if (root / "search" / "trials.png").exists():
            L += [f"![search trials]({rel(root / 'search' / 'trials.png')})", ""]
    return L
