"""Corpus preparation: cleaning, deduplication, hash split, manifest, formats and bad input."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import unicodedata

import pytest

from fidan.artifacts.datadir import iter_split, load_manifest
from fidan.cli import main
from fidan.corpus.prepare import prepare_data, split_of
from fidan.errors import BadInput, BadRunState, FidanError


def write_jsonl(path, texts, field="text"):
    path.write_text("".join(json.dumps({field: t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


# One template with a number: near-duplicates of each other by construction, so the tests of cleaning, exact
# deduplication and the split pass near_dup=0 (tests/test_near_dup.py tests near-duplicate removal).
DOCS = [f"Bu {i}. belgedir ve Türkçe karakterler içerir: ğüşıöç İ." for i in range(60)]


def test_manifest_counts_and_hashes(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    out = tmp_path / "data"
    manifest = prepare_data(source=[str(src)], out=str(out), val_fraction=0.2, near_dup=0)
    on_disk = load_manifest(out)
    assert on_disk == manifest
    total = sum(s["documents"] for s in manifest["splits"].values())
    assert total == len(DOCS)
    for split, info in manifest["splits"].items():
        docs = list(iter_split(out, split))
        assert len(docs) == info["documents"]
        assert sum(len(d) for d in docs) == info["characters"]
        assert sum(len(d.encode()) for d in docs) == info["bytes"]
        for f in info["files"]:
            assert hashlib.sha256((out / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    assert "hash" in manifest["split_rule"] or "blake2b" in manifest["split_rule"]
    # Atomic writes still give files and folders the usual permissions (not mkstemp's private 0600).
    mask = os.umask(0)
    os.umask(mask)
    assert (out / "manifest.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask


def test_split_is_by_content_not_position(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    prepare_data(source=[str(src)], out=str(tmp_path / "d1"), val_fraction=0.2, near_dup=0)
    # Reversed order: every document keeps its split.
    src2 = write_jsonl(tmp_path / "b.jsonl", DOCS[::-1])
    prepare_data(source=[str(src2)], out=str(tmp_path / "d2"), val_fraction=0.2, near_dup=0)
    assert set(iter_split(tmp_path / "d1", "val")) == set(iter_split(tmp_path / "d2", "val"))
    val = set(iter_split(tmp_path / "d1", "val"))
    positions = [i for i, d in enumerate(DOCS) if d in val]
    assert positions and positions != list(range(len(DOCS) - len(positions), len(DOCS)))  # not the tail
    assert all(split_of(d, 0.2) == "val" for d in val)


def test_cleaning_dedup_and_short_docs(tmp_path):
    decomposed = unicodedata.normalize("NFD", "Işığın gölgesinde çiçekler açıyordu, dedi öğretmen.")
    texts = [decomposed, decomposed, "kısa", "Satır\x00 içinde\x07 kontrol   karakterleri ve\t\tboşluklar var.   ",
             unicodedata.normalize("NFC", decomposed)]
    src = write_jsonl(tmp_path / "a.jsonl", texts)
    manifest = prepare_data(source=[str(src)], out=str(tmp_path / "d"), val_fraction=0.5, min_chars=10,
                            near_dup=0)
    docs = list(iter_split(tmp_path / "d", "train")) + list(iter_split(tmp_path / "d", "val"))
    assert manifest["dropped"] == {"too_short": 1, "duplicates": 2, "low_quality": 0}  # NFD and NFC copies: one text
    assert unicodedata.normalize("NFC", decomposed) in docs
    assert "Satır içinde kontrol karakterleri ve boşluklar var." in docs


def test_local_formats_and_folders(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text(f"{DOCS[0]}\nikinci satır aynı belgede.\n\n{DOCS[1]}\n", encoding="utf-8")
    with gzip.open(folder / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"body": DOCS[2]}) + "\n")
    with open(folder / "c.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "body"])
        w.writeheader()
        w.writerow({"id": 1, "body": DOCS[3]})
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": [DOCS[4], DOCS[5]]}), folder / "d.parquet")
    # .txt has no fields; the other formats read --text-field.
    manifest = prepare_data(source=[str(folder)], out=str(tmp_path / "d"), text_field="body", val_fraction=0.3,
                            near_dup=0)
    docs = set(iter_split(tmp_path / "d", "train")) | set(iter_split(tmp_path / "d", "val"))
    assert f"{DOCS[0]}\nikinci satır aynı belgede." in docs
    assert {DOCS[1], DOCS[2], DOCS[3], DOCS[4], DOCS[5]} <= docs
    assert manifest["documents_read"] == 6


def test_builtin_treebank_source(tmp_path):
    manifest = prepare_data(source=["tr-treebank"], out=str(tmp_path / "d"))
    assert manifest["splits"]["train"]["documents"] > 4000
    assert any("ş" in d or "ğ" in d for d in iter_split(tmp_path / "d", "val"))


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda p: str(p / "missing.jsonl"), "not found"),
        (lambda p: "tr-unknown", "unknown source 'tr-unknown'"),
    ],
)
def test_source_errors(tmp_path, setup, needle):
    spec = setup(tmp_path)
    with pytest.raises(BadInput, match=needle):
        prepare_data(source=[spec], out=str(tmp_path / "d"))


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": DOCS[0]}) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(FidanError, match=r"bad\.jsonl:2: malformed JSON"):
        prepare_data(source=[str(path)], out=str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("Türkçe metin burada yazılı.".encode("cp1254"))
    with pytest.raises(FidanError, match="not valid UTF-8.*iconv"):
        prepare_data(source=[str(path)], out=str(tmp_path / "d"))


def test_empty_corpus(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", ["kısa", "az"])
    with pytest.raises(FidanError, match="empty after cleaning"):
        prepare_data(source=[str(src)], out=str(tmp_path / "d"))


def test_existing_output_is_kept_without_force(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    out = tmp_path / "d"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(BadRunState, match="--force"):
        prepare_data(source=[str(src)], out=str(out))
    assert (out / "precious.txt").read_text() == "keep me"
    prepare_data(source=[str(src)], out=str(out), force=True, val_fraction=0.2, near_dup=0)
    assert (out / "manifest.json").exists()


def test_hf_source_without_hub_fails_clearly(tmp_path):
    pytest.importorskip("datasets")
    with pytest.raises(FidanError, match="could not load Hugging Face dataset"):
        prepare_data(source=["hf:no-such-owner/no-such-dataset"], out=str(tmp_path / "d"))


def test_cli_bad_input_exit_code_and_one_line(tmp_path, capsys):
    code = main(["data", "prepare", "--source", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fidan: error:") and "nope.txt" in err[0]


def test_one_document_rule_for_plain_text(tmp_path):
    """A .txt file's documents are its blank-line-separated paragraphs, for every stage that reads it."""
    from fidan.artifacts.documents import read_documents
    from fidan.tokenizer.evaluate import read_texts

    first, second = f"{DOCS[0]}\nikinci satır aynı belgede.", DOCS[1]
    text = tmp_path / "two.txt"
    text.write_text(f"\n{first}\n \t\n\n{second}\n", encoding="utf-8")  # a whitespace-only line is blank
    assert list(read_documents(text)) == [first, second]
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(f"{first}\n\n{second}\n".replace("\n", "\r\n").encode("utf-8"))
    packed = tmp_path / "two.txt.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write(f"{first}\n\n{second}")
    assert list(read_documents(crlf)) == list(read_documents(packed)) == [first, second]
    assert read_texts(str(text)) == [first, second]  # tokenizer eval
    manifest = prepare_data(source=[str(text)], out=str(tmp_path / "d"), val_fraction=0, near_dup=0)  # data prepare
    assert manifest["documents_read"] == 2
    assert list(iter_split(tmp_path / "d", "train")) == [first, second]


