"""Hugging Face datasets as `hf:NAME[:CONFIG][?key=value&...]`, streamed (corpus sources, instruction data).

    hf:uonlp/CulturaX:tr
    hf:allenai/c4?config=tr&split=validation&field=text&max_docs=100000
    hf:HuggingFaceFW/fineweb-2:tur_Latn?max_bytes=500M
    hf:/data/my_saved_dataset?split=train           (a folder written by Dataset.save_to_disk)

NAME is a hub id or a local folder (data files, or a dataset saved with ``save_to_disk``); CONFIG (the
subset, e.g. a language) follows a colon or comes as ``config=``. The records stream: nothing is
downloaded beyond what is read, and reading stops at ``max_docs`` documents or ``max_bytes`` UTF-8 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote

from fidan.errors import BadInput, MissingExtra

KEYS = ("config", "split", "field", "max_docs", "max_bytes")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


@dataclass(frozen=True)
class HubSource:
    """One parsed ``hf:`` source."""

    name: str
    config: str | None = None
    split: str = "train"
    field: str | None = None  # None: the --text-field of the command
    max_docs: int | None = None
    max_bytes: int | None = None

    def describe(self) -> dict:
        """The settings for the manifest, without the unset ones."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def _count(spec: str, key: str, value: str, option: str = "--source") -> int:
    m = _SIZE.match(value.strip()) if key == "max_bytes" else re.match(r"^\d+$", value.strip())
    if not m:
        form = "a number of bytes such as 500000000 or 500M" if key == "max_bytes" else "a whole number"
        raise BadInput(f"{option} {spec}: {key} must be {form}, got '{value}'")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if key == "max_bytes" else int(value)
    if n <= 0:
        raise BadInput(f"{option} {spec}: {key} must be positive, got '{value}'")
    return n


def parse(spec: str, option: str = "--source") -> HubSource:
    """``hf:NAME[:CONFIG][?config=&split=&field=&max_docs=&max_bytes=]`` → HubSource; a bad key is BadInput."""
    body = spec[3:] if spec.startswith("hf:") else spec
    body, _, query = body.partition("?")
    name, config = body, None
    head, colon, tail = body.rpartition(":")
    if colon and head and tail and "/" not in tail and "\\" not in tail:
        name, config = head, tail
    if not name:
        raise BadInput(f"{option} {spec}: no dataset name; e.g. hf:uonlp/CulturaX:tr")
    settings: dict = {}
    for part in filter(None, query.split("&")):
        key, eq, value = (unquote(x) for x in part.partition("="))
        if not eq:
            raise BadInput(f"{option} {spec}: after '?' come key=value pairs joined by '&', got '{part}'; "
                           f"keys are {', '.join(KEYS)}")
        if key not in KEYS:
            raise BadInput(f"{option} {spec}: unknown key '{key}'; keys are {', '.join(KEYS)}")
        if not value:
            raise BadInput(f"{option} {spec}: {key} has no value")
        settings[key] = _count(spec, key, value, option) if key.startswith("max_") else value
    if config and settings.get("config", config) != config:
        raise BadInput(f"{option} {spec}: two configs ({config} and {settings['config']}); give one")
    return HubSource(name=name, config=settings.pop("config", config), **settings)


def datasets_module():
    try:
        import datasets
    except ModuleNotFoundError:
        raise MissingExtra("Hugging Face data needs `datasets`; install it with: pip install 'fidan[datasets]'") from None
    return datasets


def records(src: HubSource, datasets=None) -> Iterator[dict]:
    """The records of a source, streamed (a dataset saved with ``save_to_disk`` is read from its folder)."""
    datasets = datasets or datasets_module()
    folder = Path(src.name)
    if folder.is_dir() and ((folder / "dataset_dict.json").exists() or (folder / "state.json").exists()):
        ds = datasets.load_from_disk(str(folder))
        if isinstance(ds, datasets.DatasetDict):
            if src.split not in ds:
                raise BadInput(f"dataset {src.name} has no split '{src.split}' (splits: {', '.join(ds)}); "
                               "pass ?split=NAME")
            ds = ds[src.split]
        return iter(ds.to_iterable_dataset())
    return iter(datasets.load_dataset(src.name, src.config, split=src.split, streaming=True))
