"""Generation and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fidan.cli import build_command_parser, main
from fidan.errors import FidanError
from fidan.inference import sample_next
from fidan.inference.generate import generate
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
    out = generate(model=str(run_dir), prompt="Ankara", max_new_tokens=15, seed=1, stream=True, quiet=False)
    assert capsys.readouterr().out == out[0] + "\n"


def test_called_from_python_it_prints_nothing_unless_asked(run_dir, tmp_path, capsys):
    """A function returns its results quietly; the command (and quiet=False) prints them; --quiet silences it."""
    from fidan.evaluation.bpb import eval_bpb
    from fidan.evaluation.mc import eval_mc

    text = tmp_path / "t.txt"
    text.write_text("Ankara Türkiye'nin başkentidir.\n\nBilim yolumuzu aydınlatır.\n", encoding="utf-8")
    for stream in (True, False):
        out = generate(model=str(run_dir), prompt="Ankara", max_new_tokens=6, seed=1, stream=stream)
        assert out[0].startswith("Ankara")
    eval_bpb(model=str(run_dir), text=str(text), out=str(tmp_path / "b.json"), block_size=16)
    eval_mc(model=str(run_dir), data="tr-harmony", out=str(tmp_path / "m.json"), baseline=False)
    assert capsys.readouterr() == ("", "")
    eval_bpb(model=str(run_dir), text=str(text), out=str(tmp_path / "b.json"), block_size=16, force=True,
             quiet=False)
    assert "bits per byte" in capsys.readouterr().out
    assert main(["eval", "bpb", "--model", str(run_dir), "--text", str(text), "--out", str(tmp_path / "b.json"),
                 "--block-size", "16", "--force"]) == 0
    assert "bits per byte" in capsys.readouterr().out
    assert main(["generate", "--model", str(run_dir), "--prompt", "Ankara", "--max-new-tokens", "6", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


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
    with pytest.raises(FidanError, match="--repetition-penalty"):
        generate(model=str(run_dir), repetition_penalty=0, stream=False)
    with pytest.raises(FidanError, match="--num-samples"):
        generate(model=str(run_dir), num_samples=0, stream=False)
    with pytest.raises(FidanError, match="model not found"):
        generate(model=str(tmp_path / "nothing"), stream=False)


def test_no_stream_prints_the_texts(run_dir, capsys):
    out = generate(model=str(run_dir), prompt="Ankara", max_new_tokens=8, num_samples=2, seed=1, stream=False,
                   quiet=False)
    assert capsys.readouterr().out == f"{out[0]}\n---\n{out[1]}\n"
    assert main(["generate", "--model", str(run_dir), "--prompt", "Ankara", "--max-new-tokens", "8", "--seed", "1",
                 "--no-stream"]) == 0
    assert capsys.readouterr().out == out[0] + "\n"


def test_samples_are_one_batch_each_as_if_alone(run_dir, capsys):
    both = generate(model=str(run_dir), prompt="Bilim", max_new_tokens=12, num_samples=2, seed=4, stream=True,
                    quiet=False)
    assert capsys.readouterr().out == f"{both[0]}\n---\n{both[1]}\n"
    alone = generate(model=str(run_dir), prompt="Bilim", max_new_tokens=12, seed=5, stream=False)
    assert both[1] == alone[0]  # sample i draws with seed + i, batched or not


def test_stop_strings_end_the_text(run_dir):
    full = generate(model=str(run_dir), prompt="Türkiye", max_new_tokens=20, temperature=0, stream=False)[0]
    made = full[len("Türkiye"):]
    assert len(made) >= 2, full
    stop = made[len(made) // 2:][:3]  # a piece from the middle of what the model wrote
    cut = generate(model=str(run_dir), prompt="Türkiye", max_new_tokens=20, temperature=0, stop=[stop],
                   stream=False)[0]
    assert cut == full[:full.index(stop, len("Türkiye"))]


def test_generate_help_describes_every_option():
    import argparse

    parser = argparse.ArgumentParser(prog="fidan generate")
    build_command_parser(parser, "generate")
    text = " ".join(parser.format_help().split())
    for flag, words in [("--temperature", "0 is greedy"), ("--top-k", "k most likely"),
                        ("--repetition-penalty", "less likely"), ("--stop", "repeatable"),
                        ("--num-samples", "seed + i"), ("--no-stream", "printed once complete")]:
        assert flag in text and words in text, flag
    args = parser.parse_args(["--model", "r", "--stop", "\n\n", "--stop", ".", "--no-stream"])
    assert args.stop == ["\n\n", "."] and args.stream is False


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


def test_a_saved_run_gives_the_cacheless_greedy_text(run_dir):
    """A run folder written by `fidan pretrain` loads, and the engine's greedy text (KV cache, then the sliding
    window past the 32-token block) is the one the path without a cache gives."""
    from fidan.artifacts.loader import load_model

    net, tok = load_model(run_dir)
    idx = torch.tensor([tok.encode("Türkiye")])
    new: list[int] = []
    with torch.no_grad():
        for _ in range(45):
            nxt = int(net(idx[:, -net.config.block_size:])[0][0, -1].argmax())
            if nxt == tok.eos_id:
                break
            new.append(nxt)
            idx = torch.cat([idx, torch.tensor([[nxt]])], dim=1)
    got = generate(model=str(run_dir), prompt="Türkiye", max_new_tokens=45, temperature=0, stream=False)
    assert got == ["Türkiye" + tok.decode(new)]
