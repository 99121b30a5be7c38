"""Hugging Face datasets as corpus sources: `--source hf:NAME[:CONFIG][?key=value&...]`, streamed up to their
caps (the spec's grammar and the record stream: fidan.artifacts.hub_data)."""

from __future__ import annotations

from collections.abc import Iterator

from fidan.artifacts.hub_data import KEYS, HubSource, datasets_module, parse, records
from fidan.errors import BadInput, FidanError

__all__ = ["KEYS", "HubSource", "parse", "read_hub"]


def read_hub(spec: str, text_field: str = "text") -> Iterator[str]:
    """The documents of an ``hf:`` source, streamed, up to its caps; the spec is checked at once."""
    src = parse(spec)
    return _stream(src, src.field or text_field, datasets_module())


def _stream(src: HubSource, field: str, datasets) -> Iterator[str]:
    docs = size = 0
    try:
        for record in records(src, datasets):
            if field not in record:
                raise BadInput(f"dataset {src.name} has no field '{field}' (fields: {list(record)}); "
                               "pass ?field=NAME or --text-field")
            text = record[field]
            if not isinstance(text, str) or not text:
                continue
            if src.max_bytes is not None:
                size += len(text.encode("utf-8"))
                if size > src.max_bytes:
                    return
            yield text
            docs += 1
            if src.max_docs is not None and docs >= src.max_docs:
                return
    except FidanError:
        raise
    except Exception as e:  # noqa: BLE001 - hub and loader errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(
            f"could not load Hugging Face dataset '{src.name}' ({type(e).__name__}: {first[:200]}); "
            "check the name, config and split, or that the hub is reachable, or download it and pass a local path"
        ) from None
