"""The classification figures, confusion plot and prediction files, and the TF-IDF baseline: it learns,
it saves without pickle and loads to the same probabilities, it lowercases Turkish correctly."""

from __future__ import annotations

import hashlib
import io
import json
import random
import time

import numpy as np
import pytest

pytest.importorskip("sklearn")

from fidan.artifacts.classifier_results import write_predictions
from fidan.classify.metrics import classification_metrics, metrics_table, plot_confusion
from fidan.classify.tfidf import ARRAYS_FILE, JSON_FILE, TfidfClassifier, TfidfSettings
from fidan.errors import BadInput

COOKING = (["Annem", "Aşçı", "Ayşe", "Komşumuz", "Şef"],
           ["fırında", "tencerede", "tavada", "ocakta", "mangalda"],
           ["patlıcan", "mercimek çorbası", "zeytinyağlı fasulye", "börek", "kuzu güveç", "pilav"],
           ["pişirdi", "kızarttı", "haşladı", "soğanla kavurdu", "baharatla tatlandırdı"])
FOOTBALL = (["Kaleci", "Forvet", "Teknik direktör", "Kaptan", "Hakem"],
            ["stadyumda", "derbide", "ikinci yarıda", "uzatmalarda", "deplasmanda"],
            ["penaltıyı", "golü", "korner vuruşunu", "ofsaytı", "serbest vuruşu"],
            ["kurtardı", "attı", "kaçırdı", "itiraz etti", "tribünlere selamladı"])


def _sentences(parts: tuple, n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(p) for p in parts) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def toy():
    """80 made-up sentences of each topic; the first 40 of each train, the rest are held out."""
    rng = random.Random(7)
    cook, foot = _sentences(COOKING, 80, rng), _sentences(FOOTBALL, 80, rng)
    train = (cook[:40] + foot[:40], [0] * 40 + [1] * 40)
    test = (cook[40:] + foot[40:], [0] * 40 + [1] * 40)
    return train, test


@pytest.fixture(scope="module")
def fitted(toy):
    (texts, y), _ = toy
    return TfidfClassifier(["yemek", "futbol"], TfidfSettings()).fit(texts, y, seed=0)


# --- figures --------------------------------------------------------------------------------------------


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    # a: p 2/2 r 2/3 f 0.8 · b: p 1/2 r 1/2 f 1/2 · c: p 1/2 r 1/1 f 2/3
    assert m["accuracy"] == round(4 / 6, 6)
    assert m["macro_f1"] == round((0.8 + 0.5 + 2 / 3) / 3, 6)
    assert m["weighted_f1"] == round((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6, 6)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": round(2 / 3, 6), "f1": 0.8, "support": 3}
    assert m["per_class"]["c"] == {"precision": 0.5, "recall": 1.0, "f1": round(2 / 3, 6), "support": 1}
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]] and m["n"] == 6


def test_confusion_keeps_absent_labels():
    # "b" is never true nor predicted; "d" is predicted but never true
    m = classification_metrics([0, 2, 2], [0, 2, 3], ["a", "b", "c", "d"])
    assert m["confusion"] == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["d"]["precision"] == 0.0 and m["per_class"]["d"]["support"] == 0
    empty = classification_metrics([], [], ["a", "b"])
    empty["confusion"][0][0] = 5  # rows are separate lists
    assert empty["confusion"][1] == [0, 0] and empty["n"] == 0


def test_metrics_table():
    labels = ["spor", "yemek"]
    lines = metrics_table(classification_metrics([0, 1, 1], [0, 1, 0], labels), labels)
    assert lines[0].startswith("| label | precision | recall | F1 | support |")
    assert lines[2] == "| spor | 0.500 | 1.000 | 0.667 | 1 |" and lines[3].startswith("| yemek | 1.000 | 0.500 |")
    assert "accuracy 0.667" in lines[-1] and "macro-F1 0.667" in lines[-1] and "weighted F1" in lines[-1]


def test_plot_confusion_writes_png(tmp_path):
    out = plot_confusion([[5, 1], [0, 3]], ["yemek", "futbol"], tmp_path / "c.png", title="toy")
    assert out == tmp_path / "c.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    many = [f"uzun etiket adı {i}" for i in range(20)]
    grid = np.random.default_rng(0).integers(0, 50, (20, 20)).tolist()
    big = plot_confusion(grid, many, tmp_path / "many.png")
    assert big.stat().st_size > 10_000


