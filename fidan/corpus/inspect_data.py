"""`fidan data inspect`: what a data folder holds and what each quality filter removed, with examples."""

from __future__ import annotations

import json
from pathlib import Path

from fidan.artifacts.datadir import load_manifest
from fidan.errors import BadInput


def _short(text: str, width: int) -> str:
    one = " ⏎ ".join(part for part in text.split("\n") if part.strip())
    return one if len(one) <= width else one[: width - 1] + "…"


def inspect_data(data: str, filter: list[str] | None = None, samples: int = 3, width: int = 160) -> dict:
    """Show a data folder's splits and, for each quality filter, its settings, what it removed and examples.

    Args:
        data: a data folder written by `fidan data prepare`.
        filter: show only this quality filter (repeatable); all by default.
        samples: removed examples to show per filter (the folder keeps up to 20).
        width: characters shown per example.
    """
    manifest = load_manifest(data)
    if not isinstance(manifest.get("splits"), dict):
        raise BadInput(f"{data} is not a text corpus (no splits; an instruction set?); "
                       "pass a data folder made by `fidan data prepare`")
    if samples < 0 or width < 10:
        raise BadInput(f"--samples must be at least 0 and --width at least 10, got {samples} and {width}")
    recorded = "quality" in manifest
    quality = manifest.get("quality") or {"enabled": False}
    filters = quality.get("filters") or {}
    wanted = list(filter or [])
    unknown = [n for n in wanted if n not in filters]
    if unknown:
        known = ", ".join(filters) or "none: the folder was prepared with --no-quality"
        raise BadInput(f"no quality filter '{unknown[0]}' in {data} (its filters: {known})")
    examples: dict[str, list[str]] = {n: [] for n in filters}
    sample_path = Path(data) / str(quality.get("removed_sample") or "removed.jsonl")
    if filters and sample_path.exists():
        with open(sample_path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                examples.setdefault(record["filter"], []).append(record["text"])
    sp = manifest["splits"]
    print(f"{data}: {sp['train']['documents']:,} train / {sp['val']['documents']:,} val documents, "
          f"{sp['train']['characters'] + sp['val']['characters']:,} characters from "
          f"{manifest.get('documents_read', 0):,} read; dropped: "
          + ", ".join(f"{k} {v:,}" for k, v in (manifest.get("dropped") or {}).items()))
    if not filters:
        print("quality filters: off (prepared with --no-quality)" if recorded else
              "quality filters: not recorded (prepared by a fidan without them)")
    for name, why in (quality.get("not_run") or {}).items():
        print(f"quality filter {name}: {why}")
    for name in wanted or filters:
        f = filters[name]
        r = f["removed"]
        settings = ", ".join(f"{k}={v}" for k, v in f["settings"].items()) or "no settings"
        print(f"\n{name} [{f['level']}] {settings}: removed {r['documents']:,} documents, {r['lines']:,} lines, "
              f"{r['characters']:,} characters\n  ({f['what']})")
        if f.get("by_language"):
            print("  by language: " + ", ".join(f"{code} {n:,}" for code, n in f["by_language"].items()))
        for text in examples.get(name, [])[:samples]:
            print(f"  - {_short(text, width)}")
    return {"quality": quality, "examples": {n: examples.get(n, [])[:samples] for n in (wanted or filters)}}
