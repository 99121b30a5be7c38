"""Every file one stage writes for another has one owner in fidan/artifacts/: report/ and bench/ read other
stages' files only through it, and each record round-trips, reads files written before it was versioned, and
refuses a newer one with one line."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from fidan.artifacts.bench_infer import InferResult
from fidan.artifacts.classifier_results import (
    ClassifierMetrics,
    ClassifierSummary,
    labelled_pairs,
    write_predictions,
)
from fidan.artifacts.extension import EXTENSION_FILE, Extension, new_token_ids
from fidan.artifacts.results import EvalResult, Timings, eval_results, save_result
from fidan.artifacts.run_config import RunConfig
from fidan.artifacts.schema import VERSIONS
from fidan.errors import BadInput, FidanError

PACKAGE = Path(__file__).resolve().parent.parent / "fidan"
READERS = ("report", "bench")  # the packages that show what other stages wrote
# Calls that parse a file by hand: module functions, bare names and methods of a path.
PARSERS = {("json", "load"), ("json", "loads"), ("yaml", "safe_load"), ("yaml", "load"), ("yaml", "full_load"),
           ("yaml", "unsafe_load")}
BARE = {"open", "read_json", "read_yaml", "safe_open"}
METHODS = {"read_text", "read_bytes", "open"}
# (module, function) → why it may read a file itself: its own stage's file, not another stage's.
OWN_FILES = {
    ("bench/harness.py", "start_with_eos"): "patches the tokenizer.json of the export bench has just written",
    ("bench/speedrun.py", "bench_speedrun"): "reads speedrun.json, which `fidan bench speedrun` itself writes",
}


def hand_reads(path: Path) -> list[tuple[int, str, str]]:
    """(line, enclosing function, call) for every call in ``path`` that reads or parses a file by hand."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else func
            if isinstance(child, ast.Call):
                f = child.func
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in PARSERS:
                    found.append((child.lineno, func, f"{f.value.id}.{f.attr}"))
                elif isinstance(f, ast.Attribute) and f.attr in METHODS:
                    found.append((child.lineno, func, f".{f.attr}()"))
                elif isinstance(f, ast.Name) and f.id in BARE:
                    found.append((child.lineno, func, f"{f.id}()"))
            visit(child, inner)

    visit(tree, "<module>")
    return found


