"""Labelled data for `fidan classify`: formats, column and line errors, the stratified split, label checks."""

from __future__ import annotations

import gzip
import io
import json
import sys
import types

import pyarrow as pa
import pyarrow.parquet as pq
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

    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    for name, delim in (("d.csv", ","), ("d.tsv", "\t")):
        with open(tmp_path / name, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, ["metin", "etiket"], delimiter=delim)
            w.writeheader()
            w.writerows(ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    (tmp_path / "d.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    with gzip.open(tmp_path / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write((tmp_path / "d.jsonl").read_text(encoding="utf-8"))
    excel = "\ufeffmetin;etiket\r\n" + "".join(f"{r['metin']};{r['etiket']}\r\n" for r in ROWS)  # Turkish Excel
    (tmp_path / "excel.csv").write_bytes(excel.encode("utf-8"))
    names = ("d.jsonl", "d.csv", "d.tsv", "d.parquet", "d.json", "d.jsonl.gz", "excel.csv")
    read = [read_labelled(tmp_path / n, "metin", "etiket") for n in names]
    assert all(r.texts == read[0].texts and r.labels == read[0].labels for r in read)
    assert read[0].counts() == {"olumlu": 20, "olumsuz": 10}
    numbers = tmp_path / "n.jsonl"  # labels are strings, whatever the file stored
    numbers.write_text('{"text": "a", "label": 1}\n{"text": " ", "label": 0}\n{"text": "b", "label": 0.0}\n',
                       encoding="utf-8")
    got = read_labelled(numbers)
    assert got.labels == ["1", "0"] and got.skipped == 1


def test_unlabelled_text_lines_and_stdin(tmp_path, monkeypatch):
    (tmp_path / "t.txt").write_text("\ufeffbir\n\n  \niki üç\n", encoding="utf-8")
    got = read_labelled(tmp_path / "t.txt", label_column=None)
    assert got.texts == ["bir", "iki üç"] and got.labels == []
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("şu\nbu\n".encode()), encoding="utf-8"))
    assert read_labelled("-", label_column=None).texts == ["şu", "bu"]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xfe\n"), encoding="utf-8"))
    with pytest.raises(BadInput, match="standard input, line 2: not UTF-8"):
        read_labelled("-", label_column=None)
    with pytest.raises(BadInput, match="a .txt file holds texts without labels"):
        read_labelled(tmp_path / "t.txt")


