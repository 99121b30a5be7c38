"""`fidan data prepare` at scale: byte-range units, several workers, resume after a stop, bad files."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from fidan.artifacts.datadir import iter_split
from fidan.artifacts.documents import read_documents, read_range, split_points
from fidan.cli import main
from fidan.corpus import prepare as prepare_mod
from fidan.corpus.prepare import prepare_data
from fidan.corpus.units import list_units
from fidan.errors import BadInput
from fidan.text.bundled import speeches

BANNER = "Çerezleri kullanıyoruz, sitemizi kullanarak çerez politikamızı kabul etmiş olursunuz."


def _paragraphs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    paras = [p.strip() for d in speeches() for p in d["text"].split("\n\n") if len(p.strip()) > 200]
    return rng.sample(paras, n)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of three files: two .jsonl (one large enough to be cut into byte ranges) and a .txt, with
    exact copies across files, a banner line in many documents, near-copies and English text."""
    root = tmp_path_factory.mktemp("corpus")
    docs = _paragraphs(240)
    rng = random.Random(1)
    big = docs[:150] + docs[10:20]  # copies inside one file
    big = [d + "\n" + BANNER if i % 7 == 0 else d for i, d in enumerate(big)]
    small = docs[150:200] + docs[:5]  # copies of the first file's documents
    small += [" ".join(w if rng.random() > 0.05 else "kelime" for w in d.split()) for d in docs[30:35]]
    small += ["The committee met on Tuesday to discuss the budget for the coming year, and agreed on most of "
              "the items after a long debate about the schools."] * 1
    src = root / "src"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in big),
                                 encoding="utf-8")
    (src / "b.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in small),
                                 encoding="utf-8")
    (src / "c.txt").write_text("\n\n".join(docs[200:] + [BANNER + "\n" + docs[0]]) + "\n", encoding="utf-8")
    return src