def test_source_may_be_one_string(tmp_path):
    import fidan

    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    manifest = fidan.prepare_data(source=str(src), out=str(tmp_path / "d"), val_fraction=0.2, near_dup=0)
    assert [s["spec"] for s in manifest["sources"]] == [str(src)]  # not one source per letter
    manifest = fidan.prepare_data(source=tmp_path / "a.jsonl", out=str(tmp_path / "e"), val_fraction=0.2, near_dup=0)
    assert manifest["documents_read"] == len(DOCS)
    with pytest.raises(FidanError, match="unknown source 'tr-unknown'"):
        fidan.prepare_data(source="tr-unknown", out=str(tmp_path / "f"))


def test_val_fraction_zero_holds_out_nothing(tmp_path):
    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.artifacts.tokens import encode_splits
    from fidan.tokenizer.train import train_tokenizer

    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    assert main(["data", "prepare", "--source", str(src), "--out", str(tmp_path / "d"), "--val-fraction", "0",
                 "--near-dup", "0"]) == 0
    manifest = load_manifest(tmp_path / "d")
    assert manifest["val_fraction"] == 0
    assert manifest["splits"]["val"] == {"documents": 0, "characters": 0, "bytes": 0, "files": []}
    assert manifest["splits"]["train"]["documents"] == len(DOCS)
    assert list(iter_split(tmp_path / "d", "val")) == []
    tok = train_tokenizer(data=str(tmp_path / "d"), out=str(tmp_path / "t"), vocab_size=300)
    meta = json.loads((encode_splits(tmp_path / "d", load_tokenizer(tok)) / "meta.json").read_text(encoding="utf-8"))
    assert meta["splits"]["val"]["tokens"] == 0 and meta["splits"]["train"]["tokens"] > 0
    from fidan.tokenizer.evaluate import read_texts

    with pytest.raises(BadInput, match="has no validation documents .*pass a text file with --text"):
        read_texts(str(tmp_path / "d"))  # tokenizer eval measures held-out text: there is none
    for bad in ("1", "-0.1"):
        with pytest.raises(FidanError, match=f"--val-fraction must be at least 0 and below 1, got {float(bad)}"):
            prepare_data(source=[str(src)], out=str(tmp_path / "x"), val_fraction=float(bad))
    assert not (tmp_path / "x").exists()
