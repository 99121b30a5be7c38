"""Encoding by pre-token (the fast path of `fidan tokenizer encode`) gives exactly the tokenizer's ids,
on Turkish text and on text built to catch it out: added tokens written in the text, exotic whitespace,
combining marks, digits of other scripts, letters newer than one of the two regex engines knows."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fidan.artifacts import pretoken_cache
from fidan.artifacts.datadir import iter_split
from fidan.artifacts.pretoken_cache import PretokenEncoder
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.tokenizer.train import train_tokenizer

TRICKY = [
    "Ankara'da 2023'te, İstanbul’da 1.500.000 kişi… “Evet!”",
    "metin içinde <|endoftext|> yazılı ve<|endoftext|>bitişik",
    "boşluklar:   üç,\t\tiki sekme,\u00a0bölünmez, \u2003em, \u3000ideografik, \u200bsıfır genişlik",
    "satırlar\n\n\n  girintili\r\n\r\nCRLF\u2028ayraç\u0085NEL\u000bVT\u000cFF",
    "birleşik i\u0307 ve a\u0300\u0301 işaretler, \u0301başta",
    "rakamlar ١٢٣ ۴۵۶ ०१२ ①② ½ Ⅻ 𝟙𝟚",
    "yeni harfler: \U0001e4d0\U0001e4d1 (Nag Mundari) \U00011f04 (Kawi) \U00010d4a (Garay) \U0001e5d0",
    "emoji 👩‍👩‍👧 🇹🇷 ve işaretler ©®™ §¶ ∑∫ ﷽",
    "Кириллица, العربية, 中文字符, 한국어, ελληνικά, עברית",
    "  \n",
    " ",
    "a",
]


def random_texts(n: int, seed: int = 0) -> list[str]:
    pool = list("abcçdefgğhıijklmnoöprsştuüvyzAİÖÜ0123456789 ,.'’!?-\n\t") + [ch for t in TRICKY for ch in t]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chars = [rng.choice(pool) if rng.random() < 0.9 else chr(rng.randrange(0x20, 0x30000)) for _ in
                 range(rng.randrange(1, 80))]
        out.append("".join(c for c in chars if not 0xD800 <= ord(c) < 0xE000))
    return out


def reference(tokenizer, docs, dtype) -> list[bytes]:
    return [np.asarray(tokenizer.encode(d, add_special_tokens=False).ids, dtype=dtype).tobytes() for d in docs]


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


def test_same_ids_as_the_tokenizer(tok, data_dir):
    docs = list(iter_split(data_dir, "train")) + TRICKY + random_texts(3000)
    enc = PretokenEncoder(tok.tokenizer, np.uint16)
    assert enc(docs) == reference(tok.tokenizer, docs, np.uint16)
    again = enc(docs[::-1])  # now from the dictionary
    assert again == reference(tok.tokenizer, docs[::-1], np.uint16)
    assert "\n" in enc.good and "a" in enc.good


def test_an_added_token_in_the_text_is_matched_as_the_tokenizer_does(tok):
    enc = PretokenEncoder(tok.tokenizer, np.uint16)
    (ids,) = enc(["önce<|endoftext|>sonra"])
    assert tok.eos_id in np.frombuffer(ids, np.uint16).tolist()


def test_a_full_dictionary_is_emptied_and_ids_stay_the_same(tok, data_dir, monkeypatch):
    monkeypatch.setattr(pretoken_cache, "MAX_ENTRIES", 50)
    docs = list(iter_split(data_dir, "train"))[:200]
    enc = PretokenEncoder(tok.tokenizer, np.uint16)
    got = [b for i in range(0, len(docs), 20) for b in enc(docs[i:i + 20])]
    assert got == reference(tok.tokenizer, docs, np.uint16)
    assert len(enc.ids) <= 50 + max(len(set(enc.split.findall(" ".join(docs[i:i + 20])))) for i in range(0, 200, 20))


@pytest.mark.parametrize("pretokenizer,handled", [("turkish-digits", True), ("bytelevel", False)])
def test_which_tokenizers_take_the_fast_path(data_dir, tmp_path, pretokenizer, handled):
    out = train_tokenizer(data=str(data_dir), out=str(tmp_path / "t"), vocab_size=300, pretokenizer=pretokenizer)
    tokenizer = load_tokenizer(out).tokenizer
    assert PretokenEncoder.handles(tokenizer) is handled
    if handled:
        docs = list(iter_split(data_dir, "val")) + TRICKY + random_texts(500, seed=1)
        assert PretokenEncoder(tokenizer, np.uint16)(docs) == reference(tokenizer, docs, np.uint16)
    else:
        with pytest.raises(ValueError):
            PretokenEncoder(tokenizer, np.uint16)


def test_a_normalizer_turns_the_fast_path_off(tok):
    from tokenizers import Tokenizer, normalizers

    tokenizer = Tokenizer.from_str(tok.tokenizer.to_str())
    tokenizer.normalizer = normalizers.NFKC()
    assert not PretokenEncoder.handles(tokenizer)


def test_a_letter_the_engines_disagree_on_sends_its_document_to_the_tokenizer(tok):
    """`regex` knows newer Unicode than Oniguruma (Armenian U+0558, for one, is a letter only to `regex`):
    split by `regex`, ``\u0558'da`` would be ``\u0558`` + ``'da``, where the tokenizer has ``\u0558'`` + ``da``."""
    enc = PretokenEncoder(tok.tokenizer, np.uint16)
    ids = enc.encode

    def split_by_regex(doc: str) -> list[int]:
        return [i for p in enc.split.findall(doc) for e in ids([p], add_special_tokens=False) for i in e.ids]

    def doc_with(ch: str) -> str:
        return f"Ankara{ch}'da ve kelime{ch}kelime"

    newer = next((chr(cp) for cp in range(0x80, 0x30000) if not 0xD800 <= cp < 0xE000 and not enc._agree(chr(cp))
                  and split_by_regex(doc_with(chr(cp))) != tok.tokenizer.encode(doc_with(chr(cp))).ids), None)
    if newer is None:
        pytest.skip("this tokenizers and regex agree on every character")
    docs = ["önce bir kelime", doc_with(newer), newer, "sonra bir kelime"]
    assert enc(docs) == reference(tok.tokenizer, docs, np.uint16)
    assert newer in enc.bad and not any(newer in p for p in enc.ids)
