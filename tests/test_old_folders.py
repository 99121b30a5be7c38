"""Folders written by an earlier fidan keep working: tokenizer, data folder, instruction set and run folders.

tests/fixtures/v1/ holds folders written by fidan 0.1.0 (the commit is in expected.json, the commands in
tests/fixtures/v1/README.md), with what that code gave on them: token ids, greedy generations, bits per byte
and the losses of the steps after a resume. Each test copies the folders to a new place first: they record
absolute paths to where they were written, which no longer exist, so nothing may depend on them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fidan.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "v1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
CPU = ["--device", "cpu"]


@pytest.fixture
def old(tmp_path, monkeypatch):
    """The v1 folders copied to tmp_path, which is also the working folder (the commands name them relatively)."""
    if Path(EXPECTED["written_in"]).exists():
        pytest.skip(f"{EXPECTED['written_in']} exists: the folders' recorded paths would still lead there")
    root = tmp_path / "moved"
    shutil.copytree(FIXTURES, root, ignore=shutil.ignore_patterns("*.py", "*.md", "expected.json", "__pycache__"))
    monkeypatch.chdir(root)
    return root


def losses_after(run: Path, step: int) -> dict[str, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return {str(r["step"]): r["loss"] for r in records if r.get("kind") == "train" and r["step"] > step}


def test_the_tokenizer_gives_the_recorded_ids(old):
    from transformers import AutoTokenizer

    from fidan.artifacts.tokenizer import load_tokenizer

    sentence, ids = EXPECTED["sentence"], EXPECTED["ids"]
    for folder in (old / "tok", old / "runs" / "pretrain" / "tokenizer"):
        tok = load_tokenizer(folder)
        assert tok.encode(sentence) == ids, folder
        assert tok.decode(ids) == sentence
        assert AutoTokenizer.from_pretrained(str(folder)).encode(sentence, add_special_tokens=False) == ids


@pytest.mark.parametrize("name", ["pretrain", "sft", "lora", "lora-adapter"])
def test_greedy_generation_gives_the_recorded_text(old, capsys, name):
    """A run folder, and a LoRA run's adapter folder over its base (found where it moved with the run)."""
    model = "runs/lora/adapter" if name == "lora-adapter" else f"runs/{name}"
    prompt = EXPECTED["prompt"] if name == "pretrain" else EXPECTED["chat_prompt"]
    capsys.readouterr()
    assert main(["generate", "--model", model, "--prompt", prompt, "--temperature", "0", "--max-new-tokens",
                 str(EXPECTED["max_new_tokens"]), "--no-stream", *CPU]) == 0
    assert capsys.readouterr().out.removesuffix("\n") == EXPECTED["generate"][name]


@pytest.mark.parametrize("name", ["pretrain", "sft", "lora"])
def test_bits_per_byte_are_the_recorded_figure(old, name):
    out = old / f"bpb-{name}.json"
    assert main(["eval", "bpb", "--model", f"runs/{name}", "--text", "data", "--out", str(out), "--quiet", *CPU]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["bpb"] == pytest.approx(EXPECTED["bpb"][name], abs=1e-4)


def test_the_data_folder_trains_a_new_model_on_its_token_files(old):
    """The token files written with the old tokenizer are read as they are, not encoded again."""
    tokens = old / "data" / "tokens"
    before = {p.relative_to(tokens): p.stat().st_mtime_ns for p in tokens.rglob("*")}
    assert main(["pretrain", "--data", "data", "--tokenizer", "tok", "--out", "runs/new", "--n-layer", "1",
                 "--n-head", "2", "--n-embd", "16", "--block-size", "32", "--batch-size", "2", "--max-steps", "2",
                 "--eval-windows", "2", "--peak-gflops", "100", "--quiet", *CPU]) == 0
    assert {p.relative_to(tokens): p.stat().st_mtime_ns for p in tokens.rglob("*")} == before
    assert losses_after(old / "runs" / "new", 0).keys() == {"1", "2"}


@pytest.mark.parametrize("name", ["pretrain", "sft", "lora"])
def test_a_stopped_run_resumes_exactly(old, name):
    """The run's own command with --resume (pretrain: its config.yaml replayed, paths given again) continues
    from the checkpoint and logs the losses the old code logged for the same steps."""
    assert main(EXPECTED["resume_commands"][name]) == 0
    got = losses_after(old / "runs" / name, EXPECTED["stopped_at"][name])
    assert got == pytest.approx(EXPECTED["resume"][name], rel=1e-4)
    if name == "lora":  # the adapters written now name the base where it is now
        config = json.loads((old / "runs/lora/adapter/adapter_config.json").read_text(encoding="utf-8"))
        assert Path(config["base_model_name_or_path"]).resolve() == (old / "runs" / "pretrain").resolve()
