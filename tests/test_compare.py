"""`fidan compare`: one table of runs whose numbers come from the runs' files, and figures measured on
different texts or sets never in the same column."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import yaml

from fidan.cli import main
from fidan.reporting.compare import compare

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir, tokenizer_dir):
    """A pretrained run, a run continued from it (--init), an sft run, three TF-IDF classifiers (two on
    the same split), and `fidan eval` results: the same text under two names, two texts under one name."""
    from fidan.classify.train import classify_train
    from fidan.evaluation.bpb import eval_bpb
    from fidan.evaluation.harmony import harmony_items
    from fidan.evaluation.mc import eval_mc
    from fidan.training.pretrain import pretrain
    from fidan.training.sft import sft

    root = tmp_path_factory.mktemp("compare")
    common = dict(data=str(data_dir), max_steps=4, batch_size=4, eval_every=2, eval_windows=4, warmup_steps=1,
                  precision="fp32", peak_gflops=100.0, device="cpu", quiet=True)
    with pytest.MonkeyPatch.context() as mp:  # training's loss plot is not what is tested here, and takes seconds
        mp.setattr("fidan.training.loop.plot_loss", lambda *a, **k: None)
        pretrain(tokenizer=str(tokenizer_dir), out=str(root / "a"), block_size=32, depth=1, **common)
        pretrain(init=str(root / "a"), out=str(root / "b"), **{**common, "lr": 3e-3})
        qa = [("Türkiye'nin başkenti neresidir?", "Ankara'dır."), ("Bir hafta kaç gündür?", "Yedi gündür.")]
        (root / "sft.jsonl").write_text("".join(json.dumps({"instruction": f"{q} ({i})", "output": a},
                                                           ensure_ascii=False) + "\n"
                                                for i in range(8) for q, a in qa), encoding="utf-8")
        sft(model=str(root / "a"), data=str(root / "sft.jsonl"), out=str(root / "s"), max_steps=2, batch_size=2,
            val_fraction=0.3, device="cpu", quiet=True)
    for name, text in (("ortak.txt", "Ankara'da kış soğuk geçer."), ("kopya.txt", "Ankara'da kış soğuk geçer."),
                       ("t1/metin.txt", "Kütüphanedeki kitaplar eskidir."), ("t2/metin.txt", "İzmir'de hava ılıktır.")):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text(text + "\n", encoding="utf-8")
    mc = root / "uyum.jsonl"
    mc.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in harmony_items()[:12]), encoding="utf-8")
    for run, same, other in (("a", "ortak.txt", "t1/metin.txt"), ("b", "kopya.txt", "t2/metin.txt")):
        eval_bpb(model=str(root / run), text=str(root / same))
        eval_bpb(model=str(root / run), text=str(root / other))
        eval_mc(model=str(root / run), data=str(mc), baseline=False)
    words = ["Ankara", "kış", "soğuk", "İzmir", "hava", "ılık", "kitap", "okul", "çay", "deniz"]
    rows = [{"text": f"{words[i % 10]} {words[(i * 7) % 10]} {words[(i * 3) % 10]} belge {i}",
             "label": "soru" if i % 3 else "haber"} for i in range(90)]
    (root / "lab.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    classify_train(data=str(root / "lab.jsonl"), out=str(root / "c"), quiet=True)
    classify_train(data=str(root / "lab.jsonl"), out=str(root / "d"), tfidf_c=0.05, quiet=True)
    classify_train(data=str(root / "lab.jsonl"), out=str(root / "e"), seed=5, quiet=True)  # another test split
    return root


def parse(table: str) -> dict[str, dict[str, str]]:
    """The markdown table as {run: {column header: cell}}."""
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [h.strip() for h in lines[0].strip("|").split(" | ")]
    return {cells[0]: dict(zip(header, cells, strict=True))
            for cells in ([c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:])}


def column(rows: dict, start: str) -> list[str]:
    headers = [h for h in next(iter(rows.values())) if h.startswith(start)]
    return headers


def read(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_table_numbers_come_from_the_runs_files(runs, tmp_path, capsys):
    labels = [str(runs / n) for n in "absced"]
    result = compare(labels, plot=str(tmp_path / "cmp.png"), json=str(tmp_path / "cmp.json"), quiet=True)
    assert capsys.readouterr().out == ""  # quiet: the table is returned, not printed
    rows = parse(result["table"])
    a, b, s, c, e, d = (rows[x] for x in labels)
    assert [r["kind"] for r in (a, b, s, c)] == ["pretrain", "adapt", "sft", "classify"]
    for name, row in (("a", a), ("b", b), ("s", s)):
        cfg = yaml.safe_load((runs / name / "config.yaml").read_text(encoding="utf-8"))
        train = [m for m in metrics(runs / name) if m["kind"] == "train"]
        assert row["parameters"] == f"{cfg['parameters']:,}" and row["trained"] == f"{cfg['trainable_parameters']:,}"
        assert row["steps"] == str(train[-1]["step"])
        tokens = train[-1]["step"] * cfg["train"]["global_batch"] * cfg["model"]["block_size"]
        assert row["tokens seen"] == f"{tokens:,}"
        assert row["wall time"] == f"{metrics(runs / name)[-1]['elapsed_s']:.1f} s"
    # a and b held out the same data: one column; the sft run's held-out answers are another measurement
    held = column(rows, "held-out bpb:")
    assert len(held) == 1
    for name, row in (("a", a), ("b", b)):
        final = next(m for m in metrics(runs / name) if m["kind"] == "final")
        assert row[held[0]] == f"{final['val_bpb']:.3f}"
    (answers,) = column(rows, "held-out answer bpb:")
    last = [m for m in metrics(runs / "s") if m.get("val_bpb") is not None][-1]
    assert s[answers] == f"{last['val_bpb']:.3f}" and a[answers] == "–"
    # the same text under two names shares a column (by content hash); the mc set too, with its standard error
    (same,) = column(rows, "bpb: ortak.txt = kopya.txt")
    assert a[same] == f"{read(runs / 'a' / 'eval' / 'bpb-ortak.json')['bpb']:.3f}"
    assert b[same] == f"{read(runs / 'b' / 'eval' / 'bpb-kopya.json')['bpb']:.3f}"
    (mc,) = column(rows, "mc accuracy: uyum")
    r = read(runs / "b" / "eval" / "mc-uyum.json")
    assert b[mc] == f"{r['accuracy']:.1%} ± {math.sqrt(r['accuracy'] * (1 - r['accuracy']) / r['items']):.1%}"
    # classifiers: c and d were tested on the same split, e on another one (another seed)
    (acc,) = column(rows, "accuracy: test split")
    (f1,) = column(rows, "macro-F1: test split")
    for name, row in (("c", c), ("d", d)):
        t = read(runs / name / "eval" / "test.json")
        assert row[acc].startswith(f"{t['accuracy']:.1%} ± ") and row[f1] == f"{t['macro_f1']:.3f}"
        with np.load(runs / name / "tfidf.npz") as npz:  # a TF-IDF model's weights: its coefficients
            assert row["parameters"] == f"{npz['coef'].size + npz['intercept'].size:,}"
        assert row["wall time"] == f"{read(runs / name / 'eval' / 'summary.json')['seconds']:.1f} s"
    assert e[acc] == "–" and e[f1] == "–"
    assert any(n.startswith(f"{runs / 'e'}: accuracy on test split") and "different content" in n
               for n in result["notes"])
    assert (tmp_path / "cmp.png").read_bytes()[:8] == PNG
    assert read(tmp_path / "cmp.json")["columns"] == result["columns"]


def test_different_texts_and_sets_never_share_a_column(runs, tmp_path):
    result = compare([str(runs / "a"), str(runs / "b")], plot="", quiet=True)
    rows = parse(result["table"])
    assert not column(rows, "bpb: metin.txt")  # two texts of the same name: no column at all
    notes = [n for n in result["notes"] if "metin.txt" in n]
    assert len(notes) == 2 and all("different content" in n for n in notes)
    assert column(rows, "mc accuracy: uyum")
    # change the hashes a result and the training data recorded: the figures move apart
    b2 = tmp_path / "b2"
    shutil.copytree(runs / "b", b2)
    mc = read(b2 / "eval" / "mc-uyum.json")
    mc["data_hash"] = "sha256:" + "0" * 64
    (b2 / "eval" / "mc-uyum.json").write_text(json.dumps(mc), encoding="utf-8")
    cfg = yaml.safe_load((b2 / "config.yaml").read_text(encoding="utf-8"))
    cfg["data_sha256"] = ["f" * 64]
    (b2 / "config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    bpb = read(b2 / "eval" / "bpb-kopya.json")
    del bpb["text_hash"]  # a result written before results recorded their text's hash
    (b2 / "eval" / "bpb-kopya.json").write_text(json.dumps(bpb), encoding="utf-8")
    result = compare([str(runs / "a"), str(b2)], plot="", quiet=True)
    rows = parse(result["table"])
    assert not column(rows, "mc accuracy") and not column(rows, "bpb: ")
    held = column(rows, "held-out bpb:")
    assert len(held) == 2
    for h in held:  # each held-out column holds one run's figure
        assert sorted(r[h] == "–" for r in rows.values()) == [False, True]
    notes = "\n".join(result["notes"])
    assert "mc accuracy on uyum" in notes and "different content" in notes
    assert "bpb on kopya.txt" in notes and "records no content hash" in notes
    assert "held-out bpb is in 2 columns" in notes


def test_cli_one_run_many_runs_and_bad_input(runs, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(runs / "c")]) == 0  # one run: its own row, its figures, a plot
    out = capsys.readouterr().out
    assert f"| {runs / 'c'} | classify |" in out and "accuracy: test split" in out
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG
    assert main(["compare", str(runs / "a"), str(runs / "c"), str(runs / "d"), "--plot", "", "--json", "x.json"]) == 0
    out = capsys.readouterr().out
    assert all(f"| {runs / n} |" in out for n in "acd") and "plot →" not in out
    assert [r["run"] for r in read(tmp_path / "x.json")["runs"]] == [str(runs / n) for n in "acd"]
    # the runs from a --config file (a positional list the file gives is no longer required)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"runs": [str(runs / "d"), str(runs / "e")], "plot": ""}),
                                     encoding="utf-8")
    assert main(["compare", "--config", "c.yaml"]) == 0
    out = capsys.readouterr().out
    assert f"| {runs / 'd'} |" in out and f"| {runs / 'e'} |" in out
    for bad, expected in ((str(data_dir), "not a run folder"), ("nowhere", "no such folder")):
        assert main(["compare", str(runs / "a"), bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and "fidan pretrain" in err[0]
