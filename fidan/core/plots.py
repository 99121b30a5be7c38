"""Training plots from ``metrics.jsonl`` (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path


def plot_loss(records: list[dict], out: str | Path, title: str = "") -> Path | None:
    """Train loss per step and val loss / bits per byte at each eval, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["val_loss"], r["val_bpb"]) for r in records if r.get("kind") == "eval"]
    if not train and not val:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        ax1.plot(*zip(*train, strict=True), label="train", alpha=0.6, lw=1)
    if val:
        ax1.plot([v[0] for v in val], [v[1] for v in val], "o-", label="val", lw=2)
        ax2.plot([v[0] for v in val], [v[2] for v in val], "o-", color="C2")
    ax1.set(xlabel="step", ylabel="loss (nats/token)", title="loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.set(xlabel="step", ylabel="bits per byte", title="held-out bits per byte")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
