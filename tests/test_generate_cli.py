"""Generation and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fidan.cli import COMMANDS, build_command_parser, main
from fidan.core.gpt import sample_next
from fidan.errors import FidanError
from fidan.generation.generate import generate
from fidan.training.pretrain import pretrain


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir, tokenizer_dir):
    run = tmp_path_factory.mktemp("gen") / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=20, batch_size=4,
             block_size=32, eval_every=10, eval_windows=2, lr=3e-3, quiet=True)
    return run


def test_same_seed_same_text(run_dir):
    a = generate(model=str(run_dir), prompt="Türkiye", max_new_tokens=15, seed=3, stream=False)
    b = generate(model=str(run_dir), prompt="Türkiye", max_new_tokens=15, seed=3, stream=False)
    assert a == b and a[0].startswith("Türkiye")


def test_streamed_output_equals_returned_text(run_dir, capsys):
    out = generate(model=str(run_dir), prompt="Ankara", max_new_tokens=15, seed=1, stream=True)
    assert capsys.readouterr().out == out[0] + "\n"


def test_greedy_is_deterministic_across_seeds(run_dir):
    a = generate(model=str(run_dir), prompt="Bilim", max_new_tokens=10, temperature=0, seed=1, stream=False)
    b = generate(model=str(run_dir), prompt="Bilim", max_new_tokens=10, temperature=0, seed=2, stream=False)
    assert a == b


def test_sampling_filters():
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]])
    gen = torch.Generator().manual_seed(0)
    picks = {int(sample_next(logits, 1.0, top_k=2, generator=gen)) for _ in range(200)}
    assert picks <= {0, 1} and len(picks) == 2
    picks = {int(sample_next(logits, 1.0, top_p=0.5, generator=gen)) for _ in range(50)}
    assert picks == {0}  # the top token alone carries more than half the mass
    assert int(sample_next(logits, 0.0)) == 0


def test_generate_bad_arguments(run_dir, tmp_path):
    with pytest.raises(FidanError, match="--top-p"):
        generate(model=str(run_dir), top_p=1.5, stream=False)
    with pytest.raises(FidanError, match="model not found"):
        generate(model=str(tmp_path / "nothing"), stream=False)


def test_every_command_builds_its_parser():
    import argparse

    for name in COMMANDS:
        parser = argparse.ArgumentParser(prog=f"fidan {name}")
        build_command_parser(parser, name)
        assert parser.format_help()


def test_cli_generate_end_to_end(run_dir):
    result = subprocess.run([sys.executable, "-m", "fidan", "generate", "--model", str(run_dir), "--prompt",
                             "Türkiye'nin başkenti", "--max-new-tokens", "5", "--seed", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Türkiye'nin başkenti")


def test_cli_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "pretrain" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert main(["data"]) == 2
    assert "needs a subcommand" in capsys.readouterr().err
