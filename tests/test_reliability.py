"""Crash safety under fault injection: runs killed with SIGKILL at seeded random moments (checkpoint writes
included) resume exactly; damaged checkpoints are detected and the one before is used; a folder has one
writer at a time, and a killed writer never leaves it locked."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from fidan.artifacts.runs import checkpoint_damage, checkpoint_dirs, load_checkpoint_state, read_metrics
from fidan.errors import FidanError
from fidan.training.pretrain import pretrain
from fidan.training.sft import sft

TRIALS = 10
PRE = dict(batch_size=4, block_size=32, eval_every=4, eval_windows=4, warmup_steps=2, max_steps=12,
           checkpoint_every=2, keep_checkpoints=2, quiet=True, precision="fp32", peak_gflops=100.0)
SFT = dict(batch_size=4, eval_every=4, warmup_steps=2, max_steps=12, checkpoint_every=2, keep_checkpoints=2,
           quiet=True, precision="fp32", peak_gflops=100.0)
CHILD_TIMEOUT = 60


def _losses(run) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run) if r["kind"] == "train"]


def _run_quietly(fn, kwargs) -> None:
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child exits with it open
    fn(**kwargs)


def _kill_after(fn, kwargs: dict, delay: float) -> bool:
    """Run ``fn(**kwargs)`` in a forked child and SIGKILL it after ``delay`` seconds; True if it was killed."""
    child = multiprocessing.get_context("fork").Process(target=_run_quietly, args=(fn, kwargs))
    child.start()
    child.join(delay)
    killed = child.is_alive()
    if killed:
        os.kill(child.pid, signal.SIGKILL)
    child.join(CHILD_TIMEOUT)
    return killed


def _trials(fn, args: dict, tmp_path, seed: int) -> dict:
    """Kill-and-resume trials against one uninterrupted run; returns what happened, for the report."""
    whole = tmp_path / "whole"
    fn(out=str(whole), **args)
    expected = _losses(whole)
    t0 = time.time()  # how long a (forked, warm) child takes, to draw the moments from
    _kill_after(fn, {**args, "out": str(tmp_path / "timed")}, CHILD_TIMEOUT)
    span = time.time() - t0
    rng = random.Random(seed)
    killed = mid_write = 0
    for trial in range(TRIALS):
        run = tmp_path / f"t{trial}"
        if _kill_after(fn, {**args, "out": str(run)}, rng.uniform(0.02, 0.95 * span)):
            killed += 1
            folder = run / "checkpoints"
            mid_write += bool(folder.exists() and any(p.name.endswith(".tmp") for p in folder.iterdir()))
            for ckpt in checkpoint_dirs(run):  # every complete checkpoint is sound and loads
                assert checkpoint_damage(ckpt) is None
                load_checkpoint_state(ckpt)
        fn(out=str(run), resume=True, **args)
        assert _losses(run) == expected, f"trial {trial}"
        assert not any(p.name.endswith(".tmp") for p in (run / "checkpoints").iterdir())
    return {"trials": TRIALS, "killed": killed, "killed_during_a_checkpoint_write": mid_write}


def test_pretraining_killed_at_random_moments_resumes_exactly(tmp_path, data_dir, tokenizer_dir):
    result = _trials(pretrain, dict(data=str(data_dir), tokenizer=str(tokenizer_dir), **PRE), tmp_path, seed=11)
    print(json.dumps({"pretrain": result}))
    assert result["killed"] >= TRIALS // 2


@pytest.fixture(scope="module")
def base_and_data(tmp_path_factory, tokenizer_dir):
    import torch

    from fidan.artifacts.runs import copy_tokenizer, save_weights
    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.model.gpt import GPT, GPTConfig

    root = tmp_path_factory.mktemp("rel")
    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    save_weights(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)), root / "base")
    copy_tokenizer(tok, root / "base")
    (root / "base" / "config.yaml").write_text("stage: pretrain\ntrain: {lr: 0.003, optimizer: adamw}\n")
    rows = [{"instruction": f"Soru {i}: başkent neresi?", "output": f"Ankara, {i}."} for i in range(40)]
    (root / "sft.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return root


def test_tuning_killed_at_random_moments_resumes_exactly(tmp_path, base_and_data):
    args = dict(model=str(base_and_data / "base"), data=str(base_and_data / "sft.jsonl"), **SFT)
    result = _trials(sft, args, tmp_path, seed=12)
    print(json.dumps({"sft": result}))
    assert result["killed"] >= TRIALS // 2


def test_a_damaged_checkpoint_is_detected_and_the_one_before_is_used(tmp_path, data_dir, tokenizer_dir, capsys):
    args = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), **{**PRE, "keep_checkpoints": 3})
    pretrain(out=str(tmp_path / "whole"), **args)
    run = tmp_path / "run"
    pretrain(out=str(run), until_step=6, **args)
    newest = checkpoint_dirs(run)[-1]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short
    assert "does not match its checksum" in checkpoint_damage(newest)
    pretrain(out=str(run), resume=True, **{**args, "quiet": False})
    out = capsys.readouterr().out
    assert f"checkpoint {newest} is damaged" in out
    assert _losses(run) == _losses(tmp_path / "whole")
    # every checkpoint damaged: one line, nothing removed
    for ckpt in checkpoint_dirs(run):
        (ckpt / "state.pt").write_bytes(b"")
    with pytest.raises(FidanError, match="every checkpoint .* is damaged"):
        pretrain(out=str(run), resume=True, **args)
    assert (run / "model.safetensors").exists()


HOLD = """
import sys, time
from fidan.runtime.lock import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_one_writer_per_folder_and_a_killed_writer_leaves_no_lock(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FidanError, match=rf"being written by another fidan process \(pid {holder.pid} "):
            pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), **PRE)
        assert not run.exists()  # refused before anything was written
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    s = pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), **PRE)  # the lock died with it
    assert s["step"] == PRE["max_steps"]


def test_a_lost_checksum_file_is_damage_too(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), until_step=4, **PRE)
    newest = checkpoint_dirs(run)[-1]
    (newest / "checksums.json").unlink()
    assert checkpoint_damage(newest) == "checksums.json is missing"
    assert checkpoint_damage(checkpoint_dirs(run)[0]) is None


def test_tuning_killed_before_it_wrote_its_settings_resumes_as_a_new_run(tmp_path, base_and_data):
    """What a kill during start-up leaves (the folder and its tokenizer, no config.yaml): --resume must use
    the same settings (learning rate from the base) as a fresh run, not fallbacks."""
    import shutil

    args = dict(model=str(base_and_data / "base"), data=str(base_and_data / "sft.jsonl"), **SFT)
    sft(out=str(tmp_path / "whole"), **args)
    early = tmp_path / "early"
    early.mkdir()
    shutil.copytree(tmp_path / "whole" / "tokenizer", early / "tokenizer")
    sft(out=str(early), resume=True, **args)
    assert _losses(early) == _losses(tmp_path / "whole")
