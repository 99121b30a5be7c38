"""Pretraining: exact resume, run-folder artifacts, checkpoints, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from fidan.artifacts.loader import load_model
from fidan.artifacts.runs import checkpoint_dirs, read_metrics
from fidan.errors import FidanError
from fidan.model.gpt import GPT, GPTConfig, config_from_preset
from fidan.training.pretrain import pretrain

TINY = dict(batch_size=4, block_size=32, eval_every=4, eval_windows=4, warmup_steps=3, quiet=True)


def losses(run):
    return {r["step"]: r["loss"] for r in read_metrics(run) if r["kind"] == "train"}


def test_ders_preset_matches_the_lesson():
    model = GPT(config_from_preset("ders", vocab_size=500))
    assert model.num_params() == 937_728  # ~0.94M, the lesson's model
    cfg = model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.dropout) == (4, 4, 128, 128, 0.1)


def test_exact_resume(tmp_path, data_dir, tokenizer_dir):
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), max_steps=12, checkpoint_every=5, **TINY)
    pretrain(out=str(tmp_path / "straight"), **common)
    pretrain(out=str(tmp_path / "resumed"), until_step=6, **common)
    assert max(losses(tmp_path / "resumed")) == 6
    pretrain(out=str(tmp_path / "resumed"), resume=True, **common)
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-6), f"step {step}: {a[step]} vs {b[step]}"
    # Dropout is on (0.1), so this also proves the RNG state was restored.
    assert config_from_preset("ders", 10).dropout > 0
    wa = load_model(tmp_path / "straight")[0].state_dict()
    wb = load_model(tmp_path / "resumed")[0].state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_run_folder_artifacts(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    summary = pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=8,
                       checkpoint_every=2, keep_checkpoints=2, **TINY)
    for name in ("config.yaml", "config.json", "model.safetensors", "metrics.jsonl", "plots/loss.png",
                 "tokenizer/tokenizer.json"):
        assert (run / name).exists(), name
    assert [p.name for p in checkpoint_dirs(run)] == ["step-000006", "step-000008"]
    evals = [r for r in read_metrics(run) if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [4, 8]
    assert all(r["val_bpb"] > 0 and isinstance(r["sample"], str) for r in evals)
    final = [r for r in read_metrics(run) if r["kind"] == "final"]
    assert [r["step"] for r in final] == [8] and summary["val_bpb"] == final[0]["val_bpb"]
    assert not list(run.rglob("*.tmp"))  # atomic writes leave nothing behind


def test_final_bpb_equals_eval_bpb(tmp_path, data_dir, tokenizer_dir):
    """One scoring rule: the run's last figure is `fidan eval bpb` on the same split."""
    from fidan.evaluation.bpb import eval_bpb

    run = tmp_path / "run"
    summary = pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=3,
                       precision="fp32", **TINY)
    result = eval_bpb(model=str(run), text=str(data_dir), split="val", batch_size=4)
    assert summary["val_bpb"] == pytest.approx(result["bpb"], rel=1e-6)
    assert summary["val_loss"] == pytest.approx(result["loss"], rel=1e-6)


def test_loss_goes_down(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=40, lr=3e-3, **TINY)
    evals = [r["val_loss"] for r in read_metrics(run) if r["kind"] == "eval"]
    assert evals[-1] < evals[0] - 0.5


def test_existing_run_needs_resume_or_force(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    args = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=2, **TINY)
    pretrain(**args)
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(FidanError, match="--resume.*--force"):
        pretrain(**args)
    assert (run / "metrics.jsonl").read_text() == before
    pretrain(**args, force=True)


def test_resume_without_checkpoint(tmp_path, data_dir, tokenizer_dir, capsys):
    # a run that never began (or was killed before its first checkpoint): --resume starts it, so a requeued
    # job can always pass --resume
    args = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / "new"), max_steps=4, **TINY)
    s = pretrain(resume=True, **{**args, "quiet": False, "until_step": 2})
    assert s["step"] == 2 and "no checkpoint yet" in capsys.readouterr().out
    s = pretrain(resume=True, **{**args, "quiet": False})
    assert s["step"] == 4 and "resuming from step 2 (" in capsys.readouterr().out
    # a finished run that kept no checkpoint cannot be continued
    import shutil

    shutil.rmtree(tmp_path / "new" / "checkpoints")
    with pytest.raises(FidanError, match="no checkpoint"):
        pretrain(resume=True, **args)


def test_checkpoint_vocab_must_match_tokenizer(tmp_path, data_dir, tokenizer_dir):
    from fidan.tokenizer.train import train_tokenizer

    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=2, **TINY)
    other = tmp_path / "tok300"
    train_tokenizer(data=str(data_dir), out=str(other), vocab_size=300)
    with pytest.raises(FidanError, match="vocabulary of .* tokens but tokenizer"):
        pretrain(data=str(data_dir), tokenizer=str(other), out=str(run), resume=True, max_steps=4, **TINY)
    with pytest.raises(FidanError, match="vocabulary"):
        load_model(run, tokenizer=other)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (dict(n_embd=130, n_head=4), "divisible by n_head"),
        (dict(n_layer=0), "n_layer must be a positive integer"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_invalid_model_config(overrides, needle):
    with pytest.raises(FidanError, match=needle):
        GPTConfig(**overrides)


def test_unknown_preset(tmp_path, data_dir, tokenizer_dir):
    with pytest.raises(FidanError, match="unknown preset"):
        pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / "r"), preset="nope", **TINY)


def test_block_longer_than_val_split(tmp_path, data_dir, tokenizer_dir):
    args = {**TINY, "block_size": 100_000}
    with pytest.raises(FidanError, match="fewer than one block"):
        pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / "r"), **args)


def test_config_json_is_readable(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=1, **TINY)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["vocab_size"] == 400 and cfg["block_size"] == 32


def test_the_model_is_sized_as_the_lesson_sizes_it(tmp_path, data_dir, tokenizer_dir):
    """--n-layer --n-head --n-embd --mlp-ratio: the lesson's knobs, over the preset; bad shapes are one line."""
    import yaml

    from fidan.cli import main

    run = tmp_path / "r"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=1, block_size=32, n_layer=2,
             n_head=2, n_embd=48, mlp_ratio=2.0, eval_every=10, quiet=True)
    model = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["model"]
    assert (model["n_layer"], model["n_head"], model["n_embd"], model["mlp_ratio"]) == (2, 2, 48, 2.0)
    assert main(["pretrain", "--data", str(data_dir), "--tokenizer", str(tokenizer_dir), "--out", str(tmp_path / "b"),
                 "--n-embd", "50", "--n-head", "4"]) == 2
    with pytest.raises(FidanError, match="with --init the model keeps its own shape"):
        pretrain(data=str(data_dir), init=str(run), out=str(tmp_path / "c"), n_layer=3, quiet=True)
