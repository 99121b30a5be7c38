"""The command line: one registry for CLI and API, help for every flag, --config files, typed errors."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import yaml

import fidan
from fidan import registry
from fidan.cli import COMMANDS, _doc_params, build_command_parser, load_function, main, parse_command
from fidan.errors import BadConfig, BadInput, BadRunState, FidanError
from fidan.training.settings import parameters

DOC = """Do a thing.

    Args:
        lr: peak learning rate; default: the preset's
            default: the preset's (1e-3 for ders, 3e-3 for hizli).
        steps: how many steps.

            Still about steps after a blank line.
        quiet: no progress bar.

    Returns:
        nothing: this is not a parameter.
    """


def test_docstring_continuation_lines_belong_to_their_parameter():
    summary, params = _doc_params(DOC)
    assert summary == "Do a thing."
    assert list(params) == ["lr", "steps", "quiet"]
    assert params["lr"].endswith("default: the preset's (1e-3 for ders, 3e-3 for hizli).")
    assert params["steps"] == "how many steps. Still about steps after a blank line."


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"fidan {name}")
    build_command_parser(parser, name)
    return parser


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_help_documents_every_flag(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([*name.split(), "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: fidan {name}")
    func = load_function(name)
    _, docs = _doc_params(func.__doc__)
    params = {p.name: p for p in parameters(func)}
    # a function's own parameters are documented in its docstring; a group's fields where they are declared
    # (the docstring may say more about one for this command)
    assert set(docs) <= set(params), "no docstring line read as a parameter"
    assert all(p.name in docs or p.help for p in params.values()), "every parameter documented"
    actions = {a.dest: a for a in _parser(name)._actions if a.dest not in ("help", "config")}
    for p in params:
        assert p in actions, f"{name}: no flag for {p}"
    for a in _parser(name)._actions:
        if a.dest in ("help",) or a.help == argparse.SUPPRESS:  # (the negation of a flag only a file turns on)
            continue
        text = a.help or ""
        assert text.strip(), f"{name} {a.option_strings}: empty help"
        assert "Args:" not in text and "Returns:" not in text and not text.startswith(":"), text
        if any(s.startswith("--no-") for s in a.option_strings):
            assert "off" in text, f"{name} {a.option_strings}: a negated flag must say it turns something off"


def test_pretrain_lr_help_is_whole(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default: the preset's (1e-3 for ders, 3e-3 for hizli)" in out
    assert "--default" not in out


def test_negated_help_is_not_the_positive_help():
    gen = {s: a.help for a in _parser("generate")._actions for s in a.option_strings}
    assert gen["--no-stream"].startswith("turn this off (it is on by default)")
    assert "the default" in gen["--stream"]
    lr = next(a.help for a in _parser("tokenizer train")._actions if "--vocab-size" in a.option_strings)
    assert "(default:" in lr


def test_registry_feeds_cli_and_api():
    assert fidan._API == registry.API
    for cmd in COMMANDS.values():
        assert registry.API[cmd.function] == cmd.module
    assert fidan.prepare_data is load_function("data prepare")
    assert set(fidan.__all__) >= set(registry.API)


def test_import_fidan_stays_light():
    code = "import sys, fidan, fidan.cli; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _docs_file(tmp_path, n=40):
    src = tmp_path / "docs.txt"
    src.write_text("\n\n".join(f"Bu {i}. paragraftır; Türkçe yazılmıştır." for i in range(n)) + "\n", encoding="utf-8")
    return src


def test_config_file_gives_values_and_flags_override(tmp_path, capsys):
    src = _docs_file(tmp_path)
    cfg = tmp_path / "prepare.yaml"
    cfg.write_text(yaml.safe_dump({"source": str(src), "out": str(tmp_path / "a"), "val_fraction": 0.25,
                                   "min-chars": 5, "near_dup": 0}), encoding="utf-8")
    # source and out are required flags; the file gives them, so the command line may leave them out.
    assert main(["data", "prepare", "--config", str(cfg)]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["val_fraction"] == 0.25 and manifest["cleaning"]["min_chars"] == 5
    assert manifest["sources"][0]["spec"] == str(src)
    # A flag beats the file; a repeated list flag replaces the file's list rather than adding to it.
    assert main(["data", "prepare", "--config", str(cfg), "--out", str(tmp_path / "b"), "--val-fraction", "0.5"]) == 0
    assert json.loads((tmp_path / "b" / "manifest.json").read_text(encoding="utf-8"))["val_fraction"] == 0.5
    _, kwargs = parse_command("data prepare", ["--config", str(cfg), "--source", "x.txt", "--source", "y.txt"])
    assert kwargs["source"] == ["x.txt", "y.txt"]
    # A boolean set in the file can be turned back off from the command line.
    cfg.write_text(yaml.safe_dump({"source": [str(src)], "out": str(tmp_path / "a"), "force": True}), encoding="utf-8")
    assert parse_command("data prepare", ["--config", str(cfg)])[1]["force"] is True
    assert parse_command("data prepare", ["--config", str(cfg), "--no-force"])[1]["force"] is False


def test_config_file_errors_are_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source: a.txt\nout: d\nval_fractoin: 0.1\n", encoding="utf-8")
    assert main(["data", "prepare", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fidan: error: ")
    assert "val_fractoin" in err and "valid names: source, out, val_fraction, min_chars" in err
    cases = {
        "out: d\nsource: a.txt\nmin_chars: many\n": "`min_chars` must be int",
        "source: a.txt\n- b\n": "not valid YAML",
        "- a\n- b\n": "must hold a mapping",
        "source: a.txt\nout:\n": "`out` cannot be empty",
        "source: a.txt\nout: d\nmin_chars: null\n": "`min_chars` cannot be empty",
    }
    for text, message in cases.items():
        cfg.write_text(text, encoding="utf-8")
        with pytest.raises(BadConfig, match=message):
            parse_command("data prepare", ["--config", str(cfg)])
    with pytest.raises(BadConfig, match="config file not found"):
        parse_command("data prepare", ["--config", str(tmp_path / "none.yaml")])
    cfg.write_text("args:\n  source: a.txt\n  out: d\n  force: yes-please\n", encoding="utf-8")
    with pytest.raises(BadConfig, match="`force` must be bool, got 'yes-please'"):
        parse_command("data prepare", ["--config", str(cfg)])
    cfg.write_text("args:\n  data: d\n  out: t\n  algorithm: bytepair\n", encoding="utf-8")
    with pytest.raises(BadConfig, match="`algorithm` must be one of bpe, unigram, wordpiece, got 'bytepair'"):
        parse_command("tokenizer train", ["--config", str(cfg)])


def test_a_run_config_replays_pretrain(tmp_path):
    """The shape a run's config.yaml has: `args` by Python name beside other resolved facts."""
    run_config = {
        "fidan_version": "0.1.0",
        "model": {"n_layer": 4, "n_embd": 128},
        "args": {"data": "data/tr", "tokenizer": "tok/bpe", "out": "runs/x", "preset": "ders", "max_steps": 1000,
                 "lr": 0.001, "max_minutes": None, "compile": False, "seed": 3},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(run_config), encoding="utf-8")
    func, kwargs = parse_command("pretrain", ["--config", str(cfg), "--max-steps", "1200", "--out", "runs/y"])
    assert func is load_function("pretrain")
    assert kwargs == {**run_config["args"], "max_steps": 1200, "out": "runs/y"}
    assert isinstance(kwargs["lr"], float)
    _, kwargs = parse_command("pretrain", ["--config", str(cfg), "--resume"])
    assert kwargs["resume"] is True and kwargs["max_steps"] == 1000
    cfg.write_text("args:\n  data: d\n  tokenizer: t\n  out: o\n  lr: 1e-3\n  max_steps: '20'\n", encoding="utf-8")
    _, kwargs = parse_command("pretrain", ["--config", str(cfg)])
    assert kwargs["lr"] == 0.001 and kwargs["max_steps"] == 20  # as the command line would read them


