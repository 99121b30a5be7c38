"""Reading a data folder (the corpus stage's artifact): manifest and streamed documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from fidan.core.io import read_json
from fidan.errors import FidanError

SPLITS = ("train", "val")


def load_manifest(data: str | Path) -> dict:
    """Read a data folder's manifest, with a clear error when the folder is not one."""
    path = Path(data)
    if not path.exists():
        raise FidanError(f"data folder not found: {path}; create it with `fidan data prepare --out {path}`")
    if not (path / "manifest.json").exists():
        raise FidanError(f"{path} is not a fidan data folder (no manifest.json); create it with `fidan data prepare`")
    return read_json(path / "manifest.json", "data manifest")


def iter_split(data: str | Path, split: str) -> Iterator[str]:
    """Stream the documents of one split of a data folder."""
    manifest = load_manifest(data)
    if split not in manifest["splits"]:
        raise FidanError(f"data folder {data} has no split '{split}' (has {list(manifest['splits'])})")
    for f in manifest["splits"][split]["files"]:
        path = Path(data) / f["name"]
        if not path.exists():
            raise FidanError(f"data shard {path} is missing; re-run `fidan data prepare`")
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)["text"]
