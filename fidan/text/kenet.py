"""KeNet, the Turkish WordNet (``nlptoolkit-wordnet``): its synsets, and the definitions kept for evaluation.

Two places read KeNet's definitions: the built-in corpus source ``tr-kenet`` (pretraining text) and the
evaluation set ``tr-definition`` (a word for its definition). A model must not be tested on a definition
it was pretrained on, so the set draws only from :func:`reserved_definitions` (the lowest sense of every
word with two or more senses) and the corpus leaves exactly those out.
"""

from __future__ import annotations

import html
import importlib.resources
import re
from functools import lru_cache
from pathlib import Path

from fidan.errors import MissingExtra
from fidan.text.turkish import casefold_tr

KENET_HINT = "install it with: pip install 'fidan[sft-data]'"
_LITERAL = re.compile(r"<LITERAL>([^<]*)<SENSE>(\d+)</SENSE>")


def kenet_path() -> Path:
    hint = f"KeNet is in the package nlptoolkit-wordnet; {KENET_HINT}"
    try:
        path = Path(str(importlib.resources.files("WordNet").joinpath("data", "turkish_wordnet.xml")))
    except ModuleNotFoundError:
        raise MissingExtra(hint) from None
    if not path.exists():
        raise MissingExtra(f"{path} is missing; {hint}")
    return path


def norm(text: str) -> str:
    """The key two definitions are compared by: Turkish lower case, single spaces, no surrounding punctuation."""
    return " ".join(casefold_tr(text).split()).strip(" .!?…:;,\"'")


@lru_cache(maxsize=1)
def synsets() -> tuple[tuple[str, tuple[tuple[str, int], ...], str], ...]:
    """(part of speech, ((literal, sense), ...), definition) of every synset with a definition, in file
    order (plain string search: twice as fast as an XML parser on the 31 MB file)."""
    out = []
    for body in kenet_path().read_text(encoding="utf-8").split("<SYNSET>")[1:]:
        d, p = body.find("<DEF>"), body.find("<POS>")
        if d < 0 or p < 0:
            continue
        literals = tuple((html.unescape(w).strip(), int(n)) for w, n in _LITERAL.findall(body, 0, p))  # before <POS>
        if literals:
            definition = " ".join(html.unescape(body[d + 5:body.find("</DEF>", d)]).split())
            out.append((body[p + 5:body.find("</POS>", p)], literals, definition))
    return tuple(out)


def sense_counts(rows) -> dict[str, int]:
    senses: dict[str, int] = {}
    for _, literals, _ in rows:
        for word, _ in literals:
            senses[word] = senses.get(word, 0) + 1
    return senses


@lru_cache(maxsize=1)
def reserved_definitions() -> frozenset[str]:
    """The normalized definition of the lowest sense of every word with two or more senses: what
    ``tr-definition`` may ask about, and what the ``tr-kenet`` corpus source leaves out."""
    rows = synsets()
    senses = sense_counts(rows)
    lowest: dict[str, tuple[int, str]] = {}
    for _, literals, definition in rows:
        for word, sense in literals:
            if senses[word] >= 2 and (word not in lowest or sense < lowest[word][0]):
                lowest[word] = (sense, definition)
    return frozenset(norm(d) for _, d in lowest.values())


def corpus_documents(per_document: int = 200) -> list[str]:
    """KeNet as pretraining text: one line per synset, ``word, word: definition.``, ``per_document`` lines
    to a document, in file order; placeholder literals (``(zaman)``) and the reserved definitions left out."""
    reserved = reserved_definitions()
    lines = []
    for _, literals, definition in synsets():
        words = [w for w, _ in literals if w and "(" not in w]
        if not words or len(definition) < 3 or norm(definition) in reserved:
            continue
        end = "" if definition.endswith((".", "!", "?", "…")) else "."
        lines.append(f"{', '.join(dict.fromkeys(words))}: {definition}{end}")
    return ["\n".join(lines[i:i + per_document]) for i in range(0, len(lines), per_document)]
