"""Near-duplicate removal in `fidan data prepare --near-dup`: planted edited copies of real Turkish sentences
are found, other sentences are kept, and the manifest says what was done."""

from __future__ import annotations

import json
import random

import pytest

from fidan.artifacts.datadir import iter_split
from fidan.corpus.prepare import prepare_data
from fidan.errors import FidanError
from fidan.text.bundled import treebank_sentences
from fidan.text.turkish import normalize_text


def _edit(doc: str, rng: random.Random, vocab: list[str]) -> str:
    words = doc.split()
    for i in rng.sample(range(len(words)), max(1, round(len(words) * rng.uniform(0.05, 0.20)))):
        op = rng.random()
        words[i] = rng.choice(vocab) if op < 0.5 else "" if op < 0.75 else f"{words[i]} {rng.choice(vocab)}"
    return normalize_text(" ".join(w for w in words if w))


def test_planted_near_duplicates_are_found_and_others_kept(tmp_path):
    docs = list(dict.fromkeys(normalize_text(d["text"]) for d in treebank_sentences(("wiki",))))
    docs = [d for d in docs if len(d.split()) >= 8][:800]
    rng = random.Random(3)
    vocab = [w for d in docs for w in d.split()]
    copies = [c for c in (_edit(docs[i], rng, vocab) for i in rng.sample(range(len(docs)), 80)) if c not in docs]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs + copies), "utf-8")
    m = prepare_data(source=[str(src)], out=str(tmp_path / "d"), val_fraction=0.1, near_dup=0.5)
    kept = {d for s in ("train", "val") for d in iter_split(tmp_path / "d", s)}
    recall = sum(c not in kept for c in copies) / len(copies)
    lost = sum(d not in kept for d in docs) / len(docs)
    assert recall >= 0.9 and lost <= 0.02, (recall, lost)
    assert m["dropped"]["near_duplicates"] == len(docs) + len(copies) - len(kept) - m["dropped"]["low_quality"]
    assert m["cleaning"]["near_dup"]["threshold"] == 0.5
    plain = prepare_data(source=[str(src)], out=str(tmp_path / "e"), val_fraction=0.1)
    assert "near_duplicates" not in plain["dropped"]  # off unless asked for


def test_near_dup_threshold_is_checked(tmp_path):
    with pytest.raises(FidanError, match=r"--near-dup must be in \(0, 1\)"):
        prepare_data(source=["tr-treebank"], out=str(tmp_path / "d"), near_dup=1.5)
    assert not (tmp_path / "d").exists()
