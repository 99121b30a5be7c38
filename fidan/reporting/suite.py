"""The report's section on the Turkish evaluation suite (`fidan eval mc --data tr-suite`), with its floors."""

from __future__ import annotations

from pathlib import Path

from fidan.artifacts.results import eval_results
from fidan.reporting.markdown import table


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _acc(value) -> float | None:
    return value.get("accuracy") if isinstance(value, dict) else None


def suite_results(run: Path) -> list[dict]:
    """Every suite result in RUN/eval/, oldest first."""
    found = [r.to_dict() for _, r in eval_results(run, ("mc-suite",))]
    return sorted(found, key=lambda r: r.get("date") or "")


def suite_section(run: Path) -> list[str]:
    """The latest suite result as a table: accuracy ± standard error beside chance, the untrained model,
    the unigram floor and the two references; nothing when the run has none."""
    results = suite_results(run)
    if not results:
        return []
    r = results[-1]
    rows = [(s["set"], s["items"], f"{_pct(s['accuracy'])} ± {_pct(s['standard_error'])}",
             f"{_pct(s['accuracy_norm'])} ± {_pct(s['standard_error_norm'])}", _pct(s["chance"]),
             _pct(_acc(s.get("untrained"))), _pct(_acc(s.get("unigram"))), _pct(_acc(s.get("reference"))),
             _pct(_acc(s.get("trigger"))), "yes" if s.get("above_floors") else "no", f"`{s['hash'][7:19]}`")
            for s in r["sets"]]
    above = sum(bool(s.get("above_floors")) for s in r["sets"])
    L = ["## Turkish evaluation suite", ""]
    L += [f"`fidan eval mc --data tr-suite` ({r.get('date', '?')}): {above} of {len(r['sets'])} sets above their "
          "floors.", ""]
    L += table(rows, ("set", "items", "accuracy (summed)", "accuracy (per byte)", "chance", "untrained model",
                      "unigram floor", "7-gram reference", "trigger reference", "above floors",
                      "content hash"))
    L += ["Accuracy ± one standard error, sqrt(p(1 - p) / n). *Above floors*: the summed accuracy is more than two "
          "standard errors above chance, the unigram-frequency floor (each choice scored by its words' frequency "
          "in the bundled corpus) and the untrained model. The references, trained on the bundled corpus, show "
          "that a set can be learned: the 7-gram (a character n-gram) from six characters of context, the "
          "trigger model from which words go with which person, tense, possessor and lemma. What each set "
          "tests: docs/evaluation.md.", ""]
    return L
