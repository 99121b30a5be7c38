"""Choosing the tokens `fidan vocab extend` adds: by tokens saved across the data's sources (``--select
balanced``, the default) against pooled frequency (``--select frequency``), on tiny data built here."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from fidan.adapt.extend import extend_vocab
from fidan.adapt.vocab import extend_tokenizer, learn_extension
from fidan.adapt.vocab_select import sampled, select_extension
from fidan.artifacts.datadir import iter_split_sources
from fidan.corpus.prepare import prepare_data
from fidan.errors import FidanError

pytest.importorskip("transformers")
from tests.test_adapt import tiny_hf  # noqa: E402

SEA = ["Balıkçılar sabahleyin teknelerini denize açtılar ve ağlarını topladılar.",
       "Denizciler fırtınadan korkmadan limandaki gemilerine koştular."]


@pytest.fixture(scope="module")
def two_kinds(tmp_path_factory, corpus_file):
    """A data folder of two sources: the shared test corpus (large) and a few sea stories (small)."""
    root = tmp_path_factory.mktemp("kinds")
    sea = root / "sea.jsonl"
    sea.write_text("".join(json.dumps({"text": f"{SEA[i % 2]} {SEA[(i + 1) % 2]} Hikâye {i}."}, ensure_ascii=False)
                           + "\n" for i in range(16)), encoding="utf-8")
    prepare_data(source=[str(corpus_file), str(sea)], out=str(root / "d"), val_fraction=0.1, near_dup=0,
                 quality=False)
    return root / "d", str(sea), str(corpus_file)


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer_dir):
    vocab = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()
    return tiny_hf(tmp_path_factory.mktemp("hf") / "base", tokenizer_dir, vocab)


def test_balanced_selection_serves_the_small_source_too(two_kinds, base, tmp_path):
    data, sea, corpus = two_kinds
    docs = list(iter_split_sources(data, "train"))
    assert {s for s, _ in docs} == {sea, corpus}  # each document remembers its --source
    sea_text = [t for s, t in docs if s == sea]
    cost = {}
    for select in ("balanced", "frequency"):
        out = tmp_path / select
        record = extend_vocab(base=str(base), data=str(data), add=20, out=str(out), select=select, compare=False,
                              eval_docs=4, quiet=True)
        assert record["select"] == select and len(record["new_ids"]) == 20
        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        cost[select] = sum(len(tok.encode(t).ids) for t in sea_text)
    # pooled frequency spends the 20 tokens on the large source; the balanced rule saves on the sea stories
    assert cost["balanced"] < 0.95 * cost["frequency"], cost


def test_sample_chars_limits_what_the_tokens_are_chosen_on(two_kinds, base, tmp_path):
    data = two_kinds[0]
    with pytest.raises(FidanError, match="supplies only"):  # 60 characters a source cannot supply 20 tokens
        extend_vocab(base=str(base), data=str(data), add=20, out=str(tmp_path / "x"), sample_chars=60,
                     compare=False, quiet=True)
    record = extend_vocab(base=str(base), data=str(data), add=20, out=str(tmp_path / "y"), compare=False,
                          eval_docs=4, quiet=True)
    assert record["select"] == "balanced" and record["sample_chars"] == 4_000_000  # the defaults


def char_tokenizer(chars: str) -> Tokenizer:
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


def test_a_token_every_source_uses_beats_one_that_a_single_source_uses_more():
    tok = char_tokenizer("abqruvwxyz")
    sources = {"one": ["xy " * 60], "two": ["zw " * 20 + "uv " * 40], "three": ["zw " * 20 + "qr " * 40]}
    pooled = learn_extension(tok, [t for texts in sources.values() for t in texts], 1)
    assert [t.token for t in pooled.new_tokens] == ["xy"]  # the most frequent pair
    chosen = select_extension(tok, sources, 1, candidates=4)
    assert [t.token for t in chosen.new_tokens] == ["zw"]  # saves in two sources of three, not in one
    extended, ids = extend_tokenizer(tok, chosen)
    assert extended.encode("zw xy").tokens == ["zw", "x", "y"] and ids == [tok.get_vocab_size()]


def test_select_prunes_to_the_budget_and_keeps_what_new_tokens_are_built_from(tokenizer_dir, data_dir):
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    groups = {"all": [t for _, t in iter_split_sources(data_dir, "train")]}
    ext = select_extension(tok, groups, 25)
    assert len(ext.new_tokens) == 25
    vocab = set(tok.get_vocab()) | {t.token for t in ext.new_tokens}
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in ext.merges)  # a valid extension
    extended, _ = extend_tokenizer(tok, ext)
    for text in groups["all"][:20]:
        assert extended.decode(extended.encode(text).ids) == text


def test_sample_caps_each_source():
    docs = [("a", "x" * 30), ("a", "y" * 30), ("b", "z" * 10), ("a", "w" * 5)]
    assert list(sampled(docs, 40)) == [("a", "x" * 30), ("a", "y" * 10), ("b", "z" * 10)]
    assert list(sampled(docs, 0)) == docs