def test_write_predictions_round_trip(tmp_path):
    probs = np.array([[0.1234567891, 0.8765432109], [0.9, 0.1]])
    texts = ["Şampiyon kupayı kaldırdı.", "Çorba ılık."]
    write_predictions(tmp_path / "p.jsonl", texts, ["yemek", "futbol"], probs, gold=["futbol", "futbol"])
    raw = (tmp_path / "p.jsonl").read_text(encoding="utf-8")
    assert "Şampiyon" in raw  # not \u escapes
    rows = [json.loads(line) for line in raw.splitlines()]
    assert rows[0] == {"text": texts[0], "label": "futbol", "probs": {"yemek": 0.123457, "futbol": 0.876543},
                       "gold": "futbol"}
    assert rows[1]["label"] == "yemek"
    write_predictions(tmp_path / "q.jsonl", texts, ["yemek", "futbol"], probs)
    assert all("gold" not in json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines())


# --- the TF-IDF baseline --------------------------------------------------------------------------------


def test_tfidf_learns_a_toy_task(toy, fitted):
    _, (texts, y) = toy
    probs = fitted.predict_proba(texts)
    assert probs.shape == (len(texts), 2) and np.allclose(probs.sum(1), 1)
    assert classification_metrics(y, probs.argmax(1).tolist(), fitted.labels)["accuracy"] >= 0.95


def test_tfidf_save_load_predicts_the_same(fitted, tmp_path):
    fitted.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([JSON_FILE, ARRAYS_FILE])
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as npz:  # plain arrays only
        assert set(npz.files) == {"coef", "intercept", "classes"}
    again = TfidfClassifier.load(tmp_path)
    unseen = ["Babam ızgarada köfte pişirdi.", "İSTANBUL derbisinde hakem penaltı verdi!", "", "ıIiİ"]
    assert np.abs(again.predict_proba(unseen) - fitted.predict_proba(unseen)).max() < 1e-9
    assert again.labels == fitted.labels and again.settings == fitted.settings


def test_tfidf_lowercases_turkish():
    texts = ["IŞIK yandı", "ışık söndü", "İstanbul güzel", "istanbul kalabalık"] * 3
    clf = TfidfClassifier(["ışık", "şehir"]).fit(texts, [0, 0, 1, 1] * 3)

    def features(text):
        return [v.transform([text]).toarray() for v in clf.vectorizers]

    for a, b in (("IŞIK", "ışık"), ("İstanbul", "istanbul"), ("İSTANBUL", "istanbul"), ("I\u0307stanbul", "istanbul")):
        fa, fb = features(a), features(b)
        assert fa[0].any() and fa[1].any()
        assert all(np.array_equal(x, z) for x, z in zip(fa, fb, strict=True)), (a, b)
    words = clf.vectorizers[0].vocabulary_
    assert "ışık" in words and "işik" not in words and "i̇stanbul" not in words  # what str.lower would give
    cased = TfidfClassifier(["ışık", "şehir"], TfidfSettings(lowercase=False)).fit(texts, [0, 0, 1, 1] * 3)
    assert "IŞIK" in cased.vectorizers[0].vocabulary_


def test_tfidf_columns_follow_labels(toy, fitted):
    (texts, y), (held, _) = toy
    swapped = TfidfClassifier(["futbol", "yemek"]).fit(texts, [1 - i for i in y])
    assert np.allclose(swapped.predict_proba(held), fitted.predict_proba(held)[:, ::-1], atol=1e-6)
    # a label with no training texts keeps its column, at probability 0
    three = TfidfClassifier(["yemek", "hava", "futbol"]).fit(texts, [2 * i for i in y])
    probs = three.predict_proba(held)
    assert probs.shape == (len(held), 3) and (probs[:, 1] == 0).all() and np.allclose(probs.sum(1), 1)
    assert np.array_equal(probs[:, [0, 2]].argmax(1), fitted.predict_proba(held).argmax(1))
    assert three.predict_proba([]).shape == (0, 3)


def test_tfidf_three_classes_save_load(toy, tmp_path):
    (texts, y), (held, _) = toy
    extra = ["Yarın hava güneşli ve ılık olacak.", "Kuzeyde kar yağışı bekleniyor.", "Rüzgar sert esti."] * 4
    clf = TfidfClassifier(["yemek", "futbol", "hava"]).fit(texts + extra, y + [2] * len(extra))
    clf.save(tmp_path)
    unseen = held[:5] + ["Bu akşam yağmur yağacak."]
    assert np.abs(TfidfClassifier.load(tmp_path).predict_proba(unseen) - clf.predict_proba(unseen)).max() < 1e-9