@pytest.mark.parametrize("path", sorted(p for r in READERS for p in (PACKAGE / r).rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_report_and_bench_read_other_stages_files_through_their_owner(path):
    rel = str(path.relative_to(PACKAGE))
    for line, func, call in hand_reads(path):
        assert (rel, func) in OWN_FILES, (f"fidan/{rel}:{line} ({func}) reads a file by hand with {call}; read it "
                                          "through its owner in fidan/artifacts/ (or give it one there)")


def test_the_scan_sees_a_file_read_by_hand(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("import json, yaml\nfrom pathlib import Path\n\ndef section(root):\n"
                   "    a = json.loads((root / 'eval' / 'x.json').read_text())\n"
                   "    b = yaml.safe_load(open(root / 'config.yaml'))\n    return a, b\n", encoding="utf-8")
    assert [(line, call) for line, _, call in hand_reads(bad)] == [(5, "json.loads"), (5, ".read_text()"),
                                                                  (6, "yaml.safe_load"), (6, "open()")]
    assert {func for _, func, _ in hand_reads(bad)} == {"section"}


def _extension() -> Extension:
    return Extension(base="/m/base", data="/d", init="subtoken-mean", new_ids=[50, 51], embedding_rows=[50, 52],
                     held_out={"documents": 3, "tokens_saved": 0.25, "bpb": {"base": 1.5}},
                     new_tokens=[{"id": 50, "text": "ler", "pieces": [1, 2]}], add=2, min_frequency=2,
                     merges_added=2, seconds=0.5, extra={"note": "kept"})


RECORDS = [
    (_extension(), EXTENSION_FILE),
    (EvalResult(task="bpb", model="/r", model_kind="fidan", date="2026-01-01T00:00:00+0000", seconds=1.0,
                extra={"bpb": 1.25, "text": "/d/val.txt", "text_hash": "sha256:ab"}), "eval/bpb-val.json"),
    (ClassifierMetrics(accuracy=0.5, macro_f1=0.4, weighted_f1=0.45, n=4, per_class={"a": {"f1": 0.4}},
                       confusion=[[1, 1], [1, 1]], split="test", labels=["a", "b"]), "eval/test.json"),
    (ClassifierSummary(kind="tfidf", labels=["a", "b"], seconds=2.0, extra={"test_macro_f1": 0.4}), "eval/summary.json"),
    (InferResult(model="/r", results=[{"precision": "fp32"}], plots=["decode.png"], extra={"rounds": 1}),
     "bench-infer/infer.json"),
    (Timings(stages={"pretrain": 61.0}, environment={"python": "3.11"}, date="2026-01-01"), "timings.json"),
]
IDS = [type(r).__name__ for r, _ in RECORDS]


@pytest.mark.parametrize(("record", "name"), RECORDS, ids=IDS)
def test_a_record_reads_back_what_was_written(record, name, tmp_path):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    written = record.save(path)
    assert (written["artifact"], written["artifact_version"]) == (f"fidan-{record.KIND}", VERSIONS[record.KIND])
    assert json.loads(path.read_text(encoding="utf-8")) == written
    assert type(record).load(path) == record
    if record.FILE:
        assert type(record).read(path.parent.parent if "/" in record.FILE else path.parent) == record


@pytest.mark.parametrize(("record", "name"), RECORDS, ids=IDS)
def test_a_file_written_before_versions_reads_as_version_one(record, name, tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(record.to_dict()), encoding="utf-8")  # today's files: no artifact fields
    assert type(record).load(path) == record


@pytest.mark.parametrize(("record", "name"), RECORDS, ids=IDS)
def test_a_newer_or_damaged_file_is_refused_with_one_line(record, name, tmp_path):
    path = tmp_path / "rec.json"
    path.write_text(json.dumps({**record.to_dict(), "artifact": f"fidan-{record.KIND}",
                                "artifact_version": VERSIONS[record.KIND] + 1}), encoding="utf-8")
    with pytest.raises(FidanError, match=rf"{path}.*newer than this fidan reads.*upgrade fidan") as e:
        type(record).load(path)
    assert "\n" not in str(e.value)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(BadInput, match=rf"{path} is unreadable or not valid JSON .*; \S") as e:
        type(record).load(path)
    assert "\n" not in str(e.value)
    first = next(iter(record.to_dict()))
    path.write_text(json.dumps({k: v for k, v in record.to_dict().items() if k != first}), encoding="utf-8")
    with pytest.raises(BadInput, match=rf"{path} lacks {first}; "):
        type(record).load(path)
    assert type(record).load(tmp_path / "missing.json") is None


def test_eval_results_skip_a_classifiers_files_and_keep_the_order(tmp_path):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    save_result(run / "eval" / "mc-b.json", {"task": "mc", "accuracy": 0.5}, 0.0)
    (run / "eval" / "bpb-a.json").write_text(json.dumps({"task": "bpb", "bpb": 1.0}))  # written before versions
    ClassifierSummary(kind="tfidf").write(run)
    (run / "eval" / "test.json").write_text(json.dumps({"accuracy": 1.0}))  # a classifier's, before versions
    found = eval_results(run)
    assert [(p.name, r.task) for p, r in found] == [("bpb-a.json", "bpb"), ("mc-b.json", "mc")]
    assert [p.name for p, _ in eval_results(run, ("mc",))] == ["mc-b.json"]
    assert found[1][1].extra["accuracy"] == 0.5 and found[1][1].date


def test_extension_ids_and_a_missing_record(tmp_path):
    _extension().write(tmp_path)
    assert new_token_ids(tmp_path) == [50, 51]
    with pytest.raises(FidanError, match=f"has no {EXTENSION_FILE}"):
        new_token_ids(tmp_path / "nowhere")


def test_run_config_round_trip_old_files_and_newer_ones(tmp_path):
    doc = {"args": {"data": "/d", "seed": 7}, "stage": "pretrain", "model": {"block_size": 16}, "train": {"lr": 0.1}}
    path = RunConfig(doc).write(tmp_path)
    on_disk = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (on_disk["artifact"], on_disk["artifact_version"]) == ("fidan-run", VERSIONS["run"])
    assert on_disk["args"] == doc["args"]  # `--config` replays the args block as before
    back = RunConfig.read(tmp_path)
    assert (back.doc, back.stage, back.seed(), back.train, back.model) == (doc, "pretrain", 7, {"lr": 0.1}, {"block_size": 16})
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")  # written before versions
    assert RunConfig.read(tmp_path).doc == doc
    path.write_text(yaml.safe_dump({"artifact": "fidan-run", "artifact_version": VERSIONS["run"] + 1, **doc}))
    with pytest.raises(BadInput, match="newer than this fidan reads .*upgrade fidan"):
        RunConfig.read(tmp_path)
    path.write_text("args: [unclosed", encoding="utf-8")
    with pytest.raises(BadInput, match=r"config.yaml is not valid YAML .*; train the run again") as e:
        RunConfig.read(tmp_path)
    assert "\n" not in str(e.value)
    assert RunConfig.read(tmp_path / "nowhere") is None


def test_predictions_give_their_labelled_pairs(tmp_path):
    import numpy as np

    write_predictions(tmp_path / "p.jsonl", ["b", "a"], ["x", "y"], np.array([[0.9, 0.1], [0.2, 0.8]]), ["y", "x"])
    assert labelled_pairs(tmp_path / "p.jsonl") == [["a", "x"], ["b", "y"]]
    write_predictions(tmp_path / "q.jsonl", ["a"], ["x", "y"], np.array([[0.9, 0.1]]))  # no gold labels
    assert labelled_pairs(tmp_path / "q.jsonl") is None
    assert labelled_pairs(tmp_path / "missing.jsonl") is None
