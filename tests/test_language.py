"""The language filter of `fidan data prepare`: Turkish kept, other languages dropped and counted by
language in the manifest and in `fidan data inspect`, the threshold checked, the switch, a missing library."""

from __future__ import annotations

import json

import pytest

from fidan.artifacts.datadir import iter_split
from fidan.cli import main
from fidan.corpus import language
from fidan.corpus.prepare import prepare_data

TURKISH = ("Köyün kenarındaki eski değirmen yıllardır çalışmıyordu; yine de çocuklar her yaz onun gölgesinde "
           "oynar, yaşlılar da akşamüstü orada oturup geçmişi anlatırdı.")
ENGLISH = ("The old mill at the edge of the village had not worked for years, yet every summer the children "
           "played in its shade and the elders sat there in the evening to talk about the past.")
GERMAN = ("Die alte Mühle am Rande des Dorfes lief schon seit Jahren nicht mehr, doch jeden Sommer spielten die "
          "Kinder in ihrem Schatten, und abends saßen die Alten dort und erzählten von früher.")


def write_corpus(tmp_path) -> str:
    docs = [f"{TURKISH} Bugün {i}. gün ve hava yine çok güzel." for i in range(12)] + [ENGLISH, GERMAN]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return str(path)


def kept(folder) -> list[str]:
    return [d for s in ("train", "val") for d in iter_split(folder, s)]


def test_turkish_is_kept_english_and_german_dropped_and_counted(tmp_path, capsys):
    pytest.importorskip("lingua")
    assert language.identify(TURKISH)[0] == "tr" and language.identify(TURKISH)[1] > 0.9
    assert language.identify(ENGLISH) == ("en", pytest.approx(0.0, abs=0.05))
    assert language.identify(GERMAN)[0] == "de"
    m = prepare_data(source=[write_corpus(tmp_path)], out=str(tmp_path / "d"), val_fraction=0, near_dup=0)
    docs = kept(tmp_path / "d")
    assert len(docs) == 12 and all(d.startswith(TURKISH) for d in docs)
    f = m["quality"]["filters"]["language"]
    assert f["removed"]["documents"] == 2 and f["by_language"] == {"en": 1, "de": 1}
    assert f["settings"] == {"min_confidence": 0.5, "sample_chars": 1000} and "lingua" in f["detector"]
    assert m["dropped"]["low_quality"] == 2 and "not_run" not in m["quality"]
    samples = (tmp_path / "d" / "removed.jsonl").read_text("utf-8")
    assert "The old mill" in samples and "Die alte Mühle" in samples
    capsys.readouterr()
    assert main(["data", "inspect", str(tmp_path / "d"), "--filter", "language"]) == 0
    out = capsys.readouterr().out
    assert "language [document] min_confidence=0.5, sample_chars=1000: removed 2 documents" in out
    assert "  by language: en 1, de 1" in out and "  - The old mill" in out


def test_switching_it_off_and_the_threshold(tmp_path):
    pytest.importorskip("lingua")
    src = write_corpus(tmp_path)
    off = prepare_data(source=[src], out=str(tmp_path / "a"), val_fraction=0, skip_filter=["language"], near_dup=0)
    assert "language" not in off["quality"]["filters"] and len(kept(tmp_path / "a")) == 14
    low = prepare_data(source=[src], out=str(tmp_path / "b"), val_fraction=0,
                       quality_set=["language.min_confidence=0"], near_dup=0)
    assert low["quality"]["filters"]["language"]["removed"]["documents"] == 0
    assert main(["data", "prepare", "--source", src, "--out", str(tmp_path / "c"), "--val-fraction", "0", "--near-dup", "0",
                 "--quality-set", "language.min_confidence=0.99"]) == 0
    assert len(kept(tmp_path / "c")) == 12


@pytest.mark.parametrize(("setting", "needle"), [
    ("language.min_confidence=1.5", "language.min_confidence must be a number in [0, 1]"),
    ("language.min_confidence=-0.1", "language.min_confidence must be a number in [0, 1]"),
    ("language.sample_chars=50", "language.sample_chars must be a whole number, at least 100"),
    ("language.langs=tr", "filter 'language' has no setting 'langs'"),
])
def test_bad_settings_are_one_line(tmp_path, capsys, setting, needle):
    code = main(["data", "prepare", "--source", write_corpus(tmp_path), "--out", str(tmp_path / "d"),
                 "--quality-set", setting])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "d").exists()


def test_without_the_library(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(language, "available", lambda: False)
    src = write_corpus(tmp_path)
    m = prepare_data(source=[src], out=str(tmp_path / "d"), val_fraction=0, near_dup=0, quiet=False)
    assert "language" not in m["quality"]["filters"] and len(kept(tmp_path / "d")) == 14
    assert m["quality"]["not_run"]["language"].startswith("not run: lingua-language-detector is not installed")
    assert "quality filter language not run" in capsys.readouterr().out
    assert main(["data", "inspect", str(tmp_path / "d")]) == 0
    assert "quality filter language: not run: lingua-language-detector is not installed" in capsys.readouterr().out
    code = main(["data", "prepare", "--source", src, "--out", str(tmp_path / "e"),
                 "--quality-set", "language.min_confidence=0.7"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'fidan[quality]'" in err[0], err
    m = prepare_data(source=[src], out=str(tmp_path / "f"), val_fraction=0, skip_filter=["language"], near_dup=0)
    assert "not_run" not in m["quality"]


def test_long_documents_are_judged_on_a_sample():
    text = " ".join(f"kelime{i}" for i in range(5000))
    s = language.sample(text, 1500)
    assert len(s) <= 1500 and s.startswith("kelime0 ") and "\nkelime25" in s and s.endswith(" kelime4999")
    assert language.sample(TURKISH, 1500) == TURKISH


def test_azerbaijani_and_turkmen_letters():
    assert language.other_turkic("Mən bu gün məktəbə getdim və dostlarımla görüşdüm.") == "az"
    assert language.other_turkic("Men şu gün mekdebe gitdim we dostlarym bilen duşuşdym, ýöne giç galdym.") == "tk"
    assert language.other_turkic(TURKISH) is None
    assert language.other_turkic(TURKISH * 10 + " Türkmençe bir söz: ýol.") is None  # one letter in a long text
    assert language.other_turkic(TURKISH * 6 + " Azerice «Mən məktəbə gedirəm» der.") is None  # 5 of ~830 letters