def test_bad_files_say_what_and_where(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"no label column 'etiket'; its columns are: text, label \(pass --label-column\)"):
        read_labelled(good, label_column="etiket")
    csv_file = tmp_path / "data.csv"
    csv_file.write_text("metin,etiket\nçok güzel,x\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"^\S*data.csv has no text column 'text'; its columns are: metin, etiket "
                                       r"\(pass --text-column\)$"):
        read_labelled(csv_file)
    pq.write_table(pa.Table.from_pylist([{"metin": "a", "etiket": "x"}]), tmp_path / "d.parquet")
    with pytest.raises(BadInput, match=r"no label column 'label'; its columns are: metin, etiket"):
        read_labelled(tmp_path / "d.parquet", "metin")
    later = tmp_path / "later.jsonl"
    later.write_text('{"text": "a", "label": "x"}\n\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"later.jsonl:3 has no label column 'label'; its columns are: text"):
        read_labelled(later)
    (tmp_path / "list.jsonl").write_text('["a", "x"]\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"list.jsonl:1: a list, not an object"):
        read_labelled(tmp_path / "list.jsonl")
    (tmp_path / "wide.csv").write_text('text,label\n"a, b",x\na, b,x\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"wide.csv:3: 3 fields where the header has 2; quote"):
        read_labelled(tmp_path / "wide.csv")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label"\n', encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.jsonl:2: not valid JSON"):
        read_labelled(bad)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\nçok güzel,x\n".encode("cp1254"))
    with pytest.raises(BadInput, match=r"latin.csv:2: not UTF-8 text \(byte 0xe7\); re-save the file as UTF-8"):
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
    with pytest.raises(BadInput, match="is a folder without train.jsonl"):
        read_labelled(tmp_path)


def test_hub_failure_is_one_line(monkeypatch):
    def offline(name, split):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(BadInput) as e:
        read_labelled("hf:someone/reviews:test")
    assert "\n" not in str(e.value) and "cannot load hf:someone/reviews:test (ConnectionError: Couldn't" in str(e.value)
    with pytest.raises(BadInput, match="name a data set"):
        read_labelled("hf:")


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
    with pytest.raises(BadInput, match=r"--val-fraction must be in \[0, 1\)"):
        split_labelled(data, -0.1, 0.2, seed=0)
    no_val = split_labelled(data, 0, 0.2, seed=1)
    assert len(no_val["val"]) == 0 and no_val["test"].texts == one["test"].texts


def test_label_checks():
    with pytest.raises(BadInput, match="only one label"):
        label_names(Labelled(["a", "b"], ["x", "x"]))
    with pytest.raises(BadInput, match="label 'z' appears in the held-out data but never in the training data"):
        label_names(Labelled(["a", "b"], ["x", "y"]), [Labelled(["c"], ["z"])])
    with pytest.raises(BadInput, match="label 'z' appears in the val data v.jsonl but never in the training data"):
        label_names(Labelled(["a", "b"], ["x", "y"]), [Labelled(["c"], ["z"], source="val data v.jsonl")])
    with pytest.raises(BadInput, match="label 'q' in f.csv is not one the model knows"):
        check_labels(["x", "q"], ["x", "y"], "f.csv")


def test_classify_data_writes_the_split_and_refuses_a_folder(tmp_path, capsys):
    summary = classify_data(source=str(_write(tmp_path / "all.jsonl", 60)), out=str(tmp_path / "split"), seed=3)
    assert summary["counts"] == {"train": {"a": 24, "b": 24}, "val": {"a": 3, "b": 3}, "test": {"a": 3, "b": 3}}
    assert json.loads((tmp_path / "split" / "labels.json").read_text(encoding="utf-8"))["labels"] == ["a", "b"]
    assert "total" in capsys.readouterr().out
    splits, cut = load_splits(str(tmp_path / "split"), None, None, "text", "label", 0.1, 0.1, 3)
    on_disk = {s: read_labelled(tmp_path / "split" / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert not cut and all(splits[s].texts == on_disk[s].texts for s in on_disk)
    with pytest.raises(FidanError, match="already exists"):
        classify_data(source=str(tmp_path / "all.jsonl"), out=str(tmp_path / "split"))
    with pytest.raises(BadInput, match="only one label"):  # nothing is written when the data is refused
        classify_data(source=str(_write(tmp_path / "one.jsonl", 9, "a")), out=str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()
    classify_data(source=str(tmp_path / "all.jsonl"), out=str(tmp_path / "split"), val_fraction=0, force=True)
    splits, _ = load_splits(str(tmp_path / "split"), None, None, "text", "label", 0.1, 0.1, 3)
    assert set(splits) == {"train", "test"}  # an empty val.jsonl is an empty split, not one to cut again


def test_only_missing_splits_are_cut(tmp_path):
    val = _write(tmp_path / "val.jsonl", 10)
    splits, cut = load_splits(str(_write(tmp_path / "all.jsonl", 100)), str(val), None, "text", "label",
                              0.3, 0.2, seed=0)
    assert cut and len(splits["val"]) == 10 and len(splits["test"]) == 20 and len(splits["train"]) == 80
    (tmp_path / "odd.jsonl").write_text('{"text": "x", "label": "c"}\n', encoding="utf-8")
    splits, _ = load_splits(str(tmp_path / "all.jsonl"), str(tmp_path / "odd.jsonl"), None, "text", "label",
                            0.1, 0.1, seed=0)
    with pytest.raises(BadInput, match=r"label 'c' appears in the val data \S*odd.jsonl but never"):
        label_names(splits["train"], [splits["val"]])


def test_builtin_sets():
    treebank = read_labelled("builtin:treebank")
    assert treebank.counts() == {"web": 2541, "wiki": 2310}
    speeches = read_labelled("builtin:speeches")  # 19 speeches have no Turkish body
    assert speeches.counts() == {"demec": 48, "konusma": 325, "mektup": 7, "telgraf": 12} and speeches.skipped == 19
    split = split_labelled(speeches, 0.15, 0.15, seed=0)
    assert all(split["train"].counts()[k] >= 1 for k in speeches.counts())


def _write(path, n, labels="ab"):
    path.write_text("".join(json.dumps({"text": f"metin {path.stem} {i}", "label": labels[i % len(labels)]}) + "\n"
                            for i in range(n)), encoding="utf-8")
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
