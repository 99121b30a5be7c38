"""The report's own plots: learning rate, gradient norm, throughput and MFU per step (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def plot_training(records: list[dict], out: str | Path, title: str = "") -> Path | None:
    """One PNG with a panel per training signal that the metrics hold (lr, grad norm, tokens/s, MFU)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    panels = [(key, label) for key, label in (("lr", "learning rate"), ("grad_norm", "gradient norm (before clipping)"),
                                              ("tokens_per_s", "tokens / s"), ("mfu", "MFU"))
              if any(key in r for r in train)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        points = [(r["step"], r[key]) for r in train if r.get(key) is not None]
        steps, values = zip(*points, strict=True)
        ax.plot(steps, values, lw=1, alpha=0.8)
        if key == "mfu":
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set(xlabel="step", title=label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_mc(results: list[dict], out: str | Path) -> Path | None:
    """Multiple-choice accuracy (summed and per byte) against chance, one bar group per data set."""
    if not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(results), 3.4))
    xs = range(len(results))
    ax.bar([x - 0.2 for x in xs], [r["accuracy"] for r in results], width=0.4, label="summed log-likelihood")
    ax.bar([x + 0.2 for x in xs], [r["accuracy_norm"] for r in results], width=0.4, label="per byte")
    for x, r in zip(xs, results, strict=True):
        ax.hlines(r["chance"], x - 0.45, x + 0.45, colors="k", linestyles="--", label="chance" if x == 0 else None)
    ax.set_xticks(list(xs), [Path(r["data"]).name.split(".")[0] for r in results])
    ax.set(ylim=(0, 1.25), ylabel="accuracy", title="multiple choice")
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