def _shards(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jsonl"))}


def _without_run(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k != "run"}


@pytest.mark.parametrize("kind", [".jsonl", ".txt"])
def test_byte_ranges_read_the_same_documents_as_the_whole_file(tmp_path, kind):
    rng = random.Random(3)
    docs = [" ".join(rng.choice(["ağaç", "ev", "göl", "şehir", "ı"]) for _ in range(rng.randint(1, 40)))
            for _ in range(300)]
    path = tmp_path / f"f{kind}"
    if kind == ".jsonl":
        path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    else:  # paragraphs of one to three lines
        path.write_text("\n\n".join("\n".join(d.split(" ", 2)) for d in docs) + "\n", encoding="utf-8")
    whole = list(read_documents(path))
    for piece in (1, 7, 100, 1000, path.stat().st_size // 3, path.stat().st_size * 2):
        points = split_points(path, piece)
        assert points[0] == 0 and points[-1] == path.stat().st_size and points == sorted(set(points))
        got = [d for a, b in zip(points, points[1:], strict=False) for d in read_range(path, a, b)]
        assert got == whole, piece


def test_two_workers_and_byte_ranges_write_the_same_folder_as_one(corpus, tmp_path, monkeypatch):
    units = list_units([str(corpus)], unit_bytes=20_000)
    assert len(units) > 4 and any(u.end is not None for u in units)  # a.jsonl is read in pieces
    monkeypatch.setattr(prepare_mod, "list_units", lambda s, f, say=print: list_units(s, f, unit_bytes=20_000, say=say))
    one = prepare_data(source=[str(corpus)], out=str(tmp_path / "one"), near_dup=0.5, val_fraction=0.1)
    two = prepare_data(source=[str(corpus)], out=str(tmp_path / "two"), near_dup=0.5, val_fraction=0.1, workers=2)
    assert _shards(tmp_path / "one") == _shards(tmp_path / "two")
    assert _without_run(one) == _without_run(two)
    assert one["run"]["units"] == len(units) and two["run"]["workers"] == 2
    # What the passes decided across units: copies in other files, the banner, near-copies, English.
    d = one["dropped"]
    assert d["duplicates"] == 10 + 5 + 1  # a.jsonl's own copies, b.jsonl's copies of a.jsonl, c.txt's last
    assert d["near_duplicates"] >= 4 and one["cleaning"]["near_dup"]["clusters"] >= 4
    filters = one["quality"]["filters"]
    assert filters["repeated_lines"]["removed"]["lines"] >= 20
    assert filters["language"]["by_language"].get("en") == 1
    kept = [*iter_split(tmp_path / "one", "train"), *iter_split(tmp_path / "one", "val")]
    assert not any(BANNER in t for t in kept) and len(kept) == len(set(kept))
    assert not (tmp_path / ".one.work").exists()  # the work folder goes once the data folder is written


def test_a_stopped_run_resumes_to_the_same_folder(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_mod, "list_units", lambda s, f, say=print: list_units(s, f, unit_bytes=20_000, say=say))
    whole = prepare_data(source=[str(corpus)], out=str(tmp_path / "whole"))
    real, calls = prepare_mod.filter_unit, []

    def stops(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of the filter pass
        return real(*args)

    monkeypatch.setattr(prepare_mod, "filter_unit", stops)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(source=[str(corpus)], out=str(tmp_path / "again"))
    assert not (tmp_path / "again").exists() and (tmp_path / ".again.work").is_dir()
    monkeypatch.setattr(prepare_mod, "filter_unit", real)
    capsys.readouterr()
    resumed = prepare_data(source=[str(corpus)], out=str(tmp_path / "again"), quiet=False)
    assert "filter: resuming, 2 of" in capsys.readouterr().out
    assert resumed["run"]["units_resumed"] == len(list_units([str(corpus)], unit_bytes=20_000)) + 2
    assert _shards(tmp_path / "whole") == _shards(tmp_path / "again")
    assert _without_run(whole) == _without_run(resumed)


def test_changed_settings_do_not_reuse_a_stopped_runs_units(corpus, tmp_path, monkeypatch):
    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_mod, "filter_unit", stop)
    with pytest.raises(KeyboardInterrupt):
        prepare_data(source=[str(corpus)], out=str(tmp_path / "d"), min_chars=20)
    monkeypatch.undo()
    m = prepare_data(source=[str(corpus)], out=str(tmp_path / "d"), min_chars=400)
    assert m["run"]["units_resumed"] == 0
    assert min(len(t) for t in iter_split(tmp_path / "d", "train")) >= 400


def test_a_corrupt_file_in_a_folder_stops_the_run_or_is_skipped(corpus, tmp_path, capsys):
    folder = tmp_path / "src"
    folder.mkdir()
    for p in corpus.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    whole = gzip.compress(("\n".join(json.dumps({"text": d}, ensure_ascii=False) for d in _paragraphs(50, 9))
                           + "\n").encode())
    (folder / "b2.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # cut off mid-stream
    assert main(["data", "prepare", "--source", str(folder), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "b2.jsonl.gz is corrupt or truncated" in err and "--skip-bad-files" in err
    assert not (tmp_path / "d").exists()
    assert main(["data", "prepare", "--source", str(folder), "--out", str(tmp_path / "d"), "--skip-bad-files"]) == 0
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert [s["file"] for s in m["skipped_files"]] == [str(folder / "b2.jsonl.gz")]
    assert m["splits"]["train"]["documents"] > 200


def test_no_turkish_text_left_is_one_clear_error(tmp_path, capsys):
    src = tmp_path / "en.jsonl"
    src.write_text("".join(json.dumps({"text": f"This is English sentence number {i}, written about the weather "
                                               f"and the garden in the spring of the year."}) + "\n"
                           for i in range(30)), encoding="utf-8")
    assert main(["data", "prepare", "--source", str(src), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "no Turkish text left" in err and "en 30" in err and not (tmp_path / "d").exists()


def test_workers_below_one_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="--workers"):
        prepare_data(source=["tr-treebank"], out=str(tmp_path / "d"), workers=0)


def test_datatrove_local_executor_writes_the_same_folder(corpus, tmp_path, monkeypatch):
    pytest.importorskip("datatrove")
    monkeypatch.setattr(prepare_mod, "list_units", lambda s, f, say=print: list_units(s, f, unit_bytes=20_000, say=say))
    ours = prepare_data(source=[str(corpus)], out=str(tmp_path / "ours"), val_fraction=0.1)
    theirs = prepare_data(source=[str(corpus)], out=str(tmp_path / "dt"), val_fraction=0.1, executor="datatrove",
                          workers=2)
    assert _shards(tmp_path / "ours") == _shards(tmp_path / "dt")
    assert _without_run(ours) == _without_run(theirs)
    assert not (tmp_path / ".dt.work").exists()


def test_cluster_executors_check_their_options_before_any_work(tmp_path, capsys):
    pytest.importorskip("datatrove")
    out = str(tmp_path / "d")
    assert main(["data", "prepare", "--source", "tr-treebank", "--out", out, "--executor", "slurm"]) == 2
    assert "--executor-option partition=..." in capsys.readouterr().err
    assert main(["data", "prepare", "--source", "tr-treebank", "--out", out, "--executor", "datatrove",
                 "--executor-option", "partition"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["data", "prepare", "--source", "tr-treebank", "--out", out, "--executor", "datatrove",
                 "--executor-option", "no_such_option=1"]) == 2
    assert "no_such_option" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
