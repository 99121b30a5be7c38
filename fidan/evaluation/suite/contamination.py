"""Whether any suite item's text is in fidan's built-in training material, checked by hash.

fidan pretrains on its built-in corpus sources (`fidan data prepare --source tr-speeches ...`) and tunes
on its built-in instruction sources (`fidan data instructions`), so an item whose text is in one of them
would measure memory, not Turkish. Every document and instruction message is cut into sentences (and
kept whole); each piece is normalized (Turkish lower case, single spaces, no surrounding punctuation or
quotes) and hashed. An item is contaminated when any of its pieces has one of those hashes: its whole
text (context and right answer), each of its sentences, and each quoted span of its context (a KeNet
definition in ``tr-definition``). A short context alone (*Bu*, *Dün akşam*) is not checked: every corpus
has it.
"""

from __future__ import annotations

import hashlib
import re
import sys
from functools import lru_cache

from fidan.errors import FidanError
from fidan.evaluation.suite.definition import kenet_chats
from fidan.text.turkish import casefold_tr

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_QUOTED = re.compile(r'"([^"]+)"')


def _key(folded: str) -> bytes | None:
    """The hash of an already case-folded piece: single spaces, no surrounding punctuation or quotes."""
    norm = " ".join(folded.split()).strip(" .!?…:;,\"'«»“”")
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=12).digest() if norm else None


def pieces(text: str) -> list[str]:
    """The text itself and each of its sentences, case-folded (once, for the whole text)."""
    folded = casefold_tr(text)
    return [folded, *_SENTENCE_END.split(folded)]


def _sources() -> list[tuple[str, object]]:
    """(name, a function giving its texts) for every built-in corpus and instruction source."""
    from fidan.corpus.instructions import SOURCES
    from fidan.corpus.sources import BUILTIN

    out: list[tuple[str, object]] = [(name, docs) for name, (_, docs) in BUILTIN.items()]
    for name, (_, _, build) in SOURCES.items():
        def texts(name=name, build=build):
            for chat in kenet_chats() if name == "kenet" else build():
                for message in chat:
                    yield message["content"]
        out.append((name, texts))
    return out


@lru_cache(maxsize=1)
def source_hashes() -> tuple[frozenset[bytes], tuple[str, ...]]:
    """Hashes of every piece of every built-in source, and the names of the sources that were read (a
    source whose package is not installed cannot be trained on here, and is skipped with a note)."""
    keys: set[bytes] = set()
    read = []
    for name, texts in _sources():
        try:
            for text in texts():
                keys.update(k for k in map(_key, pieces(text)) if k)
        except FidanError as e:
            print(f"note: built-in source {name} is not installed, not checked: {e}", file=sys.stderr)
            continue
        read.append(name)
    return frozenset(keys), tuple(read)


def item_pieces(item: dict) -> list[str]:
    whole = item["context"] + item["choices"][item["answer"]]
    return [*pieces(whole), *map(casefold_tr, _QUOTED.findall(item["context"]))]


def contaminated(items: list[dict]) -> list[tuple[str, str]]:
    """(item id, the piece found in a built-in source) for every item that overlaps one."""
    keys, _ = source_hashes()
    found = []
    for i, it in enumerate(items):
        for piece in item_pieces(it):
            if _key(piece) in keys:
                found.append((str(it.get("id", i)), piece))
                break
    return found
