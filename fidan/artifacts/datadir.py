"""Reading a data folder: its manifest (either kind), streamed documents and its token statistics.

Two stages write data folders: `fidan data prepare` (a corpus: text shards, then token files under
``tokens/``) and `fidan data instructions` (an instruction set: chat JSONL). Whoever reads one reads it
here, so the shapes are known in one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fidan.artifacts.schema import check
from fidan.errors import FidanError
from fidan.runtime.io import read_json

SPLITS = ("train", "val")


def load_manifest(data: str | Path) -> dict:
    """Read a data folder's manifest, with a clear error when the folder is not one."""
    path = Path(data)
    if not path.exists():
        raise FidanError(f"data folder not found: {path}; create it with `fidan data prepare --out {path}`")
    if not (path / "manifest.json").exists():
        raise FidanError(f"{path} is not a fidan data folder (no manifest.json); create it with `fidan data prepare`")
    manifest = read_json(path / "manifest.json", "data manifest")
    # A corpus (data prepare) or an instruction set (data instructions): readers tell them apart below.
    check(("data", "instructions"), manifest, path / "manifest.json")
    return manifest


def iter_split(data: str | Path, split: str) -> Iterator[str]:
    """Stream the documents of one split of a data folder."""
    return (text for _, text in iter_split_sources(data, split))


def iter_split_sources(data: str | Path, split: str) -> Iterator[tuple[str, str]]:
    """Stream (source, text) for the documents of one split: the ``--source`` each came from, or "" in
    folders written before shards recorded it."""
    manifest = load_manifest(data)
    if not isinstance(manifest.get("splits"), dict):
        raise FidanError(f"{data} is not a text corpus (its manifest has no splits; an instruction set?); "
                         "pass a data folder made by `fidan data prepare`")
    if split not in manifest["splits"]:
        raise FidanError(f"data folder {data} has no split '{split}' (has {list(manifest['splits'])})")
    for f in manifest["splits"][split]["files"]:
        path = Path(data) / f["name"]
        if not path.exists():
            raise FidanError(f"data shard {path} is missing; re-run `fidan data prepare`")
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                yield record.get("source", ""), record["text"]


@dataclass
class DataSummary:
    """What a data folder's manifest says, in one shape for both kinds of data folder.

    ``kind`` is ``corpus`` (`fidan data prepare`: text shards, ``splits`` with documents, characters and
    bytes) or ``instructions`` (`fidan data instructions`: chat JSONL, conversation counts per split).
    """

    path: Path
    kind: str
    split_rule: str | None
    created: str | None = None
    splits: dict[str, dict] = field(default_factory=dict)  # name → {"documents" or "examples", ...}
    sources: list[dict] = field(default_factory=list)  # corpus: spec, read, kept; instructions: name, train, val, ...
    dropped: dict[str, int] = field(default_factory=dict)


def describe_data(data: str | Path) -> DataSummary:
    """Read a data folder's manifest, whichever stage wrote it (the one reader for the report and others)."""
    path = Path(data)
    manifest = load_manifest(path)
    if isinstance(manifest.get("splits"), dict):
        splits = {name: {k: sp.get(k) for k in ("documents", "characters", "bytes")}
                  for name, sp in manifest["splits"].items() if isinstance(sp, dict)}
        sources = [s for s in manifest.get("sources") or [] if isinstance(s, dict)]
        return DataSummary(path, "corpus", manifest.get("split_rule"), manifest.get("created"), splits, sources,
                           dict(manifest.get("dropped") or {}))
    if isinstance(manifest.get("train"), int):
        splits = {name: {"examples": manifest[name]} for name in SPLITS if isinstance(manifest.get(name), int)}
        sources = [{"name": name, **(v if isinstance(v, dict) else {"train": v})}
                   for name, v in (manifest.get("sources") or {}).items()]
        return DataSummary(path, "instructions", manifest.get("split"), manifest.get("created"), splits, sources)
    raise FidanError(f"{path / 'manifest.json'} is neither a corpus nor an instruction-set manifest; "
                     "re-create the folder with `fidan data prepare` or `fidan data instructions`")


def token_stats(data: str | Path, tokenizer_sha256: str) -> dict[str, dict] | None:
    """Per split: tokens, bytes, documents and bytes per token, as encoding the folder recorded them in
    ``DATA/tokens/<sha256[:12]>/meta.json``; None when the folder was not encoded with that tokenizer."""
    meta_path = Path(data) / "tokens" / tokenizer_sha256[:12] / "meta.json"
    if not meta_path.exists():
        return None
    meta = read_json(meta_path, "token metadata")
    out = {}
    for name, sp in (meta.get("splits") or {}).items():
        tokens = sp.get("tokens") or 0
        out[name] = {**sp, "bytes_per_token": sp["bytes"] / tokens if tokens and sp.get("bytes") else None}
    return out
