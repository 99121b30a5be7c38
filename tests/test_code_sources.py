"""`code:PATH` sources in `fidan data prepare`: source code is kept byte for byte (no whitespace cleaning, no
prose filters, no near-duplicate removal), exact copies are still dropped, and a Python file comes back
identical through `data prepare`, `tokenizer train` / `tokenizer encode` and decoding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fidan.artifacts.datadir import iter_split
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.cli import main
from fidan.corpus.prepare import prepare_data

# Indentation by spaces and tabs, trailing spaces, runs of blank lines, a whitespace-only line, a CRLF
# line, double spaces inside a line, Turkish letters and a final newline: everything prose cleaning changes.
CODE = (
    '"""Ders 3: döngüler ve sınıflar."""\n'
    "\n\n\n"
    "def topla(sayılar):\n"
    "    toplam = 0\n"
    "    for s in sayılar:\n"
    "\tif s > 0:   \n"
    "\t\ttoplam += s\n"
    "    return toplam\r\n"
    "        \n"
    "class  Sayaç:  # iki  boşluk\n"
    "    def __init__(self):\n"
    "        self.n = 0\n"
    "\n"
    "print(topla([1, -2,  3]))\n"
)
PROSE = ("Türkiye  Cumhuriyeti 1923 yılında kuruldu ve   başkenti Ankara oldu. Öğretmenler çocuklara ılık süt ve "
         "çörek ikram ettiler.  Ağaçların gölgesinde oturan yaşlı adam gazetesini okuyordu.")


def test_python_file_is_byte_identical_through_prepare_and_tokenizer(tmp_path):
    lesson = tmp_path / "lesson.py"
    lesson.write_bytes(CODE.encode("utf-8"))
    prose = tmp_path / "prose.jsonl"  # the same code as an ordinary source is cleaned like prose
    prose.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in (PROSE, CODE)), "utf-8")
    data, tok = tmp_path / "d", tmp_path / "tok"
    assert main(["data", "prepare", "--source", f"code:{lesson}", "--source", str(prose), "--out", str(data),
                 "--val-fraction", "0"]) == 0
    docs = list(iter_split(data, "train"))
    assert [d for d in docs if d.encode("utf-8") == lesson.read_bytes()] == [CODE]
    assert " ".join(PROSE.split()) in docs  # prose from the other source: runs of spaces collapsed
    manifest = json.loads((data / "manifest.json").read_text())
    assert "code_sources" in manifest["cleaning"]
    assert main(["tokenizer", "train", "--data", str(data), "--out", str(tok), "--vocab-size", "300"]) == 0
    bundle = load_tokenizer(tok)
    assert bundle.decode(bundle.encode(CODE)).encode("utf-8") == lesson.read_bytes()
    assert main(["tokenizer", "encode", "--data", str(data), "--tokenizer", str(tok)]) == 0
    folder = next((data / "tokens").iterdir())
    ids = np.fromfile(folder / "train.bin", dtype=json.loads((folder / "meta.json").read_text())["dtype"])
    cuts = np.flatnonzero(ids == bundle.eos_id)
    decoded = [bundle.decode(ids[a + 1:b].tolist()) for a, b in zip([-1, *cuts[:-1]], cuts, strict=True)]
    assert CODE in decoded  # the training tokens hold the file exactly


def test_code_folder_dedups_exactly_and_skips_prose_filters(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.py").write_text(CODE, "utf-8")
    (src / "pkg" / "copy.py").write_text(CODE, "utf-8")  # an exact copy: dropped
    near = CODE.replace("toplam", "sonuc")  # a near copy: kept, near-duplicate removal is for prose
    (src / "pkg" / "b.py").write_text(near, "utf-8")
    record = "def f():\n\n\n    return  1\n"
    (src / "snippets.jsonl").write_text(json.dumps({"text": record}) + "\n", "utf-8")  # one document a record
    (src / ".git").mkdir()
    (src / ".git" / "x.py").write_text("print('hidden')  # left out\n", "utf-8")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "a.py").write_text("print('cache')  # left out\n", "utf-8")
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    m = prepare_data(source=[f"code:{src}"], out=str(tmp_path / "d"), val_fraction=0, near_dup=0.6, quiet=False)
    assert f"code:{src}: 1 binary file left out" in capsys.readouterr().out
    assert sorted(iter_split(tmp_path / "d", "train")) == sorted([CODE, near, record])
    assert m["dropped"]["duplicates"] == 1 and m["dropped"]["near_duplicates"] == 0
    assert m["documents_read"] == 4 and m["dropped"]["low_quality"] == 0


@pytest.mark.parametrize("spec, needle", [
    ("code:", "code: needs a path"),
    ("code:no/such/dir", "code source path not found: no/such/dir"),
    ("code:{latin}", "latin.py is not valid UTF-8"),
])
def test_bad_code_sources(tmp_path, capsys, spec, needle):
    (tmp_path / "latin.py").write_bytes("yaş = 1\n".encode("cp1254"))
    spec = spec.format(latin=tmp_path / "latin.py")
    assert main(["data", "prepare", "--source", spec, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fidan: error:") and needle in err[0], err
    assert not (tmp_path / "d").exists()


def test_prepare_data_from_python_prints_nothing_unless_asked(tmp_path, corpus_file, capsys):
    from fidan.cli import main
    from fidan.corpus.prepare import prepare_data

    manifest = prepare_data(source=[str(corpus_file)], out=str(tmp_path / "a"), near_dup=0)
    assert manifest["splits"]["train"]["documents"] > 0 and capsys.readouterr() == ("", "")
    prepare_data(source=[str(corpus_file)], out=str(tmp_path / "b"), near_dup=0, quiet=False)
    assert "train /" in capsys.readouterr().out
    assert main(["data", "prepare", "--source", str(corpus_file), "--out", str(tmp_path / "c"), "--near-dup", "0"]) == 0
    assert "train /" in capsys.readouterr().out
    assert main(["data", "prepare", "--source", str(corpus_file), "--out", str(tmp_path / "d"), "--near-dup", "0",
                 "--quiet"]) == 0
    assert capsys.readouterr().out == ""
