"""Grouped settings, declared once: groups and flat keywords make the same run, --help shows a section per
group, config.yaml records the groups nested, and a config.yaml with the older flat `args:` still replays."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from fidan.cli import load_function, main, parse_command
from fidan.errors import FidanError
from fidan.training.args import CheckpointArgs, EvalArgs, LogArgs, ShapeArgs, TrainArgs
from fidan.training.pretrain import pretrain
from fidan.training.settings import flat_fields, stage_settings
from fidan.training.settings import nested as nested_args

COMMANDS = ("pretrain", "sft", "classify train")
FLAT_ARGS = yaml.safe_load((Path(__file__).parent / "fixtures" / "flat_args.yaml").read_text(encoding="utf-8"))


def _config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))


def _losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def test_groups_and_flat_keywords_make_the_same_run(tmp_path, data_dir, tokenizer_dir):
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), eval_windows=2)
    pretrain(out=str(tmp_path / "flat"), max_steps=3, lr=2e-3, seed=5, batch_size=4, warmup_steps=1, eval_every=2,
             keep_checkpoints=1, block_size=32, quiet=True, **common)
    pretrain(out=str(tmp_path / "grouped"), train=TrainArgs(max_steps=3, lr=2e-3, seed=5, batch_size=4, warmup_steps=1),
             eval=EvalArgs(every=2), checkpoint=CheckpointArgs(keep=1), shape=ShapeArgs(block_size=32),
             log=LogArgs(quiet=True), **common)
    flat, grouped = _config(tmp_path / "flat"), _config(tmp_path / "grouped")
    assert flat["args"].pop("out") != grouped["args"].pop("out")
    assert flat["args"] == grouped["args"]
    for key in ("train", "eval", "checkpoint", "model"):
        assert flat[key] == grouped[key]
    assert _losses(tmp_path / "flat") == _losses(tmp_path / "grouped")
    # every group is recorded, nested under its key, beside the command's own arguments
    assert set(pretrain.groups) <= set(flat["args"])
    assert flat["args"]["train"]["max_steps"] == 3 and flat["args"]["eval"] == {"every": 2, "patience": 0}
    assert "until_step" not in flat["args"]["train"] and flat["args"]["run"]["force"] is False


def test_a_flat_keyword_sets_a_field_of_the_group(tmp_path):
    @stage_settings(batch_size=8, eval_every=5)
    def stage(out: str, *, train: TrainArgs, eval: EvalArgs) -> tuple:
        return train, eval

    out = str(tmp_path / "x")
    train, evals = stage(out, max_steps=7)
    assert (train.batch_size, train.max_steps, evals.every) == (8, 7, 5)  # the stage's defaults, one changed
    assert stage.groups["train"] == TrainArgs(batch_size=8)
    train, _ = stage(out, train=TrainArgs(lr=0.5), max_steps=7)  # a group given whole keeps its own fields
    assert (train.lr, train.max_steps, train.batch_size) == (0.5, 7, 32)
    with pytest.raises(FidanError, match="unexpected keyword argument 'max_step'"):
        stage(out, max_step=7)
    with pytest.raises(FidanError, match="train= takes a TrainArgs"):
        stage(out, train={"lr": 0.5})
    with pytest.raises(TypeError, match="not fields of its groups"):
        stage_settings(batch_sise=8)(stage.__wrapped__)


def test_each_stage_declares_its_defaults_once():
    sft, classify = load_function("sft"), load_function("classify train")
    assert pretrain.groups["train"] == TrainArgs()
    assert (sft.groups["train"].max_steps, sft.groups["train"].batch_size, sft.groups["checkpoint"].keep) == (500, 8, 2)
    assert (classify.groups["train"].schedule, classify.groups["eval"].patience) == ("linear", 4)
    # one precision default for every stage, the one the command line always had
    assert {f.groups["train"].precision for f in (pretrain, sft, classify)} == {"auto"}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_a_section_per_group(name, capsys):
    with pytest.raises(SystemExit):
        main([*name.split(), "--help"])
    out = capsys.readouterr().out
    func = load_function(name)
    titles = [g.title for g in func.groups.values()]
    heads = [m.group(1) for m in re.finditer(r"^(\S.*):$", out, re.MULTILINE)]
    assert heads == ["options", *titles]
    sections = dict(zip(heads, re.split(r"^\S.*:$", out, flags=re.MULTILINE)[1:], strict=True))
    for group in func.groups.values():
        for f in flat_fields(type(group)):
            flag = "--" + f.name.replace("_", "-")
            assert re.search(rf"^  {flag}\b", sections[group.title], re.MULTILINE), f"{flag} not under {group.title}"


@pytest.mark.parametrize("name", COMMANDS)
def test_an_old_flat_config_reads_as_the_nested_one(name, tmp_path):
    """The same arguments from the flat `args:` of older runs and from the nested one written today."""
    old = FLAT_ARGS[name]
    func = load_function(name)
    nested = nested_args(func, old)
    assert all(isinstance(nested[key], dict) for key in func.groups)
    del nested["train"]["until_step"]  # as config.yaml leaves it out
    read = []
    for doc in (old, nested):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"args": doc}), encoding="utf-8")
        read.append(parse_command(name, ["--config", str(path)])[1])
    # every old argument reads as it was written; today's file also holds the settings added since
    assert read[0] == old and {k: v for k, v in read[1].items() if k in old} == old
    assert {k: v for k, v in read[1].items() if k not in old} == {"budget_counts": "wall"}
    path.write_text(yaml.safe_dump({"args": {**nested, "train": {**nested["train"], "max_stepz": 3}}}))
    with pytest.raises(FidanError, match="unknown key"):
        parse_command(name, ["--config", str(path)])


def _old_file(tmp_path: Path, name: str, paths: dict) -> Path:
    text = yaml.safe_dump({"args": FLAT_ARGS[name]})
    for placeholder, path in paths.items():
        text = text.replace(placeholder, str(path))
    (tmp_path / "old.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "old.yaml"


def test_an_old_pretrain_config_replays(tmp_path, data_dir, tokenizer_dir):
    old = _old_file(tmp_path, "pretrain", {"ROOT/d": data_dir, "ROOT/tok": tokenizer_dir, "ROOT/run": tmp_path / "x"})
    assert main(["pretrain", "--config", str(old), "--out", str(tmp_path / "a")]) == 0
    assert isinstance(_config(tmp_path / "a")["args"]["train"], dict)  # written again, nested
    assert main(["pretrain", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b")]) == 0
    assert len(_losses(tmp_path / "a")) == 3 and _losses(tmp_path / "a") == _losses(tmp_path / "b")


def test_an_old_classify_config_replays(tmp_path):
    texts = tmp_path / "l.jsonl"
    texts.write_text("".join(json.dumps({"text": f"{'güzel iyi' if i % 2 else 'kötü berbat'} metin {i}",
                                         "label": "a" if i % 2 else "b"}, ensure_ascii=False) + "\n"
                             for i in range(60)), encoding="utf-8")
    old = _old_file(tmp_path, "classify train", {"ROOT/l.jsonl": texts, "ROOT/clf": tmp_path / "x"})
    assert main(["classify", "train", "--config", str(old), "--out", str(tmp_path / "a")]) == 0
    args = _config(tmp_path / "a")["args"]
    assert args["model"] == "tfidf" and args["tfidf"]["tfidf_c"] == 10.0 and args["split"]["text_column"] == "text"
    assert main(["classify", "train", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / r / "eval" / "summary.json").read_text(encoding="utf-8")) for r in "ab")
    assert a["test_macro_f1"] == b["test_macro_f1"]


def test_settings_that_cannot_go_together_are_refused_before_anything_is_written(tmp_path, data_dir, tokenizer_dir):
    with pytest.raises(FidanError, match="--patience keeps the best weights, which --fsdp does not gather"):
        pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / "r"), fsdp=True, patience=2,
                 optimizer="adamw", quiet=True)
    assert not (tmp_path / "r").exists()
