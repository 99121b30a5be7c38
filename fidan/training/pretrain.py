"""`fidan pretrain`: a flat, explicit training loop with exact resume.

Exact resume: the learning rate is a pure function of the step, batches come from a seeded
generator whose state is checkpointed, and the global RNG (dropout) is checkpointed too. A run
stopped at step N and resumed produces the same loss at every later step as a run that never stopped.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from fidan import __version__
from fidan.core.checkpoint import (
    check_vocab,
    checkpoint_dirs,
    clear_run,
    copy_tokenizer,
    is_run,
    load_checkpoint_state,
    load_weights,
    read_metrics,
    read_model_config,
    save_checkpoint,
    save_weights,
)
from fidan.core.datadir import load_manifest
from fidan.core.gpt import GPT, config_from_preset
from fidan.core.io import append_jsonl, atomic_write_text
from fidan.core.metrics import evaluate_bpb
from fidan.core.optim import lr_at, make_adamw, set_lr
from fidan.core.plots import plot_loss
from fidan.core.runtime import peak_rss_mb, pick_device
from fidan.core.tokenizer_io import load_tokenizer
from fidan.core.tokens import TokenSplit, encode_splits
from fidan.errors import FidanError

SAMPLE_PROMPT = "Türkiye"


@dataclass
class TrainSettings:
    preset: str
    max_steps: int
    batch_size: int
    grad_accum: int
    lr: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    eval_every: int
    eval_windows: int
    checkpoint_every: int
    keep_checkpoints: int
    seed: int


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metrics logged after the checkpoint (they will be logged again)."""
    if not path.exists():
        return
    import json

    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def pretrain(
    data: str,
    tokenizer: str,
    out: str,
    preset: str = "ders",
    max_steps: int = 1000,
    until_step: int | None = None,
    max_minutes: float | None = None,
    batch_size: int = 32,
    grad_accum: int = 1,
    block_size: int | None = None,
    dropout: float | None = None,
    lr: float = 1e-3,
    min_lr_ratio: float = 0.1,
    warmup_steps: int = 50,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    eval_every: int = 100,
    eval_windows: int = 64,
    checkpoint_every: int = 200,
    keep_checkpoints: int = 3,
    seed: int = 1337,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
) -> dict:
    """Pretrain a GPT on a tokenized data folder.

    Args:
        data: a data folder made by `fidan data prepare` (it is tokenized on first use).
        tokenizer: a tokenizer folder made by `fidan tokenizer train`.
        out: the run folder (checkpoints, metrics.jsonl, plots/, model.safetensors).
        preset: model architecture preset.
        max_steps: length of the learning-rate schedule, in optimizer steps.
        until_step: stop and checkpoint at this step (continue later with --resume).
        max_minutes: stop and checkpoint after this many minutes of training.
        batch_size: sequences per micro-batch.
        grad_accum: micro-batches per optimizer step.
        block_size: sequence length (default: the preset's).
        dropout: dropout rate (default: the preset's).
        lr: peak learning rate.
        min_lr_ratio: the cosine schedule ends at lr * min_lr_ratio.
        warmup_steps: linear warmup steps.
        weight_decay: AdamW weight decay on matrices and embeddings.
        grad_clip: clip the global gradient norm to this (0 disables).
        eval_every: evaluate val loss / bits per byte and print a sample every N steps.
        eval_windows: number of held-out windows per evaluation.
        checkpoint_every: write a checkpoint every N steps.
        keep_checkpoints: keep the newest K checkpoints.
        seed: seed for initialization, batches and dropout.
        device: auto, cpu or cuda.
        resume: continue exactly from the newest checkpoint in --out.
        force: replace an existing run folder.
        quiet: no progress bar or samples.
    """
    for name, value in (("max_steps", max_steps), ("batch_size", batch_size), ("grad_accum", grad_accum),
                        ("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if value <= 0:
            raise FidanError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if lr <= 0:
        raise FidanError(f"--lr must be positive, got {lr}")
    device = pick_device(device)
    run = Path(out)
    tok = load_tokenizer(tokenizer)
    manifest = load_manifest(data)
    settings = TrainSettings(preset, max_steps, batch_size, grad_accum, lr, min_lr_ratio, warmup_steps,
                             weight_decay, grad_clip, eval_every, eval_windows, checkpoint_every,
                             keep_checkpoints, seed)

    ckpt = None
    if resume:
        ckpts = checkpoint_dirs(run)
        if not ckpts:
            raise FidanError(f"--resume: no checkpoint in {run}/checkpoints; start without --resume")
        ckpt = ckpts[-1]
        cfg = read_model_config(ckpt)
        check_vocab(cfg, tok, ckpt)
    else:
        if is_run(run) and not force:
            raise FidanError(f"run folder {run} already exists; pass --resume to continue it, --force to replace it, "
                             "or choose another --out")
        cfg = config_from_preset(preset, tok.vocab_size, block_size=block_size, dropout=dropout)

    token_dir = encode_splits(data, tok)
    train_split, val_split = TokenSplit(token_dir, "train"), TokenSplit(token_dir, "val")
    train_split.check_block(cfg.block_size, "train")
    val_split.check_block(cfg.block_size, "val")
    token_bytes = tok.token_bytes()

    torch.manual_seed(seed)
    model = GPT(cfg).to(device)
    optimizer = make_adamw(model, lr, weight_decay, (0.9, 0.95))
    batch_gen = torch.Generator().manual_seed(seed + 1)
    step = 0
    if ckpt is not None:
        load_weights(model, ckpt, device)
        state = load_checkpoint_state(ckpt)
        saved = state["settings"]
        if saved["batch_size"] * saved["grad_accum"] != batch_size * grad_accum or saved["max_steps"] != max_steps:
            print(f"note: resuming with batch {batch_size}x{grad_accum} and max_steps {max_steps}; the checkpoint used "
                  f"{saved['batch_size']}x{saved['grad_accum']} and {saved['max_steps']} (the run will not be exact)")
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if device.startswith("cuda") and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        batch_gen.set_state(state["batch_rng"])
        step = state["step"]
        _truncate_metrics(run / "metrics.jsonl", step)
    else:
        clear_run(run)
        run.mkdir(parents=True, exist_ok=True)

    tokens_per_step = batch_size * grad_accum * cfg.block_size
    resolved = {
        "fidan_version": __version__,
        "stage": "pretrain",
        "data": str(Path(data).resolve()),
        "data_sha256": [f["sha256"] for s in manifest["splits"].values() for f in s["files"]],
        "tokenizer": str(Path(tokenizer).resolve()),
        "tokenizer_sha256": tok.sha256,
        "model": cfg.to_dict(),
        "parameters": model.num_params(),
        "train": asdict(settings),
        "tokens_per_step": tokens_per_step,
        "device": device,
        "torch": str(torch.__version__),
    }
    atomic_write_text(run / "config.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    copy_tokenizer(tok, run)
    metrics_path = run / "metrics.jsonl"

    def log(record: dict) -> None:
        append_jsonl(metrics_path, record)

    def state_dict() -> dict:
        return {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if device.startswith("cuda") else None,
            "batch_rng": batch_gen.get_state(),
            "settings": asdict(settings),
        }

    def evaluate() -> dict:
        result = evaluate_bpb(model, val_split, token_bytes, cfg.block_size, batch_size, eval_windows, device)
        sample_gen = torch.Generator(device=device).manual_seed(seed)
        prompt = torch.tensor([tok.encode(SAMPLE_PROMPT)], device=device)
        ids = list(model.generate(prompt, 48, temperature=0.8, top_k=50, generator=sample_gen, stop_ids={tok.eos_id}))
        result["sample"] = SAMPLE_PROMPT + tok.decode([i for i in ids if i != tok.eos_id])
        return result

    n_params = model.num_params()
    if not quiet:
        print(f"model: {preset}, {n_params:,} parameters, vocab {cfg.vocab_size}, block {cfg.block_size}; "
              f"{tokens_per_step:,} tokens/step on {device}")
    stop_at = min(until_step or max_steps, max_steps)
    deadline = time.time() + max_minutes * 60 if max_minutes else None
    train_start = time.time()
    last_eval: dict = {}
    last_eval_step = -1
    model.train()
    bar = tqdm(total=stop_at, initial=step, desc="pretrain", unit="step", disable=quiet, dynamic_ncols=True)
    stopped_early = False
    while step < stop_at:
        t0 = time.time()
        set_lr(optimizer, lr_at(step, max_steps, lr, warmup_steps, min_lr_ratio))
        loss_sum = 0.0
        for _ in range(grad_accum):
            x, y = train_split.random_batch(batch_size, cfg.block_size, batch_gen)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            _, loss = model(x, y)
            (loss / grad_accum).backward()
            loss_sum += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        dt = time.time() - t0
        record = {"kind": "train", "step": step, "loss": loss_sum / grad_accum, "lr": optimizer.param_groups[0]["lr"],
                  "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_step / dt,
                  "elapsed_s": round(time.time() - train_start, 3)}
        log(record)
        bar.update()
        bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}", refresh=False)
        out_of_time = deadline is not None and time.time() >= deadline
        if step % eval_every == 0 or step == max_steps:
            last_eval, last_eval_step = evaluate(), step
            log({"kind": "eval", "step": step, **last_eval, "elapsed_s": round(time.time() - train_start, 3)})
            if not quiet:
                bar.write(f"step {step}: val loss {last_eval['val_loss']:.3f}, {last_eval['val_bpb']:.3f} bits/byte | "
                          f"{last_eval['sample']!r}")
        if step % checkpoint_every == 0 or step == stop_at or out_of_time:
            save_checkpoint(run, step, model, state_dict(), keep_checkpoints)
        if out_of_time and step < stop_at:
            stopped_early = True
            break
    bar.close()
    if last_eval_step != step:  # the run ended between evaluations: measure where it stopped
        last_eval = evaluate()
        log({"kind": "eval", "step": step, **last_eval, "elapsed_s": round(time.time() - train_start, 3)})
    save_weights(model, run, {"fidan_step": step, "fidan_preset": preset})
    plot_loss(read_metrics(run), run / "plots" / "loss.png", title=f"{preset} · {n_params:,} parameters")
    summary = {"step": step, "max_steps": max_steps, "stopped_early": stopped_early,
               "val_loss": last_eval.get("val_loss"), "val_bpb": last_eval.get("val_bpb"),
               "sample": last_eval.get("sample"), "train_seconds": round(time.time() - train_start, 1),
               "peak_rss_mb": round(peak_rss_mb(), 1), "run": str(run)}
    if not quiet:
        why = " (time limit)" if stopped_early else ""
        print(f"done: step {step}/{max_steps}{why}, val bits/byte {summary['val_bpb']:.3f}, "
              f"val loss {summary['val_loss']:.3f} → {run}")
    return summary


def estimate_step_seconds(cfg, batch_size: int, grad_accum: int = 1, device: str = "cpu", steps: int = 3) -> float:
    """Time a few training steps of a throwaway model, to size a run to a time budget."""
    model = GPT(cfg).to(device)
    opt = make_adamw(model, 1e-4, 0.0, (0.9, 0.95))
    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size), device=device)
    times = []
    for i in range(steps + 1):
        t0 = time.time()
        for _ in range(grad_accum):
            _, loss = model(x, x)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators and kernels
            times.append(time.time() - t0)
    return sorted(times)[len(times) // 2]
