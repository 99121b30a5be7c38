"""The default tokenizer: BPE merges inside morphemes, then the most frequent words joined whole."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from tokenizers import Tokenizer

from fidan.errors import FidanError
from fidan.tokenizer.train import train_tokenizer
from fidan.tokenizer.whole_words import add_whole_words, bpe_pieces, root_pretokens, word_pretokens

TEXT = "Evlerimizden çıktık, Ankara'da 1923'te kitaplarımızı okuduk.\n\tÇocuklar  bahçede oynuyorlardı 😊 «tamam»"


def _merge_ranks(tok: Tokenizer) -> dict:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return {tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}


def test_simulated_bpe_is_what_tokenizers_does(tokenizer_dir, data_dir):
    from fidan.artifacts.datadir import iter_split

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    ranks = _merge_ranks(tok)
    counts = word_pretokens(tok, iter_split(data_dir, "train"))
    words = list(counts)
    random.Random(0).shuffle(words)
    for word in words[:300]:
        ids = tok.model.tokenize(word)
        assert bpe_pieces(word, ranks) == [t.value for t in ids]


def test_joined_words_are_one_token_and_other_words_keep_their_cuts(tokenizer_dir):
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    before = {w: [t.value for t in tok.model.tokenize(w)] for w in ("Ġevlerimizden", "Ġkitaplar", "Ġokuduk")}
    counts = Counter({"Ġevlerimizden": 9, "Ġkitaplar": 5, "Ġçok": 1})
    grown, joined = add_whole_words(tok, counts, budget=100)
    assert joined == 2  # "Ġçok" is seen once, below min_count
    assert grown.get_vocab_size() > tok.get_vocab_size()
    for word in ("Ġevlerimizden", "Ġkitaplar"):
        assert [t.value for t in grown.model.tokenize(word)] == [word]
    assert [t.value for t in grown.model.tokenize("Ġokuduk")] == before["Ġokuduk"]
    # a budget too small for a word's joins skips it, never overshoots
    small, joined = add_whole_words(tok, counts, budget=1)
    assert small.get_vocab_size() - tok.get_vocab_size() <= 1


def test_roots_are_counted_over_the_words_built_on_them_and_capitalized(tokenizer_dir):
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    words = Counter({"evlerimizden": 4, "evde": 6, "ılık": 3, "Ankara'da": 2, "xqz": 9})
    segments = {"evlerimizden": (2, 5, 9), "evde": (2,), "ılık": (), "Ankara'da": (6,), "xqz": None}
    roots = root_pretokens(tok, words, segments, capital_share=0.5)
    as_text = {tok.decoder.decode([r]): n for r, n in roots.items()}
    # ev: 4 + 6 occurrences, its capitalized form half of that; round(1.5) = 2
    assert as_text == {" ev": 10, " Ev": 5, " ılık": 3, " Ilık": 2, " Ankara": 3}
    assert " xqz" not in as_text  # a word the analyzer does not know has no root


@pytest.fixture(scope="module")
def analyzer_cache(tmp_path_factory):
    pytest.importorskip("zemberek")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIDAN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def default_dir(analyzer_cache, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("default") / "tok"
    train_tokenizer(data=str(data_dir), out=str(out), vocab_size=600, whole_words=0.25)
    return out


def test_default_keeps_frequent_words_whole_and_cuts_the_rest_at_morphemes(default_dir, data_dir, tmp_path):
    from fidan.artifacts.datadir import iter_split
    from fidan.text.turkish import words
    from fidan.tokenizer.morph import Segmenter, split_word

    tok = Tokenizer.from_file(str(default_dir / "tokenizer.json"))
    assert 450 < tok.get_vocab_size() <= 600  # the tiny text has too few repeated words to fill it all
    counts = word_pretokens(tok, iter_split(data_dir, "train"))
    frequent = [w for w, n in counts.most_common(20) if n >= 2]
    assert all(len(tok.model.tokenize(w)) == 1 for w in frequent)
    # with no share for roots and whole words every token lies inside a morpheme of a training word
    train_tokenizer(data=str(data_dir), out=str(tmp_path / "w0"), vocab_size=600, whole_words=0, roots=0)
    train_words = {w for doc in iter_split(data_dir, "train") for w in words(doc)}
    segments = Segmenter().segment_many(train_words)
    pieces = {p for w in train_words for p in split_word(w, segments[w])}
    inner = Tokenizer.from_file(str(tmp_path / "w0" / "tokenizer.json"))
    long = [t for t in (inner.decode([i]).strip() for i in range(inner.get_vocab_size())) if len(t) > 1 and t.isalpha()]
    assert len(long) > 50 and all(any(t in p for p in pieces) for t in long)
    # suffixes the analyzer finds in many words are whole tokens of the default
    vocab = tok.get_vocab()
    assert {"lar", "ler"} <= set(vocab)


def test_default_loads_in_transformers_with_the_same_ids_and_round_trips(default_dir):
    from transformers import AutoTokenizer

    tok = Tokenizer.from_file(str(default_dir / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(default_dir))
    for text in (TEXT, "evlerimizden", " ", "<|endoftext|>Merhaba<|endoftext|>", "İSTANBUL'DA ığdır"):
        ids = tok.encode(text).ids
        assert hf(text)["input_ids"] == ids
        assert tok.decode(ids, skip_special_tokens=False) == text == hf.decode(ids)


def test_default_falls_back_to_plain_bpe_without_the_analyzer(data_dir, tmp_path, monkeypatch, capsys):
    import fidan.text.zemberek as zemberek
    from fidan.errors import MissingExtra

    def missing():
        raise MissingExtra("no zemberek")

    monkeypatch.setattr(zemberek, "import_zemberek", missing)
    train_tokenizer(data=str(data_dir), out=str(tmp_path / "d"), vocab_size=400)
    train_tokenizer(data=str(data_dir), out=str(tmp_path / "p"), vocab_size=400, plain=True)
    assert (tmp_path / "d" / "tokenizer.json").read_text() == (tmp_path / "p" / "tokenizer.json").read_text()
    err = capsys.readouterr().err
    assert "plain BPE" in err and "fidan[morph]" in err


def test_contradicting_or_bad_settings_are_refused(data_dir, tmp_path):
    with pytest.raises(FidanError, match="--morph and --plain"):
        train_tokenizer(data=str(data_dir), out=str(tmp_path / "a"), vocab_size=400, morph=True, plain=True)
    with pytest.raises(FidanError, match="--whole-words"):
        train_tokenizer(data=str(data_dir), out=str(tmp_path / "b"), vocab_size=400, whole_words=1.5)


def test_llama_cpp_tokenizes_prose_as_the_default_does(default_dir, tmp_path):
    """GGUF export names llama-bpe's pattern for fidan's Turkish one (docs/gguf.md): the merges, roots and
    whole words included, llama.cpp gives the default's ids on prose without the documented differences."""
    pytest.importorskip("gguf")
    pytest.importorskip("llama_cpp")
    from test_export import make_run
    from test_gguf import SMALL, open_llama

    from fidan.adapt.gguf import export_gguf
    from fidan.model.gpt import config_from_preset

    tok = Tokenizer.from_file(str(default_dir / "tokenizer.json"))
    make_run(tmp_path / "run", default_dir, config_from_preset("qwen3", tok.get_vocab_size(), **SMALL))
    export_gguf(model=str(tmp_path / "run"), out=str(tmp_path / "g"))
    llm = open_llama(tmp_path / "g" / "model.gguf", n_ctx=64, vocab_only=True)
    for text in ("Türkiye Cumhuriyeti yılında kuruldu ve güzel sokaklarında yürüdük, çünkü hava güzeldi.",
                 "Evlerimizden çıktık; kitaplarımızı okuduk.\nÇocuklar bahçede oynuyorlardı."):
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == tok.encode(text).ids
