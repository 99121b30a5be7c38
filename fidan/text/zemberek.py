"""zemberek-python, Turkish morphology offline: imported and loaded once per process, the quiet way."""

from __future__ import annotations

import logging
import warnings
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
