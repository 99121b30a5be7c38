"""The report's own plots: learning rate, gradient norm, throughput and MFU per step; multiple choice."""

from __future__ import annotations

from pathlib import Path

from fidan.runtime.plots import figure, percent_axis

TRAINING_PANELS = (("lr", "learning rate"), ("grad_norm", "gradient norm (before clipping)"),
                   ("tokens_per_s", "tokens / s"), ("mfu", "MFU"))


def plot_training(records: list[dict], out: str | Path, title: str = "") -> Path | None:
    """One PNG with a panel per training signal that the metrics hold (lr, grad norm, tokens/s, MFU)."""
    train = [r for r in records if r.get("kind") == "train"]
    panels = [(key, label) for key, label in TRAINING_PANELS if any(r.get(key) is not None for r in train)]
    if not panels:
        return None
    with figure(out, 1, len(panels), size=(4.2 * len(panels), 3.6), title=title, dpi=100) as (_, axes):
        for ax, (key, label) in zip(axes[0], panels, strict=True):
            points = [(r["step"], r[key]) for r in train if r.get(key) is not None]
            ax.plot(*zip(*points, strict=True), lw=1, alpha=0.8)
            if key == "mfu":
                percent_axis(ax, decimals=1)
            ax.set(xlabel="step", title=label)
    return Path(out)


def plot_mc(results: list[dict], out: str | Path) -> Path | None:
    """Multiple-choice accuracy (summed and per byte) against chance and an untrained model of the same
    shape, one bar group per data set."""
    if not results:
        return None
    with figure(out, size=(2.4 + 1.6 * len(results), 3.6), dpi=100) as (_, axes):
        ax = axes[0, 0]
        xs = range(len(results))
        for shift, key, label in ((-0.2, "accuracy", "summed log-likelihood"), (0.2, "accuracy_norm", "per byte")):
            bars = ax.bar([x + shift for x in xs], [r[key] for r in results], width=0.4, label=label)
            ax.bar_label(bars, labels=[f"{r[key]:.0%}" for r in results], fontsize=8, padding=6)
        for x, r in zip(xs, results, strict=True):
            ax.hlines(r["chance"], x - 0.45, x + 0.45, colors="k", linestyles="--", label="chance" if x == 0 else None)
            base = r.get("untrained")
            if base:
                # Both scores of the untrained model, drawn over the bar they compare with.
                ax.hlines(base["accuracy"], x - 0.4, x, colors="C3", lw=2.5,
                          label="untrained model" if x == 0 else None)
                ax.hlines(base["accuracy_norm"], x, x + 0.4, colors="C3", lw=2.5)
        ax.set_xticks(list(xs), [Path(r["data"]).name.split(".")[0] for r in results])
        ax.set(ylim=(0, 1.3), ylabel="accuracy", title="multiple choice")
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        percent_axis(ax, decimals=0)
        ax.grid(False, axis="x")
        ax.legend(loc="upper center", ncol=2)
    return Path(out)
