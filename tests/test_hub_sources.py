"""`--source hf:NAME[:CONFIG][?key=value&...]`: the syntax, and the loading path on datasets built here
(a folder laid out like a hub repository with one config per language, and a saved DatasetDict)."""

from __future__ import annotations

import json

import pytest

from fidan.artifacts.datadir import iter_split
from fidan.cli import main
from fidan.corpus.hub import HubSource, parse
from fidan.corpus.prepare import prepare_data
from fidan.errors import BadInput

TR = [f"Bu {i}. belge Türkçe yazılmıştır ve içinde ğüşıöç harfleri vardır, dedi öğretmen." for i in range(30)]
EN = [f"This is document number {i}, written in English for the other config of the dataset." for i in range(5)]


@pytest.mark.parametrize(("spec", "expected"), [
    ("hf:uonlp/CulturaX:tr", HubSource("uonlp/CulturaX", "tr")),
    ("hf:uonlp/CulturaX", HubSource("uonlp/CulturaX")),
    ("hf:allenai/c4?config=tr&split=validation&field=text&max_docs=1000",
     HubSource("allenai/c4", "tr", "validation", "text", max_docs=1000)),
    ("hf:HuggingFaceFW/fineweb-2:tur_Latn?max_bytes=500M", HubSource("HuggingFaceFW/fineweb-2", "tur_Latn",
                                                                     max_bytes=500_000_000)),
    ("hf:x/y:tr?config=tr&max_bytes=1.5k", HubSource("x/y", "tr", max_bytes=1500)),
    ("hf:/data/saved?split=test", HubSource("/data/saved", split="test")),
])
def test_syntax(spec, expected):
    assert parse(spec) == expected


@pytest.mark.parametrize(("spec", "needle"), [
    ("hf:x/y?spilt=train", "unknown key 'spilt'; keys are config, split, field, max_docs, max_bytes"),
    ("hf:x/y?max_docs=ten", "max_docs must be a whole number, got 'ten'"),
    ("hf:x/y?max_docs=0", "max_docs must be positive"),
    ("hf:x/y?max_bytes=lots", "max_bytes must be a number of bytes such as 500000000 or 500M"),
    ("hf:x/y?split=", "split has no value"),
    ("hf:x/y:tr?config=de", "two configs (tr and de)"),
    ("hf:?split=train", "no dataset name"),
    ("hf:x/y?train", "after '?' come key=value pairs joined by '&', got 'train'"),
])
def test_bad_specs_are_one_line(tmp_path, capsys, spec, needle):
    with pytest.raises(BadInput, match="--source hf:"):
        parse(spec)
    assert main(["data", "prepare", "--source", spec, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "d").exists()


@pytest.fixture
def hub_folder(tmp_path):
    """A local dataset laid out as on the hub: README.md metadata names a config per language."""
    root = tmp_path / "culturax-like"
    for lang, docs in (("tr", TR), ("en", EN)):
        (root / "data" / lang).mkdir(parents=True)
        for part in range(2):
            chunk = docs[part::2]
            (root / "data" / lang / f"part-{part}.jsonl").write_text(
                "".join(json.dumps({"id": i, "content": d}, ensure_ascii=False) + "\n" for i, d in enumerate(chunk)),
                encoding="utf-8")
    configs = "".join(f"- config_name: {lang}\n  data_files:\n  - split: train\n    path: data/{lang}/*.jsonl\n"
                      for lang in ("tr", "en"))
    (root / "README.md").write_text(f"---\nconfigs:\n{configs}---\n# A test dataset\n", encoding="utf-8")
    return root


def test_a_config_split_field_and_caps_from_a_local_hub_layout(tmp_path, hub_folder):
    datasets = pytest.importorskip("datasets")
    del datasets
    spec = f"hf:{hub_folder}:tr?split=train&field=content&max_docs=12"
    m = prepare_data(source=[spec], out=str(tmp_path / "d"), val_fraction=0, skip_filter=["language"], near_dup=0)
    docs = list(iter_split(tmp_path / "d", "train"))
    assert len(docs) == 12 and set(docs) <= set(TR)
    assert m["sources"][0]["hf"] == {"name": str(hub_folder), "config": "tr", "split": "train",
                                     "field": "content", "max_docs": 12}
    assert m["sources"][0]["read"] == 12
    # The English config of the same dataset; the field from --text-field.
    m = prepare_data(source=[f"hf:{hub_folder}:en"], out=str(tmp_path / "e"), val_fraction=0,
                     text_field="content", skip_filter=["language"], near_dup=0)
    assert sorted(iter_split(tmp_path / "e", "train")) == sorted(EN)
    # A byte cap: the documents that fit, whole.
    size = len(TR[0].encode("utf-8"))
    m = prepare_data(source=[f"hf:{hub_folder}?config=tr&field=content&max_bytes={3 * size + 1}"],
                     out=str(tmp_path / "f"), val_fraction=0, near_dup=0)
    assert m["documents_read"] == 3


def test_a_saved_dataset_dict_and_its_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": TR[:20]}),
                          "validation": datasets.Dataset.from_dict({"text": TR[20:]})}).save_to_disk(str(saved))
    m = prepare_data(source=[f"hf:{saved}?split=validation"], out=str(tmp_path / "d"), val_fraction=0, near_dup=0)
    assert sorted(iter_split(tmp_path / "d", "train")) == sorted(TR[20:]) and m["documents_read"] == 10
    with pytest.raises(BadInput, match=r"has no split 'test' \(splits: train, validation\)"):
        prepare_data(source=[f"hf:{saved}?split=test"], out=str(tmp_path / "e"))
    with pytest.raises(BadInput, match="has no field 'body'.*pass \\?field=NAME"):
        prepare_data(source=[f"hf:{saved}?field=body"], out=str(tmp_path / "e"))
    assert not (tmp_path / "e").exists()


def test_a_missing_split_of_a_local_hub_layout_is_one_clear_error(tmp_path, hub_folder):
    pytest.importorskip("datasets")
    with pytest.raises(BadInput, match="could not load Hugging Face dataset .*check the name, config and split"):
        prepare_data(source=[f"hf:{hub_folder}:tr?split=test&field=content"], out=str(tmp_path / "d"))
