"""zemberek-python, Turkish morphology offline: imported and loaded once per process, the quiet way."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator
from functools import lru_cache

from fidan.errors import MissingExtra

MORPH_HINT = "install it with: pip install 'fidan[morph]'"


def import_zemberek():
    """The analyzer's class, or a MissingExtra error naming the extra to install."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zemberek imports the deprecated pkg_resources
            from zemberek import TurkishMorphology
    except ModuleNotFoundError as e:
        raise MissingExtra(f"morphology needs zemberek-python ({e.name} is missing); {MORPH_HINT}") from None
    finally:
        # zemberek's import sets the root logger to INFO with its own stdout handler, so every library's INFO
        # line (matplotlib's font cache, ...) would land in fidan's output, wrapped in blank lines: undo it.
        root.setLevel(level)
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
    return TurkishMorphology


@lru_cache(maxsize=1)
def morphology():
    """zemberek's analyzer and generator, loaded once per process (about 11 s)."""
    cls = import_zemberek()
    logging.getLogger("zemberek").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="zemberek")  # notifyAll, per call
    return cls.create_with_defaults()


# Each analyzer process loads zemberek first (about 11 s), so a few thousand words are done faster in one.
PARALLEL_FROM = 20_000


def workers_for(new_words: int, parallel_from: int = PARALLEL_FROM) -> int:
    """Processes to analyse ``new_words`` words with: one per core, up to 4, once there are enough to repay
    their start (``parallel_from``); else this one."""
    return min(os.cpu_count() or 1, 4) if new_words >= parallel_from else 1


def map_chunks(fn: Callable[[list[str]], object], chunks: list[list[str]], workers: int) -> Iterator:
    """``fn(chunk)`` for each chunk, in order: in this process when ``workers`` is 1 (or there is one chunk),
    else in ``workers`` processes, each loading zemberek once. ``fn`` must be a module-level function."""
    if workers <= 1 or len(chunks) <= 1:
        yield from map(fn, chunks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold torch's thread pools, which a forked child must not touch
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(fn, chunks)
