"""The report section of `fidan bench infer`: the inference speed table and plots, if the run was measured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fidan.artifacts.bench_infer import INFER_DIR, InferResult


def inference_section(root: Path, rel: Callable[[Path], str]) -> list[str]:
    """``RUN/bench-infer/infer.json`` as a section (its table and plots); [] when the run was not measured."""
    from fidan.artifacts.infer_tables import markdown

    folder = root / INFER_DIR
    result = InferResult.read(folder)
    if result is None or not result.results:
        return []
    L = ["## Inference speed", "", f"Measured by `fidan bench infer --model {root}` ({INFER_DIR}/infer.json).", ""]
    L += markdown(result.to_dict()).splitlines()
    for name in result.plots:
        if (folder / name).exists():
            L += [f"![{Path(name).stem}]({rel(folder / name)})", ""]
    return L
