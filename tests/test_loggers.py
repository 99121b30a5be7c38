"""Experiment tracking: metrics.jsonl records mirrored to TensorBoard, CSV and W&B, and rebuilt on resume."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import pytest

from fidan.errors import FidanError
from fidan.training.loggers import make_logger, parse_kinds

CONFIG = {"preset": "ders", "lr": 6e-4, "data": Path("/tmp/data")}


def train(step: int, loss: float, **extra) -> dict:
    return {"kind": "train", "step": step, "loss": loss, "lr": 1e-3 * step, "tokens_per_s": 1000.0 + step, **extra}


def evaluation(step: int, bpb: float, sample: str = "Merhaba dünya") -> dict:
    return {"kind": "eval", "step": step, "val_loss": 2 * bpb, "val_bpb": bpb, "sample": sample}


def write_and_log(run: Path, logger, records: list[dict]) -> None:
    """What the training loop does: append to metrics.jsonl (the source of truth), then mirror."""
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            logger.log(r)


def cut_back(run: Path, step: int) -> None:
    """The loop's resume: metrics.jsonl loses the records after the checkpoint."""
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    keep = [line for line in lines if json.loads(line)["step"] <= step]
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return acc


def scalars(acc, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_parse_kinds():
    assert parse_kinds(None) == [] and parse_kinds("") == [] and parse_kinds([]) == []
    assert parse_kinds("tensorboard,csv") == ["tensorboard", "csv"]
    assert parse_kinds(["tensorboard, CSV", "csv"]) == ["tensorboard", "csv"]  # repeated flag, comma lists
    with pytest.raises(FidanError, match=r"unknown logger 'mlflow'; choose from tensorboard, wandb, csv"):
        parse_kinds("csv,mlflow")


def test_no_logger_writes_nothing(tmp_path):
    logger = make_logger(None, tmp_path / "run", CONFIG)
    logger.log(train(1, 3.0))
    logger.close()
    assert not (tmp_path / "run").exists()


def test_tensorboard_event_files_hold_the_records(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    run.mkdir()
    logger = make_logger("tensorboard", run, CONFIG)
    write_and_log(run, logger, [train(1, 5.5), train(2, 4.25, mfu=0.125), evaluation(2, 1.75, "Bir varmış")])
    logger.close()
    acc = events(run)
    assert scalars(acc, "train/loss") == [(1, 5.5), (2, 4.25)]
    assert scalars(acc, "train/mfu") == [(2, 0.125)]
    assert scalars(acc, "eval/val_bpb") == [(2, 1.75)] and scalars(acc, "eval/val_loss") == [(2, 3.5)]
    text = acc.Tensors("eval/sample/text_summary")
    assert [e.step for e in text] == [2] and text[0].tensor_proto.string_val[0].decode() == "Bir varmış"
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_resume_rebuilds_tensorboard_and_csv_without_double_logging(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    run.mkdir()
    first = make_logger(["tensorboard", "csv"], run, CONFIG)
    write_and_log(run, first, [train(1, 5.0), train(2, 4.0), evaluation(2, 2.0), train(3, 3.5), train(4, 3.0)])
    first.close()  # a crash after step 4; the last checkpoint is step 2
    cut_back(run, 2)
    second = make_logger("tensorboard,csv", run, CONFIG)
    write_and_log(run, second, [train(3, 3.25), train(4, 2.75)])
    second.close()
    acc = events(run)
    assert scalars(acc, "train/loss") == [(1, 5.0), (2, 4.0), (3, 3.25), (4, 2.75)]
    assert scalars(acc, "eval/val_bpb") == [(2, 2.0)]
    with open(run / "metrics.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["step"], r.get("loss")) for r in rows] == [
        ("train", "1", "5.0"), ("train", "2", "4.0"), ("eval", "2", ""), ("train", "3", "3.25"), ("train", "4", "2.75")]
    # A fresh start (metrics.jsonl gone: the loop cleared the run) keeps nothing of the old one.
    (run / "metrics.jsonl").unlink()
    make_logger(["tensorboard", "csv"], run, CONFIG).close()
    assert "train/loss" not in events(run).Tags()["scalars"]
    assert (run / "metrics.csv").read_text(encoding="utf-8") == "kind,step\n"


def test_csv_round_trip_with_a_growing_header(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [train(1, 5.0), evaluation(1, 2.5, 'satır "bir",\nsatır iki'), train(2, 4.0, mfu=0.03)]
    with make_logger("csv", run, CONFIG) as logger:
        write_and_log(run, logger, records)
    with open(run / "metrics.csv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["kind", "step", "loss", "lr", "tokens_per_s", "val_loss", "val_bpb", "sample", "mfu"]
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        for key in reader.fieldnames:
            want = record.get(key)
            assert row[key] == ("" if want is None else str(want)), key


def fake_wandb(calls: dict) -> types.ModuleType:
    """A stand-in for the wandb package: records init and log calls, never touches the network."""
    module = types.ModuleType("wandb")

    class Run:
        def log(self, values, step):
            calls["log"].append((step, values))

        def finish(self):
            calls["finished"] = True

    def init(**kwargs):
        calls["init"].append(kwargs)
        return Run()

    module.init = init
    module.util = types.SimpleNamespace(generate_id=lambda: f"id{len(calls['init'])}")
    return module


def test_wandb_through_a_fake_module(tmp_path, monkeypatch, capsys):
    calls: dict = {"init": [], "log": []}
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no stored key
    run = tmp_path / "run"
    run.mkdir()
    logger = make_logger("wandb", run, CONFIG)
    write_and_log(run, logger, [train(1, 5.0), evaluation(1, 2.5)])
    logger.close()
    init = calls["init"][0]
    assert init["mode"] == "offline" and "logging offline" in capsys.readouterr().err  # never prompts
    assert init["config"] == CONFIG and init["dir"] == str(run) and init["resume"] == "allow"
    assert calls["log"][0] == (1, {"train/loss": 5.0, "train/lr": 1e-3, "train/tokens_per_s": 1001.0})
    assert calls["log"][1][1]["eval/sample"] == "Merhaba dünya" and calls["finished"]
    # Resumed (metrics.jsonl holds records): the same W&B run, in the mode the user set.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    make_logger("wandb", run, CONFIG).close()
    assert calls["init"][1]["id"] == init["id"] and calls["init"][1]["mode"] == "disabled"


def test_wandb_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(FidanError, match=r"needs the wandb package; install it with: pip install wandb"):
        make_logger(["csv", "wandb"], tmp_path, CONFIG)


def test_tensorboard_missing_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(FidanError, match=r"pip install 'fidan\[track\]'"):
        make_logger("tensorboard", tmp_path, CONFIG)

