"""Plots for every stage: headless matplotlib, one look, PNGs written atomically.

A plotting function opens :func:`figure` with the output path, draws on the axes it yields, and the
block's end lays the figure out, writes the PNG (temp file + rename, so a report never links half an
image) and frees the figure. Matplotlib is imported on first use: stages that do not plot never pay
for it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fidan.runtime.io import atomic_write_bytes

DPI = 110
# One look for every fidan figure; applied per figure so a library user's own rcParams are left alone.
STYLE = {
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed, safe in threads and on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextlib.contextmanager
def figure(out: str | Path, nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.0),
           title: str = "", dpi: int = DPI) -> Iterator[tuple[Any, Any]]:
    """Yield ``(fig, axes)`` (axes always a 2-D array); on leaving, save ``out`` as PNG atomically."""
    plt = pyplot()
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
        try:
            yield fig, axes
            if title:
                fig.suptitle(title)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi)
            atomic_write_bytes(out, buf.getvalue())
        finally:
            plt.close(fig)


def percent_axis(ax: Any, axis: str = "y", decimals: int | None = None) -> None:
    """Show a 0..1 axis as percentages (``decimals`` None: as many as the ticks need)."""
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, decimals=decimals))


def plot_loss(records: list[dict], out: str | Path, title: str = "") -> Path | None:
    """Train loss per step and val loss / bits per byte at each eval, as one PNG (None: nothing to draw)."""
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    val = [(r["step"], r["val_loss"], r.get("val_bpb")) for r in records
           if r.get("kind") == "eval" and r.get("val_loss") is not None]
    if not train and not val:
        return None
    with figure(out, 1, 2, size=(11, 4), title=title) as (_, axes):
        ax1, ax2 = axes[0]
        if train:
            ax1.plot(*zip(*train, strict=True), label="train", alpha=0.6, lw=1)
        if val:
            ax1.plot([v[0] for v in val], [v[1] for v in val], "o-", label="val", lw=2)
            bpb = [(v[0], v[2]) for v in val if v[2] is not None]
            if bpb:
                ax2.plot(*zip(*bpb, strict=True), "o-", color="C2", label="each evaluation")
        final = [(r["step"], r["val_bpb"]) for r in records if r.get("kind") == "final" and r.get("val_bpb") is not None]
        if final:  # the end-of-run figure over the whole held-out split, beside the per-evaluation sample
            ax2.plot(*zip(*final[-1:], strict=True), "*", ms=12, color="C3", label="whole held-out split")
            ax2.legend()
        ax1.set(xlabel="step", ylabel="loss (nats/token)", title="loss")
        ax1.legend()
        ax2.set(xlabel="step", ylabel="bits per byte", title="held-out bits per byte")
    return Path(out)