def test_a_moved_runs_config_replays_into_the_folder_it_is_in(tmp_path):
    """A run folder copied or moved elsewhere: `--config COPY/config.yaml --resume` continues the copy, not
    the folder its config.yaml was written in (which may still exist); --out still overrides."""
    run_config = {"args": {"data": "data/tr", "tokenizer": "tok/bpe", "out": str(tmp_path / "original"),
                           "max_steps": 10}}
    copy = tmp_path / "copy"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "config.yaml").write_text(yaml.safe_dump(run_config), encoding="utf-8")
    _, kwargs = parse_command("pretrain", ["--config", str(copy / "config.yaml"), "--resume"])
    assert kwargs["out"] == str(copy)
    _, kwargs = parse_command("pretrain", ["--config", str(copy / "config.yaml"), "--out", "runs/z"])
    assert kwargs["out"] == "runs/z"
    # a config.yaml kept as a template outside any run folder keeps its recorded out
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.yaml").write_text(yaml.safe_dump(run_config), encoding="utf-8")
    _, kwargs = parse_command("pretrain", ["--config", str(tmp_path / "configs" / "config.yaml")])
    assert kwargs["out"] == str(tmp_path / "original")


def test_positional_from_a_config_file(tmp_path, monkeypatch):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("run: runs/x\n", encoding="utf-8")
    assert parse_command("report", ["--config", str(cfg)])[1] == {"run": "runs/x"}
    assert parse_command("report", ["--config", str(cfg), "runs/y"])[1] == {"run": "runs/y"}
    assert parse_command("report", ["runs/z", "--out", "r.md"])[1] == {"run": "runs/z", "out": "r.md"}


