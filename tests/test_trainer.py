"""The shared training loop: time limits and budgets, warm-up cap, precision, compile, loggers, config replay."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from fidan.artifacts.runs import checkpoint_dirs, read_metrics
from fidan.model.gpt import GPT, GPTConfig
from fidan.training.pretrain import pretrain
from fidan.training.run_folder import truncate_metrics

TINY = dict(batch_size=4, block_size=32, eval_every=4, eval_windows=4, warmup_steps=3, quiet=True)


def train_records(run) -> list[dict]:
    return [r for r in read_metrics(run) if r["kind"] == "train"]


def test_max_minutes_stops_with_a_checkpoint_and_resumes(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    # (a 100,000-step plan would be compiled by default: this test is about the clock, so it stays eager)
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=100_000, compile=False,
                  **TINY)
    s = pretrain(max_minutes=0.01, **common)  # 0.6 s
    assert s["stopped"] == "time limit" and 0 < s["step"] < 100_000
    assert checkpoint_dirs(run)[-1].name == f"step-{s['step']:06d}"
    again = pretrain(max_minutes=0.01, resume=True, **common)
    assert again["step"] > s["step"]
    assert [r["step"] for r in train_records(run)] == list(range(1, again["step"] + 1))


def test_budget_plans_the_schedule_to_the_time(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    s = pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=100_000,
                 budget_minutes=0.04, lr=1e-3, min_lr_ratio=0.1, **{**TINY, "eval_every": 1000})
    # The schedule was re-planned from measured step times and ran to its end within the budget.
    assert s["stopped"] is None and s["step"] == s["max_steps"] < 100_000
    lrs = [r["lr"] for r in train_records(run)]
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 0.15e-3  # warmed up, then decayed to the end
    assert s["wall_seconds"] < 0.04 * 60 * 1.5 + 1


@pytest.mark.parametrize("counts", ["wall", "training"])
def test_budget_counts_wall_time_or_training_time(tmp_path, data_dir, tokenizer_dir, counts):
    """Slow evaluations every other step: a wall-time budget ends with less training inside it, a
    training-time budget trains for the whole budget and runs past it on the wall clock."""
    s = pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / counts), max_steps=100_000,
                 budget_minutes=0.03, budget_counts=counts, **{**TINY, "eval_every": 2, "eval_windows": 32})
    budget = 0.03 * 60
    if counts == "training":
        assert s["train_seconds"] >= budget * 0.8 and s["wall_seconds"] > s["train_seconds"] * 1.5
    else:
        assert s["wall_seconds"] < budget * 2 + 1 and s["train_seconds"] < budget * 0.67


def test_warmup_longer_than_the_run_is_capped(tmp_path, data_dir, tokenizer_dir, capsys):
    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=12, lr=2e-3,
             **{**TINY, "warmup_steps": 50, "quiet": False})
    lrs = [r["lr"] for r in train_records(run)]
    assert max(lrs) == pytest.approx(2e-3)  # the peak is reached (at step 3 = a quarter of 12)
    assert lrs.index(max(lrs)) == 2
    assert "--warmup-steps 50 is more than 25% of a 12-step run; warming up for 3 steps" in capsys.readouterr().out


@pytest.mark.parametrize("bf16", [False, True])
def test_chunked_cross_entropy_matches_full_logits(bf16):
    """The chunked head and loss compute what the full logits do: the same loss and gradients to 1e-5
    (measured: 1e-7 apart in fp32 and under bf16 autocast, where both round the same matmuls)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    x = torch.randint(0, 300, (3, 16))
    y = torch.randint(0, 300, (3, 16))
    y[0, :5] = -100
    grads = []
    losses = []
    for chunked in (True, False):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(x, y, return_logits=not chunked)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-5)


def test_bf16_training_learns(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=30, lr=3e-3,
             precision="bf16", **TINY)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["train"]["precision"] == "bf16"
    evals = [r["val_loss"] for r in read_metrics(run) if r["kind"] == "eval"]
    assert evals[-1] < evals[0] - 0.3


def test_compiled_steps_equal_eager_steps(tmp_path, data_dir, tokenizer_dir):
    """torch.compile changes how the step runs, not what it computes: the losses of two compiled steps equal
    the eager run's to 1e-5 relative (inductor may reorder fp32 sums; without dropout, whose masks inductor
    draws from its own generator)."""
    pytest.importorskip("torch._inductor")
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), max_steps=2, precision="fp32", dropout=0.0,
                  **{**TINY, "block_size": 16, "eval_windows": 1})
    s = pretrain(out=str(tmp_path / "compiled"), compile=True, **common)
    pretrain(out=str(tmp_path / "eager"), **common)
    compiled = [r["loss"] for r in train_records(tmp_path / "compiled")]
    eager = [r["loss"] for r in train_records(tmp_path / "eager")]
    assert s["step"] == 2 and len(compiled) == 2
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert yaml.safe_load((tmp_path / "compiled" / "config.yaml").read_text())["train"]["compile"] is True


def test_fp16_needs_cuda(tmp_path, data_dir, tokenizer_dir):
    from fidan.errors import FidanError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(FidanError, match="--precision fp16 needs a CUDA GPU"):
        pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / "r"), precision="fp16", **TINY)
    assert not (tmp_path / "r").exists()