def _one_line(e: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(e.value)
    return str(e.value)


def test_tfidf_bad_files_name_the_folder(fitted, tmp_path):
    with pytest.raises(BadInput) as e:
        TfidfClassifier.load(tmp_path / "nothing")
    assert str(tmp_path / "nothing") in _one_line(e)
    fitted.save(tmp_path / "m")

    def broken(name: str, change) -> str:
        folder = tmp_path / name
        folder.mkdir()
        for f in (JSON_FILE, ARRAYS_FILE):
            (folder / f).write_bytes((tmp_path / "m" / f).read_bytes())
        change(folder)
        with pytest.raises(BadInput, match="no readable TF-IDF model") as e:
            TfidfClassifier.load(folder)
        assert str(folder) in _one_line(e)
        return str(e.value)

    broken("truncated", lambda f: (f / ARRAYS_FILE).write_bytes((f / ARRAYS_FILE).read_bytes()[:100]))
    broken("not-json", lambda f: (f / JSON_FILE).write_text("{", encoding="utf-8"))
    broken("no-arrays", lambda f: (f / ARRAYS_FILE).unlink())

    def pickled(f):  # an object array needs pickle to load, and is refused
        buf = io.BytesIO()
        np.savez(buf, coef=np.array([{"x": 1}], dtype=object), intercept=np.zeros(1), classes=np.arange(2))
        (f / ARRAYS_FILE).write_bytes(buf.getvalue())

    broken("pickled", pickled)

    def short_idf(f):
        meta = json.loads((f / JSON_FILE).read_text(encoding="utf-8"))
        meta["vectorizers"][0]["idf"] = meta["vectorizers"][0]["idf"][:-1]
        (f / JSON_FILE).write_text(json.dumps(meta), encoding="utf-8")

    broken("short-idf", short_idf)

    def wide_coef(f):
        with np.load(f / ARRAYS_FILE, allow_pickle=False) as npz:
            a = dict(npz)
        buf = io.BytesIO()
        np.savez(buf, **{**a, "coef": np.zeros((1, a["coef"].shape[1] + 1))})
        (f / ARRAYS_FILE).write_bytes(buf.getvalue())

    assert "do not fit" in broken("wide-coef", wide_coef)


def test_tfidf_fit_bad_input():
    clf = TfidfClassifier(["a", "b"])
    with pytest.raises(BadInput, match="at least two labels"):
        clf.fit(["bir", "iki"], [0, 0])
    with pytest.raises(BadInput, match="2 texts but 3 labels"):
        clf.fit(["bir", "iki"], [0, 1, 1])
    with pytest.raises(BadInput, match="label indices"):
        clf.fit(["bir", "iki"], [0, 2])
    with pytest.raises(BadInput, match="no features"):
        TfidfClassifier(["a", "b"], TfidfSettings(char_ngrams=None)).fit(["!", "?"], [0, 1])
    with pytest.raises(BadInput, match="word or character n-grams"):
        TfidfClassifier(["a", "b"], TfidfSettings(word_ngrams=None, char_ngrams=None))


# --- real data ------------------------------------------------------------------------------------------


def test_tfidf_tells_treebank_sections_apart():
    """Wikipedia vs web sentences of the Turkish Web Treebank; default settings measured macro-F1 0.871."""
    pytest.importorskip("turkish_treebanks")
    from fidan.text.bundled import treebank_sentences

    labels = ["wiki", "web"]
    rows = list(treebank_sentences())

    def held_out(text: str) -> bool:  # a stable 20% by content, the same on every machine
        return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 5 == 0

    train = [r for r in rows if not held_out(r["text"])]
    test = [r for r in rows if held_out(r["text"])]
    t0 = time.perf_counter()
    clf = TfidfClassifier(labels).fit([r["text"] for r in train], [labels.index(r["section"]) for r in train])
    fit_s = time.perf_counter() - t0
    pred = clf.predict_proba([r["text"] for r in test]).argmax(1).tolist()
    m = classification_metrics([labels.index(r["section"]) for r in test], pred, labels)
    print(f"treebank wiki/web: {len(train)} train, {len(test)} held out, macro-F1 {m['macro_f1']:.3f}, "
          f"fit {fit_s:.1f} s")
    assert m["macro_f1"] > 0.8