def test_missing_required_flag_still_refused(capsys):
    assert main(["data", "prepare", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fidan: error: fidan data prepare:") and "--source" in err[0]


def test_typed_errors_print_one_line_and_exit_2(monkeypatch, capsys):
    for cls in (BadInput, BadConfig, BadRunState):
        assert issubclass(cls, FidanError) and cls.exit_code == 2

        def boom(model: str, _cls=cls) -> None:
            """Fails.

            Args:
                model: a model.
            """
            raise _cls(f"{_cls.__name__}: what, where, how to fix")

        monkeypatch.setattr("fidan.cli.load_function", lambda name, f=boom: f)
        assert main(["generate", "--model", "m"]) == 2
        assert capsys.readouterr().err == f"fidan: error: {cls.__name__}: what, where, how to fix\n"


def test_device_choice(monkeypatch):
    import torch

    from fidan.runtime.device import pick_device

    assert pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(BadInput, match=r"--device mps .*not available.*--device cpu"):
        pick_device("mps")
    with pytest.raises(BadInput, match="unknown --device tpu; use auto, cpu, cuda or mps"):
        pick_device("tpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("mps") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    import fidan.runtime.device as device

    monkeypatch.setattr(device, "mps_works", lambda: True)
    assert pick_device("auto") == "mps"  # no CUDA, a working Apple GPU
    monkeypatch.setattr(device, "mps_works", lambda: False)
    assert pick_device("auto") == "cpu"
    from fidan.runtime.perf import resolve_precision

    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: major <= 14)
    assert resolve_precision("auto", "mps") == "bf16"
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: False)
    assert resolve_precision("auto", "mps") == "fp32"


def test_a_mistyped_command_is_answered_with_the_nearest_and_help_lists_version(capsys):
    assert main(["pretrian"]) == 2
    assert "did you mean `fidan pretrain`?" in capsys.readouterr().err
    assert main(["vocab", "extnd"]) == 2
    assert main(["--help"]) == 0
    assert "--version" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert "--grad-checkpointing" in out and "--no-grad-checkpointing" not in out  # off by default: no negation
    assert "--compile" in out and "--no-compile" in out  # left to fidan by default: both ways shown
    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    assert "--no-pack" in capsys.readouterr().out  # on by default: its negation is how to turn it off


def test_a_closed_pipe_stops_the_command_quietly(monkeypatch, tmp_path, capsys):
    """`fidan ... | head`: the reader leaving is not an error to report (no traceback), exit 141 as Unix tools."""
    import sys

    import fidan.cli as cli

    def stage(**_):
        raise BrokenPipeError

    monkeypatch.setattr(cli, "parse_command", lambda name, rest: (stage, {}))
    out = open(tmp_path / "out", "w")  # noqa: SIM115  (the command points this file's descriptor elsewhere)
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["generate"]) == 141
    assert capsys.readouterr().err == ""
    out.close()
