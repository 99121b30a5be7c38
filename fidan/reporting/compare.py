"""`fidan compare RUN RUN ...`: runs side by side in one table (kind, size, training budget, held-out bits
per byte, every evaluation they share) and a bar chart of the shared figures.

Figures share a column only when they measure the same thing on the same content: a column is a
(metric, content hash) pair (see fidan.reporting.compare_runs for where each hash comes from). Whatever
cannot be put beside another run's figure is listed under the table, with the reason.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from fidan.errors import BadInput
from fidan.reporting.compare_runs import Figure, RunFacts, read_run
from fidan.reporting.markdown import duration, table
from fidan.runtime.console import speaks
from fidan.runtime.io import atomic_write_json

# Training's own held-out figures: every run's row shows one, shared with another run or not.
HELD_OUT = ("held-out bpb", "held-out bpb, sampled windows", "held-out answer bpb")
ORDER = (*HELD_OUT, "bpb", "mc accuracy", "accuracy", "macro-F1")


@dataclass
class Column:
    metric: str
    hash: str | None
    cells: dict[int, Figure] = field(default_factory=dict)  # run index → figure

    @property
    def on(self) -> str:
        return " = ".join(dict.fromkeys(f.on for f in self.cells.values()))

    @property
    def header(self) -> str:
        return f"{self.metric}: {self.on} [{short(self.hash)}]"


def short(h: str | None) -> str:
    return h.split(":")[-1][:8] if h else "no hash"


def cell(f: Figure | None) -> str:
    if f is None:
        return "–"
    if f.percent:
        return f"{f.value:.1%}" + (f" ± {f.error:.1%}" if f.error is not None else "")
    return f"{f.value:.3f}"


def group(runs: list[RunFacts]) -> tuple[list[Column], list[str]]:
    """Columns (metric, hash) in a stable order, and a note for each figure that is not shown."""
    columns: dict[tuple, Column] = {}
    notes: list[str] = []
    for i, run in enumerate(runs):
        for f in run.figures:
            key = f.key if f.hash else (*f.key, i)  # a figure without a hash is only ever beside itself
            col = columns.setdefault(key, Column(f.metric, f.hash))
            if i in col.cells:
                notes.append(f"{run.label}: {f.source} measures {f.metric} on the same content as "
                             f"{col.cells[i].source}; the table shows the latter")
                continue
            col.cells[i] = f
    shown, hidden = [], []
    for col in columns.values():
        keep = len(runs) == 1 or col.metric in HELD_OUT or (col.hash and len(col.cells) >= 2)
        (shown if keep else hidden).append(col)
    for col in hidden:
        for i, f in col.cells.items():
            notes.append(f"{runs[i].label}: {f.metric} on {f.on} = {cell(f)} ({f.source}) is not compared: "
                         + why(f, i, runs))
    for metric in HELD_OUT:
        split = [c for c in shown if c.metric == metric]
        if len(split) > 1:
            notes.append(f"{metric} is in {len(split)} columns: those runs held out different texts or settings "
                         f"(hashes {', '.join(short(c.hash) for c in split)}), so their figures are not comparable")
    for col in shown:
        if col.hash is None and len(runs) > 1:
            i, f = next(iter(col.cells.items()))
            notes.append(f"{runs[i].label}: {f.metric} has a column of its own: " + why(f, i, runs))
    shown.sort(key=lambda c: (ORDER.index(c.metric) if c.metric in ORDER else len(ORDER), c.on, c.hash or ""))
    return shown, notes


def why(f: Figure, i: int, runs: list[RunFacts]) -> str:
    if f.hash is None:
        return ("its file records no content hash of what it measured (written by an older fidan); "
                "evaluate again with --force to compare it")
    same_name = [r.label for j, r in enumerate(runs) if j != i
                 and any(g.metric == f.metric and g.on == f.on and g.hash != f.hash for g in r.figures)]
    if same_name:
        return (f"{', '.join(same_name)} measured {f.on} too, but on different content (another content hash), "
                "so the figures are not comparable")
    return "no other run measured it on the same content"


def render(runs: list[RunFacts], columns: list[Column]) -> list[str]:
    header = ("run", "kind", "parameters", "trained", "tokens seen", "steps", "wall time",
              *(c.header.replace("|", "\\|") for c in columns))
    rows = [(r.label.replace("|", "\\|"), r.kind, r.parameters, r.trained, r.tokens, r.steps, duration(r.wall_s),
             *(cell(c.cells.get(i)) for c in columns)) for i, r in enumerate(runs)]
    return table(rows, header)


def plot_columns(runs: list[RunFacts], columns: list[Column], out: str | Path) -> Path | None:
    """One bar chart per shared figure (one bar per run, ± one standard error where there is one)."""
    from fidan.runtime.plots import figure, percent_axis

    panels = [c for c in columns if len(c.cells) >= 2 or len(runs) == 1]
    if not panels:
        return None
    names = [Path(r.label).name or r.label for r in runs]
    if len(set(names)) < len(names):
        names = [r.label for r in runs]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    with figure(out, nrows, ncols, size=(1.2 + (0.7 * len(runs) + 1.5) * ncols, 3.6 * nrows), dpi=100) as (_, axes):
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, col in zip(axes.flat, panels, strict=False):
            idx = sorted(col.cells)
            values = [col.cells[i].value for i in idx]
            errors = [col.cells[i].error or 0.0 for i in idx]
            bars = ax.bar(range(len(idx)), values, yerr=errors if any(errors) else None, capsize=3,
                          color=[f"C{i % 10}" for i in idx])
            ax.bar_label(bars, labels=[cell(col.cells[i]).split(" ±")[0] for i in idx], fontsize=8, padding=2)
            ax.set_xticks(range(len(idx)), [names[i] for i in idx], rotation=20, ha="right", fontsize=8)
            better = " (lower is better)" if col.cells[idx[0]].lower_is_better else ""
            ax.set_title("\n".join(textwrap.wrap(col.header + better, 38)), fontsize=9)
            if col.cells[idx[0]].percent:
                percent_axis(ax, decimals=0)
            ax.grid(False, axis="x")
    return Path(out)


def compare(runs: list[str], plot: str = "compare.png", json: str | None = None, quiet: bool | None = None) -> dict:
    """Compare runs side by side: size, training budget, held-out bits per byte and every shared evaluation.

    Figures share a column only when they were measured on the same content (the same content hash of
    the text or item set); what could not be compared is listed under the table with the reason.

    Args:
        runs: run folders made by `fidan pretrain` (adapted runs too: --init, LoRA, QLoRA), `fidan sft` or
            `fidan classify train`; one run prints its own row.
        plot: where to write the bar chart of the shared figures (PNG); an empty string writes none.
        json: also write the table's runs, columns and notes to this JSON file.
        quiet: print nothing (default: the command prints the table; a call from Python only returns it,
            unless quiet=False).
    """
    if not runs:
        raise BadInput("compare needs at least one run folder: `fidan compare RUN [RUN ...]`")
    facts = [read_run(r) for r in runs]
    columns, notes = group(facts)
    lines = render(facts, columns)
    if notes:
        lines += ["Not compared:", ""] + [f"- {n}" for n in notes] + [""]
    png = plot_columns(facts, columns, plot) if plot else None
    result = {"runs": [_run_json(r, i, columns) for i, r in enumerate(facts)],
              "columns": [{"header": c.header, "metric": c.metric, "on": c.on, "hash": c.hash} for c in columns],
              "notes": notes, "table": "\n".join(lines), "plot": str(png) if png else None}
    if json:
        atomic_write_json(json, result)
    if speaks(quiet):
        print(result["table"].rstrip())
        if plot:
            print(f"plot → {png}" if png else "no figure is shared by two runs: no plot written")
        if json:
            print(f"json → {json}")
    return result


def _run_json(r: RunFacts, i: int, columns: list[Column]) -> dict:
    figures = {c.header: {"value": c.cells[i].value, "error": c.cells[i].error, "source": c.cells[i].source}
               for c in columns if i in c.cells}
    return {"run": r.label, "kind": r.kind, "parameters": r.parameters, "trained_parameters": r.trained,
            "tokens_seen": r.tokens, "steps": r.steps, "wall_seconds": r.wall_s, "figures": figures,
            "all_figures": [{"metric": f.metric, "on": f.on, "hash": f.hash, "value": f.value, "error": f.error,
                             "source": f.source} for f in r.figures]}

