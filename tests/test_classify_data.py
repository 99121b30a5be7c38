"""Labelled data for `fidan classify`: formats, column and line errors, the stratified split, label checks."""

from __future__ import annotations

import json

import pytest

from fidan.classify.data import (
    Labelled,
    check_labels,
    classify_data,
    label_names,
    load_splits,
    read_labelled,
    split_labelled,
)
from fidan.classify.metrics import classification_metrics
from fidan.classify.tfidf import TfidfClassifier, TfidfSettings
from fidan.errors import BadInput, FidanError

ROWS = [{"metin": f"Cümle {i} çok güzel.", "etiket": "olumlu" if i % 3 else "olumsuz"} for i in range(30)]


def test_formats_read_the_same(tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    for name, delim in (("d.csv", ","), ("d.tsv", "\t")):
        with open(tmp_path / name, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, ["metin", "etiket"], delimiter=delim)
            w.writeheader()
            w.writerows(ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    read = [read_labelled(tmp_path / n, "metin", "etiket") for n in ("d.jsonl", "d.csv", "d.tsv", "d.parquet")]
    assert all(r.texts == read[0].texts and r.labels == read[0].labels for r in read)
    assert read[0].counts() == {"olumlu": 20, "olumsuz": 10}


def test_bad_files_say_what_and_where(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"no label column 'etiket'; its columns are: text, label \(pass --label-column\)"):
        read_labelled(good, label_column="etiket")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label"\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.jsonl:2: not valid JSON"):
        read_labelled(bad)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\nçok güzel,x\n".encode("latin-1"))
    with pytest.raises(BadInput, match="not UTF-8"):
        read_labelled(latin)
    (tmp_path / "empty.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(BadInput, match="holds no texts"):
        read_labelled(tmp_path / "empty.jsonl")
    with pytest.raises(BadInput, match="not found"):
        read_labelled(tmp_path / "nope.csv")
    nolabel = tmp_path / "nolabel.jsonl"
    nolabel.write_text('{"text": "a", "label": ""}\n', encoding="utf-8")
    with pytest.raises(BadInput, match="nolabel.jsonl:1: empty label"):
        read_labelled(nolabel)


def test_split_is_stratified_and_seeded():
    data = Labelled([f"t{i}" for i in range(200)], ["a" if i < 150 else "b" for i in range(200)] )
    one = split_labelled(data, 0.1, 0.2, seed=1)
    assert one["test"].counts() == {"a": 30, "b": 10} and one["val"].counts() == {"a": 15, "b": 5}
    assert split_labelled(data, 0.1, 0.2, seed=1)["test"].texts == one["test"].texts
    assert split_labelled(data, 0.1, 0.2, seed=2)["test"].texts != one["test"].texts
    tiny = split_labelled(Labelled(["x", "y", "z", "w"], ["a", "a", "a", "b"]), 0.3, 0.3, seed=0)
    assert "b" in tiny["train"].labels  # a class of one stays in training
    with pytest.raises(BadInput, match="below 1"):
        split_labelled(data, 0.5, 0.5, seed=0)


def test_label_checks():
    with pytest.raises(BadInput, match="only one label"):
        label_names(Labelled(["a", "b"], ["x", "x"]))
    with pytest.raises(BadInput, match="label 'z' appears in the held-out data but never in the training data"):
        label_names(Labelled(["a", "b"], ["x", "y"]), [Labelled(["c"], ["z"])])
    with pytest.raises(BadInput, match="label 'q' in f.csv is not one the model knows"):
        check_labels(["x", "q"], ["x", "y"], "f.csv")


def test_given_files_are_not_split_again(tmp_path):
    classify_data(source=str(_write(tmp_path / "all.jsonl", 60)), out=str(tmp_path / "split"), seed=3)
    splits, _ = load_splits(str(tmp_path / "split"), None, None, "text", "label", 0.1, 0.1, 3)
    on_disk = {s: read_labelled(tmp_path / "split" / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert all(splits[s].texts == on_disk[s].texts for s in on_disk)
    with pytest.raises(FidanError, match="already exists"):
        classify_data(source=str(tmp_path / "all.jsonl"), out=str(tmp_path / "split"))


def _write(path, n):
    path.write_text("".join(json.dumps({"text": f"metin {i}", "label": "ab"[i % 2]}) + "\n" for i in range(n)),
                    encoding="utf-8")
    return path


def test_metrics_by_hand():
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], ["a", "b", "c"])
    # a: p 1/2 r 1/2 f 1/2; b: p 2/3 r 1 f 0.8; c: p 1 r 1/2 f 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-6)
    assert m["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    absent = classification_metrics([0, 1], [0, 1], ["a", "b", "c"])
    assert absent["confusion"][2] == [0, 0, 0] and absent["per_class"]["c"]["support"] == 0


def test_tfidf_saves_without_pickle_and_lowercases_turkish(tmp_path):
    texts = ["IŞIK yandı", "ışık söndü", "İstanbul güzel", "istanbul kalabalık"] * 5
    y = [0, 0, 1, 1] * 5
    clf = TfidfClassifier(["ışık", "şehir"], TfidfSettings(char_ngrams=None)).fit(texts, y)
    vocab = clf.vectorizers[0].vocabulary_
    assert "ışık" in vocab and "işik" not in vocab  # str.lower would make "IŞIK" into "işik"
    assert "istanbul" in vocab and "i̇stanbul" not in vocab  # ... and "İstanbul" into "i̇stanbul" (i + dot)
    clf.save(tmp_path)
    assert not any(p.suffix in (".pkl", ".joblib") for p in tmp_path.iterdir())
    again = TfidfClassifier.load(tmp_path)
    new = ["ışıklar yanıyor", "İSTANBUL'da yağmur"]
    assert (abs(again.predict_proba(new) - clf.predict_proba(new)) < 1e-12).all()
    with pytest.raises(BadInput, match="no readable TF-IDF model"):
        TfidfClassifier.load(tmp_path / "nothing")
