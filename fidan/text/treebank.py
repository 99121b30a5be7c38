"""The Turkish Web Treebank's CoNLL-U files (package turkish-treebanks): location and gold segmentation.

The treebank splits a word into inflectional groups (IGs) at derivational boundaries and writes them
as consecutive tokens joined by ``SpaceAfter=No`` (``katıl`` + ``dığı`` for «katıldığı»). Those joins
inside a word are gold morpheme boundaries. The files are read directly: the package's own reader
module needs an older protobuf than the one other packages install.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path

from fidan.errors import FidanError

TR_DATA_HINT = "install it with: pip install 'fidan[tr-data]'"
SECTIONS = ("wiki", "web")


def treebank_file(section: str) -> Path:
    """Path of a Turkish Web Treebank CoNLL-U file (installed outside the package, in site-packages/data)."""
    try:
        dist = importlib.metadata.distribution("turkish-treebanks")
    except importlib.metadata.PackageNotFoundError:
        raise FidanError(f"source tr-treebank needs the package turkish-treebanks; {TR_DATA_HINT}") from None
    path = Path(str(dist.locate_file(f"data/{section}.conllu")))
    if not path.exists():
        raise FidanError(f"treebank file {path} is missing; reinstall turkish-treebanks")
    return path


def ig_sentences(sections: tuple[str, ...] = SECTIONS) -> Iterator[tuple[str, list[int]]]:
    """Each sentence's text with the character offsets where one token ends and the next begins without
    a space (``SpaceAfter=No``). Offsets refer to the ``# text =`` line; sentences whose tokens do not
    spell that line exactly are skipped."""
    for section in sections:
        text, forms, glued = None, [], []
        with open(treebank_file(section), encoding="utf-8") as f:
            for line in f:
                line = line.rstrip("\n")
                if line.startswith("# text = "):
                    text = line[len("# text = "):]
                elif line and not line.startswith("#"):
                    cols = line.split("\t")
                    if len(cols) >= 10 and cols[0].isdigit():
                        forms.append(cols[1])
                        glued.append("SpaceAfter=No" in cols[9])
                elif not line:
                    found = _joins(text, forms, glued) if text is not None else None
                    if found is not None:
                        yield text, found
                    text, forms, glued = None, [], []
        if text is not None and forms:
            found = _joins(text, forms, glued)
            if found is not None:
                yield text, found


def _joins(text: str, forms: list[str], glued: list[bool]) -> list[int] | None:
    pos, joins = 0, []
    for form, no_space in zip(forms, glued, strict=True):
        while pos < len(text) and text[pos] == " ":
            pos += 1
        if text[pos:pos + len(form)] != form:
            return None
        pos += len(form)
        if no_space and pos < len(text) and text[pos] != " ":
            joins.append(pos)
    return joins
