"""`fidan eval mc --list` and `fidan eval mc --data tr-suite`: the suite's sets, and one model on all of them.

Every accuracy comes with its standard error, sqrt(p (1 - p) / n), and beside it the floors it is read
against: chance, the same architecture untrained, the unigram-frequency floor, and the two references
(the character 7-gram and the morphological trigger model). A set counts as *above its floors* when the
model's accuracy (summed log-likelihood) is more than two standard errors above each of chance, the
unigram floor and the untrained model.
"""

from __future__ import annotations

import sys

from fidan.evaluation.suite import SETS, cache_dir, cache_path, content_hash, load_set
from fidan.evaluation.suite.floors import REFERENCE, TRIGGER, learnable, standard_error


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def _floor(r: dict, key: str) -> float | None:
    value = r.get(key)
    return value.get("accuracy") if isinstance(value, dict) else value


def load_all(quiet: bool = False) -> list[dict]:
    """Every set, built the first time (zemberek takes about 11 s to load, KeNet a few seconds)."""
    out = []
    for name in SETS:
        if not cache_path(name).exists() and not quiet:
            print(f"building {name} (once; cached in {cache_dir()})", file=sys.stderr)
        out.append(load_set(name))
    return out


def list_rows(built: list[dict]) -> list[dict]:
    return [{"set": b["name"], "items": len(b["items"]), "chance": b["chance"], "unigram": _floor(b, "unigram"),
             "reference": _floor(b, "reference"), "trigger": _floor(b, "trigger"), "learnable": learnable(b),
             "hash": b["hash"], "rule": b["rule"]} for b in built]


def format_list(rows: list[dict]) -> str:
    lines = [f"{'set':<14} {'items':>5} {'chance':>7} {'unigram':>8} {'7-gram':>7} {'trigger':>7} {'learnable':>9}  "
             f"{'content hash':<23}  rule"]
    for r in rows:
        lines.append(f"{r['set']:<14} {r['items']:>5} {_pct(r['chance']):>7} {_pct(r['unigram']):>8} "
                     f"{_pct(r['reference']):>7} {_pct(r['trigger']):>7} {r['learnable'] or 'no':>9}  "
                     f"{r['hash'][:23]:<23}  {r['rule']}")
    lines.append(f"unigram: each choice scored by its words' frequency in the bundled corpus; 7-gram: {REFERENCE}; "
                 f"trigger: {TRIGGER}; learnable: the reference more than 2 standard errors above chance and "
                 "unigram. `--data tr-suite` runs every set.")
    return "\n".join(lines)


def above_floors(r: dict) -> bool:
    """More than two standard errors above chance, the unigram floor and the untrained model (when it was
    measured: --no-baseline leaves it out)."""
    floors = [r["chance"], _floor(r, "unigram"), _floor(r, "untrained")]
    return all(r["accuracy"] - 2 * r["standard_error"] > f for f in floors if f is not None)


def suite_rows(lm, untrained, batch_size: int) -> list[dict]:
    """Every set scored by ``lm`` (and by ``untrained``, the same architecture with fresh weights)."""
    from fidan.errors import FidanError
    from fidan.evaluation.mc import choice_logprobs, mc_accuracy

    rows = []
    for built in load_all():
        items = built["items"]
        try:
            r = mc_accuracy(items, choice_logprobs(lm, items, batch_size))
        except FidanError as e:  # say which set (a choice longer than the model's window, ...)
            raise FidanError(f"{built['name']}: {e}") from None
        row = {"set": built["name"], "items": r["items"], "hash": built["hash"], "rule": built["rule"],
               "accuracy": r["accuracy"], "standard_error": standard_error(r["accuracy"], r["items"]),
               "accuracy_norm": r["accuracy_norm"],
               "standard_error_norm": standard_error(r["accuracy_norm"], r["items"]),
               "chance": r["chance"], "unigram": built["unigram"], "reference": built["reference"],
               "trigger": built.get("trigger")}
        if untrained is not None:
            base = mc_accuracy(items, choice_logprobs(untrained, items, batch_size))
            row["untrained"] = {"accuracy": base["accuracy"], "accuracy_norm": base["accuracy_norm"]}
        row["above_floors"] = above_floors(row)
        row["predictions"] = r["predictions"]
        rows.append(row)
    return rows


def format_suite(rows: list[dict]) -> str:
    head = (f"{'set':<14} {'items':>5} {'accuracy':>15} {'per byte':>15} {'chance':>7} {'untrained':>9} "
            f"{'unigram':>8} {'7-gram':>7} {'trigger':>7}  above floors")
    lines = [head]
    for r in rows:
        lines.append(f"{r['set']:<14} {r['items']:>5} {_pct(r['accuracy']):>7} ± {_pct(r['standard_error']):<5} "
                     f"{_pct(r['accuracy_norm']):>7} ± {_pct(r['standard_error_norm']):<5} {_pct(r['chance']):>7} "
                     f"{_pct(_floor(r, 'untrained')):>9} {_pct(_floor(r, 'unigram')):>8} "
                     f"{_pct(_floor(r, 'reference')):>7} {_pct(_floor(r, 'trigger')):>7}  "
                     f"{'yes' if r['above_floors'] else 'no'}")
    lines.append("accuracy: summed log-likelihood ± one standard error; above floors: more than 2 standard errors "
                 "above chance, unigram and untrained.")
    return "\n".join(lines)


def figures(data: str, items: list[dict]) -> dict:
    """A single set's content hash and, for a built-in set, its rule and model-free floors."""
    out: dict = {"data_hash": content_hash(items)}
    if data in SETS:
        built = load_set(data)
        out.update(rule=built["rule"], unigram=built["unigram"], reference=built["reference"],
                   trigger=built.get("trigger"))
    return out


def errors(result: dict) -> dict:
    n = result["items"]
    return {"standard_error": standard_error(result["accuracy"], n),
            "standard_error_norm": standard_error(result["accuracy_norm"], n)}


def floor_text(result: dict) -> str:
    """``unigram floor 0.551 / 0.602; 7-gram reference 0.801 / 0.843; trigger reference ...; `` for a built-in
    set, else nothing."""
    out = ""
    for key, label in (("unigram", "unigram floor"), ("reference", "7-gram reference"),
                       ("trigger", "trigger reference")):
        r = result.get(key)
        if r:
            out += f"{label} {r['accuracy']:.3f} / {r['accuracy_norm']:.3f}; "
    return out
