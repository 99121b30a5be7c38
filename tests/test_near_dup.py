"""Near-duplicate removal in `fidan data prepare` (on by default, `--near-dup 0` off): planted edited copies
of real Turkish sentences are found, other sentences are kept, and the manifest says what was done; the
MinHash estimates Jaccard similarity without bias, the same in batches as one by one."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from fidan.artifacts.datadir import iter_split
from fidan.cli import main
from fidan.corpus.neardup import DEFAULT_THRESHOLD, SHINGLE, MinHasher, NearDuplicates
from fidan.corpus.prepare import prepare_data
from fidan.errors import FidanError
from fidan.text.bundled import treebank_sentences
from fidan.text.turkish import lower_tr, normalize_text


def _edit(doc: str, rng: random.Random, vocab: list[str]) -> str:
    """About a tenth of the words substituted, deleted or followed by an inserted word (as the benchmark)."""
    words = doc.split()
    for i in rng.sample(range(len(words)), max(1, round(len(words) * 0.1))):
        op = rng.randrange(3)
        words[i] = rng.choice(vocab) if op == 0 else "" if op == 1 else f"{words[i]} {rng.choice(vocab)}"
    return normalize_text(" ".join(w for w in words if w))


def _sentences() -> list[str]:
    docs = list(dict.fromkeys(normalize_text(d["text"]) for d in treebank_sentences(("wiki",))))
    return [d for d in docs if len(d.split()) >= 8][:800]


def test_planted_near_duplicates_are_found_and_others_kept(tmp_path):
    docs = _sentences()
    rng = random.Random(3)
    vocab = [w for d in docs for w in d.split()]
    copies = [c for c in (_edit(docs[i], rng, vocab) for i in rng.sample(range(len(docs)), 80)) if c not in docs]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs + copies), "utf-8")
    m = prepare_data(source=[str(src)], out=str(tmp_path / "d"), val_fraction=0.1)  # on by default
    kept = {d for s in ("train", "val") for d in iter_split(tmp_path / "d", s)}
    recall = sum(c not in kept for c in copies) / len(copies)
    lost = sum(d not in kept for d in docs) / len(docs)
    assert recall >= 0.9 and lost <= 0.02, (recall, lost)
    assert m["dropped"]["near_duplicates"] == len(docs) + len(copies) - len(kept) - m["dropped"]["low_quality"]
    assert m["cleaning"]["near_dup"]["threshold"] == DEFAULT_THRESHOLD
    assert m["cleaning"]["near_dup"]["clusters"] >= 0.8 * m["dropped"]["near_duplicates"]
    assert main(["data", "prepare", "--source", str(src), "--out", str(tmp_path / "e"), "--val-fraction", "0.1",
                 "--near-dup", "0"]) == 0
    off = json.loads((tmp_path / "e" / "manifest.json").read_text("utf-8"))
    assert "near_duplicates" not in off["dropped"] and "near_dup" not in off["cleaning"]
    assert off["splits"]["train"]["documents"] + off["splits"]["val"]["documents"] > len(kept)


def _jaccard(a: str, b: str) -> float:
    a, b = lower_tr(a), lower_tr(b)
    sa, sb = ({t[i:i + SHINGLE] for i in range(max(1, len(t) - SHINGLE + 1))} for t in (a, b))
    return len(sa & sb) / len(sa | sb)


def test_minhash_estimates_jaccard_and_batches_agree():
    docs = _sentences()[:200]
    rng = random.Random(5)
    vocab = [w for d in docs for w in d.split()]
    pairs = [(d, _edit(d, rng, vocab)) for d in docs]
    hasher = MinHasher()
    sigs = hasher.signatures([t for pair in pairs for t in pair])
    estimate = (sigs[0::2] == sigs[1::2]).mean(axis=1)
    error = estimate - np.array([_jaccard(a, b) for a, b in pairs])
    assert abs(error.mean()) < 0.015 and np.abs(error).mean() < 0.05, (error.mean(), np.abs(error).mean())
    assert (np.stack([hasher.signature(t) for t in ("", "kısa", docs[0])])
            == hasher.signatures(["", "kısa", docs[0]])).all()  # a batch is the same as one at a time
    assert (MinHasher().signatures(docs[:5]) == sigs[0:10:2]).all()  # fixed hash functions: any process


def test_near_duplicates_in_order_keep_the_first():
    hasher = MinHasher()
    a = "Ankara'da kış soğuk geçer; İzmir'de ise hava ılıktır, denize girilir ve balık tutulur."
    texts = ["Kütüphanedeki kitapların çoğu Osmanlıca ve Türkçe yazılmıştı, dedi öğretmen.", a,
             a.replace("ılıktır", "sıcaktır"), a.replace("balık", "midye")]
    nd = NearDuplicates(DEFAULT_THRESHOLD)
    assert nd.find(hasher.signatures(texts), record=True).tolist() == [False, False, True, True]
    assert nd.matches == {2: 1, 3: 1} and nd.removed == 2 and nd.clusters == 1


@pytest.mark.parametrize("bad", [1.5, 1.0, -0.2])
def test_near_dup_threshold_is_checked(tmp_path, bad):
    with pytest.raises(FidanError, match=r"--near-dup must be in \(0, 1\).*or 0 to turn it off"):
        prepare_data(source=["tr-treebank"], out=str(tmp_path / "d"), near_dup=bad)
    assert not (tmp_path / "d").exists()
