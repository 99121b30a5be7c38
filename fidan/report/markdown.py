"""Small Markdown and file helpers shared by the report's sections."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fidan.errors import FidanError


def read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FidanError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); regenerate the run") from None


def read_json(path: Path) -> dict | None:
    """A JSON file the report may do without (None when it is missing or unreadable)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if x and abs(x) < 0.01:
            return f"{x:.3g}"
        return f"{x:,.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def table(rows: list[tuple], header: tuple) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return out + [""]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def quote(text: str) -> str:
    return "«" + " ".join(text.split()).replace("|", "\\|") + "»"