def test_config_yaml_replays_the_run(tmp_path, data_dir, tokenizer_dir):
    from fidan.cli import main

    first = tmp_path / "first"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(first), max_steps=5, **TINY)
    args = yaml.safe_load((first / "config.yaml").read_text())["args"]  # the settings nested by group
    assert args["train"]["max_steps"] == 5 and args["run"]["resume"] is False and args["run"]["force"] is False
    second = tmp_path / "second"
    assert main(["pretrain", "--config", str(first / "config.yaml"), "--out", str(second)]) == 0
    a = [r["loss"] for r in train_records(first)]
    assert a == [r["loss"] for r in train_records(second)] and len(a) == 5
    # A flag overrides a field of the file.
    third = tmp_path / "third"
    assert main(["pretrain", "--config", str(first / "config.yaml"), "--out", str(third), "--max-steps", "3"]) == 0
    assert len(train_records(third)) == 3
    # A run stopped with --until-step replays whole: the stop steered that session, not the run.
    cut = tmp_path / "cut"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(cut), max_steps=5, until_step=2, **TINY)
    assert "until_step" not in yaml.safe_load((cut / "config.yaml").read_text())["args"]["train"]
    assert main(["pretrain", "--config", str(cut / "config.yaml"), "--out", str(tmp_path / "replay")]) == 0
    assert len(train_records(tmp_path / "replay")) == 5


def test_loggers_mirror_metrics(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=4, logger=["csv"], **TINY)
    import csv

    with open(run / "metrics.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r.get("kind", "train") == "train" and r.get("loss")]
    assert [(int(float(r["step"])), float(r["loss"])) for r in train] == \
        [(r["step"], pytest.approx(r["loss"])) for r in train_records(run)]  # the same records, in order


def test_truncate_metrics_drops_later_steps_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"kind": "train", "step": s, "loss": 1.0}) for s in range(1, 6)]
    path.write_text("\n".join(lines) + '\n{"kind": "train", "st', encoding="utf-8")
    truncate_metrics(path, 3)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_checkpoints_the_current_step_and_resume_is_exact(sig, tmp_path, data_dir, tokenizer_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), max_steps=100_000, checkpoint_every=10_000,
                  compile=False, **{**TINY, "eval_every": 10_000})  # (eager: tests/test_compiling.py resumes compiled)
    argv = [sys.executable, "-m", "fidan", "pretrain", "--out", str(run)]
    for key, value in common.items():
        flag = key.replace("_", "-")
        argv += [f"--no-{flag}"] if value is False else [f"--{flag}"] + ([] if value is True else [str(value)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(train_records(run)) < 3:
        time.sleep(0.1)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("fidan: error: interrupted at step") and "--resume" in last
    step = max(r["step"] for r in train_records(run))
    assert checkpoint_dirs(run)[-1].name == f"step-{step:06d}"  # the step it stopped at, not an older one
    pretrain(out=str(run), resume=True, until_step=step + 3, **common)
    straight = tmp_path / "straight"
    pretrain(out=str(straight), until_step=step + 3, **common)
    a = {r["step"]: r["loss"] for r in train_records(straight)}
    b = {r["step"]: r["loss"] for r in train_records(run)}
    assert sorted(a) == sorted(b) == list(range(1, step + 4))
    assert all(a[s] == pytest.approx(b[s], abs=1e-6) for s in a)


def test_non_finite_steps_are_skipped_and_a_run_of_them_stops(tmp_path, data_dir, tokenizer_dir):
    from fidan.errors import BadRunState

    run = tmp_path / "run"
    # A learning rate this large blows the weights up within a few steps.
    with pytest.raises(BadRunState, match=r"5 steps in a row .* non-finite loss or gradient .*--resume") as e:
        pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=200, lr=1e9,
                 precision="fp32", **{**TINY, "warmup_steps": 0, "eval_every": 1000})
    assert "\n" not in str(e.value)
    records = train_records(run)
    skipped = [r for r in records if r.get("skipped")]
    assert len(skipped) >= 5 and [r["step"] for r in records[-5:]] == [r["step"] for r in skipped[-5:]]
    assert all(r.get("skipped") is None for r in records[:records.index(skipped[0])])  # finite steps trained


def test_a_folder_without_a_checkpoint_resumes_from_the_start(tmp_path, data_dir, tokenizer_dir, capsys):
    """A run killed before its first checkpoint is no dead end: --resume starts it again."""
    run = tmp_path / "run"
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=4, **TINY)
    pretrain(**common)
    import shutil

    shutil.rmtree(run / "checkpoints")
    (run / "model.safetensors").unlink()  # as if killed before the first checkpoint
    s = pretrain(resume=True, **{**common, "quiet": False})
    assert s["step"] == 4 and "no checkpoint yet" in capsys.readouterr().out
    assert [r["step"] for r in train_records(run)] == [1, 2, 3, 4]


def test_without_a_terminal_training_prints_plain_lines_not_a_bar(tmp_path, data_dir, tokenizer_dir, capsys):
    """nohup and Slurm logs get `step N/T: loss …` lines at a modest rate, no carriage-return bar."""
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / "r"), max_steps=40,
             **{**TINY, "quiet": False, "eval_every": 100})
    out, err = capsys.readouterr()
    lines = [x for x in out.splitlines() if x.startswith("step ") and ": loss " in x]
    assert lines[-1].startswith("step 40/40: loss ") and 2 <= len(lines) <= 21
    assert "\r" not in err
