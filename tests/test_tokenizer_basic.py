"""Byte-level BPE: exact round trip for every string, HF compatibility, token files for training."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fidan.artifacts.datadir import iter_split
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.artifacts.tokens import TokenSplit, encode_splits
from fidan.errors import FidanError
from fidan.tokenizer.train import train_tokenizer

HARD = [
    "",
    " ",
    "İSTANBUL'DA ılık bir ığdır akşamı; Iğdır, İzmir, ıspanak.",
    "Ağaç, göç, şüphe, öğün, çığlık: ĞÜŞİÖÇ ğüşiöç",
    "emoji 🇹🇷👍🏽 ve 👨‍👩‍👧 aile",
    "e\u0301 combining, i\u0307 dotted, NFD: " + "ş".encode().decode() + "s\u0327",
    "  çok   boşluk\t\tsekme\n\n\nsatırlar  \r\n",
    "<|endoftext|> özel belirteç metin içinde",
    "\x00\x1f kontrol karakterleri \ufeff",
]


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


@pytest.mark.parametrize("text", HARD)
def test_round_trip_hard_cases(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
       | st.text(alphabet="abcçdefgğhıijklmnoöprsştuüvyzİIÇĞÖŞÜ '’.,\n0123456789", max_size=80))
def test_round_trip_any_string(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_autotokenizer_loads_and_encodes_identically(tok, tokenizer_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert len(hf) == tok.vocab_size
    for text in HARD + ["Türkiye'nin başkenti Ankara'dır."]:
        ids = hf.encode(text, add_special_tokens=False)
        assert ids == tok.encode(text)
        assert hf.decode(ids) == text
    assert hf.eos_token == "<|endoftext|>"


def test_common_words_are_learned(tok, data_dir, tmp_path):
    # On a corpus that repeats these words, each morpheme is a single token (with its leading space): the
    # default cuts the inflected word at its suffix, --plain BPE learns it whole.
    for word in [" ve", " Ankara"]:
        assert len(tok.encode(word)) == 1, word
    if importlib.util.find_spec("zemberek"):  # the default is morphology-aware where the analyzer is installed
        assert [tok.decode([i]) for i in tok.encode(" numarası")] == [" numara", "sı"]
    train_tokenizer(data=str(data_dir), out=str(tmp_path / "p"), vocab_size=400, plain=True)
    assert len(load_tokenizer(tmp_path / "p").encode(" numarası")) == 1


def test_token_files_round_trip(tok, data_dir):
    folder = encode_splits(data_dir, tok)
    split = TokenSplit(folder, "val")
    assert split.tokens.dtype == np.uint16
    docs = list(iter_split(data_dir, "val"))
    expected = []
    for d in docs:
        expected += tok.encode(d) + [tok.eos_id]
    assert split.tokens.tolist() == expected
    # Bits per byte needs the byte length of every token: it must add up to the text's bytes.
    tb = tok.token_bytes()
    assert int(tb[np.asarray(split.tokens)].sum()) == sum(len(d.encode()) for d in docs)
    assert tb[tok.eos_id] == 0


def test_encoding_is_cached_per_tokenizer(tok, data_dir):
    first = encode_splits(data_dir, tok)
    stamp = (first / "train.bin").stat().st_mtime_ns
    assert encode_splits(data_dir, tok) == first
    assert (first / "train.bin").stat().st_mtime_ns == stamp


def test_vocab_size_validated(data_dir, tmp_path):
    with pytest.raises(FidanError, match="--vocab-size"):
        train_tokenizer(data=str(data_dir), out=str(tmp_path / "t"), vocab_size=10)


def test_not_a_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FidanError, match="not a fidan data folder"):
        train_tokenizer(data=str(tmp_path / "empty"), out=str(tmp_path / "t"))


def test_bad_tokenizer_file(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "tokenizer.json").write_text("{broken")
    with pytest.raises(FidanError, match="not a valid tokenizer.json"):
        load_tokenizer(tmp_path / "t")


def test_a_vocabulary_the_text_cannot_fill_is_warned_about(tmp_path, data_dir, capsys):
    from fidan.tokenizer.train import train_tokenizer

    train_tokenizer(data=str(data_dir), out=str(tmp_path / "big"), vocab_size=8000)
    err = capsys.readouterr().err
    assert "warning: --vocab-size 8,000 asked" in err and "give more text" in err
    train_tokenizer(data=str(data_dir), out=str(tmp_path / "small"), vocab_size=300)
    assert "warning" not in capsys.readouterr().err
