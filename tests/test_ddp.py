"""Data parallelism: two CPU processes under torchrun (gloo) train exactly like one process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from fidan.artifacts.runs import read_metrics
from fidan.training.pretrain import pretrain

# fp32 and no dropout: then a step depends only on the global batch, not on how it is split.
COMMON = dict(preset="ders", block_size=32, dropout=0.0, max_steps=10, warmup_steps=2, lr=3e-3,
              eval_every=100, eval_windows=4, checkpoint_every=5, precision="fp32", seed=7)


def losses(run) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run) if r["kind"] == "train"}


def torchrun(nproc: int, args: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "fidan", "pretrain"]
    for key, value in args.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_processes_match_one(tmp_path, data_dir, tokenizer_dir):
    paths = dict(data=str(data_dir), tokenizer=str(tokenizer_dir))
    # One process: 4 micro-batches of 2 per step (global batch 8).
    pretrain(out=str(tmp_path / "single"), batch_size=2, grad_accum=4, quiet=True, **paths, **COMMON)
    # Two processes: 2 micro-batches of 2 each (gradient accumulation under no_sync), stopped at step 5 ...
    ddp = tmp_path / "ddp"
    torchrun(2, dict(out=str(ddp), batch_size=2, grad_accum=2, until_step=5, quiet=True, **paths, **COMMON))
    assert max(losses(ddp)) == 5
    assert (ddp / "checkpoints" / "step-000005").exists()
    # ... and resumed in one process with the same global batch: exact resume across world sizes.
    pretrain(out=str(ddp), batch_size=4, grad_accum=2, resume=True, quiet=True, **paths, **COMMON)
    a, b = losses(tmp_path / "single"), losses(ddp)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-5), f"step {step}: {a[step]} vs {b[step]}"
    assert a[10] < a[1]  # it trained


def test_fsdp_two_processes_match_one(tmp_path, data_dir, tokenizer_dir):
    paths = dict(data=str(data_dir), tokenizer=str(tokenizer_dir))
    args = {**COMMON, "max_steps": 6, "checkpoint_every": 3}
    pretrain(out=str(tmp_path / "single"), batch_size=2, grad_accum=4, quiet=True, **paths, **args)
    sharded = tmp_path / "fsdp"
    torchrun(2, dict(out=str(sharded), batch_size=2, grad_accum=2, fsdp=True, optimizer="adamw", quiet=True,
                     **paths, **args))
    a, b = losses(tmp_path / "single"), losses(sharded)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    # FSDP sums gradients in another order (reduce-scatter of flat shards) than one process accumulating four
    # micro-batches: fp32 rounding moves the loss by a few parts in a million per step (2.2e-6 seen at step 5)
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-5), f"step {step}: {a[step]} vs {b[step]}"
    # Checkpoints hold the full, unsharded weights: the same model a single process saves.
    from fidan.artifacts.loader import load_model

    wa, wb = load_model(tmp_path / "single")[0].state_dict(), load_model(sharded)[0].state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)



def test_fsdp_shards_a_transformers_model_by_decoder_layer_and_resumes_exactly(tmp_path, data_dir, tokenizer_dir):
    """A transformers base under torchrun --fsdp (gloo): one FSDP unit per decoder layer; stopped at step 2 and
    resumed under FSDP, it logs the losses of one process, and saves the same model."""
    from conftest import write_hf_causal_lm

    from fidan.runtime.distributed import shard_units

    base = write_hf_causal_lm(tmp_path / "base", tokenizer_dir, dtype="float32")
    args = dict(init=str(base), data=str(data_dir), block_size=32, max_steps=4, warmup_steps=1, lr=1e-3,
                eval_every=100, checkpoint_every=2, precision="fp32", optimizer="adamw", seed=7, quiet=True)
    pretrain(out=str(tmp_path / "single"), batch_size=2, grad_accum=4, **args)
    sharded = tmp_path / "fsdp"
    torchrun(2, dict(out=str(sharded), batch_size=2, grad_accum=2, fsdp=True, until_step=2, **args))
    torchrun(2, dict(out=str(sharded), batch_size=2, grad_accum=2, fsdp=True, resume=True, **args))
    a, b = losses(tmp_path / "single"), losses(sharded)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-5), f"step {step}: {a[step]} vs {b[step]}"
    from fidan.artifacts.loader import load

    wa, wb = load(tmp_path / "single").model.state_dict(), load(sharded).model.state_dict()
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    units = shard_units(load(base).model)
    assert [type(u).__name__ for u in units] == ["Qwen3DecoderLayer"] * 2

def test_sft_two_processes_match_one(tmp_path, tokenizer_dir):
    """Instruction tuning under torchrun: the loss is a mean over the global batch's answer tokens."""
    import json

    from fidan.artifacts.runs import copy_tokenizer, save_weights
    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.model.gpt import GPT, GPTConfig
    from fidan.training.sft import sft

    tok = load_tokenizer(tokenizer_dir)
    base = tmp_path / "base"
    torch.manual_seed(0)
    save_weights(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32,
                               dropout=0.0)), base)
    copy_tokenizer(tok, base)
    data = tmp_path / "inst.jsonl"
    qa = [("Başkent neresidir?", "Ankara."), ("Bir hafta kaç gündür?", "Yedi gündür, her hafta öyle."),
          ("Su kaç derecede kaynar?", "Yüz."), ("Çay nerede yetişir?", "Rize'de ve Karadeniz kıyısında.")]
    rows = [{"instruction": f"{q} ({i})", "output": a} for i in range(10) for q, a in qa]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    args = dict(model=str(base), data=str(data), val_fraction=0, max_steps=6, warmup_steps=1, lr=3e-3,
                precision="fp32", eval_every=100, checkpoint_every=100, seed=3)
    sft(out=str(tmp_path / "single"), batch_size=2, grad_accum=4, device="cpu", quiet=True, **args)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "fidan", "sft"]
    for key, value in {**args, "out": str(tmp_path / "ddp"), "batch_size": 2, "grad_accum": 2}.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(argv + ["--quiet"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-5), f"step {step}: {a[step]} vs {b[step]}"
    assert a[6] < a[1]
