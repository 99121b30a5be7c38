"""`fidan pretrain`: a flat, explicit training loop with exact resume, bf16 autocast and torchrun DDP.

Exact resume: the learning rate is a pure function of the step, batches come from a seeded
generator whose state is checkpointed, and dropout is seeded from (seed, step, rank). A run
stopped at step N and resumed produces the same loss at every later step as a run that never stopped,
also under a different number of processes, as long as the global batch stays the same.

Speed: bf16 autocast where the hardware computes bf16 natively (weights and optimizer stay fp32),
fused AdamW, optional torch.compile, batches gathered from the memory-mapped tokens by numpy
indexing, and Muon for the hidden matrices (``--optimizer muon``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

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
from fidan.core.optim import lr_at, make_adamw, make_optimizer, set_lr  # noqa: F401 - make_adamw: kept for importers
from fidan.core.perf import autocast, mfu, quick_peak_flops, resolve_precision
from fidan.core.plots import plot_loss
from fidan.core.runtime import peak_rss_mb, pick_device
from fidan.core.tokenizer_io import load_tokenizer
from fidan.core.tokens import TokenSplit, encode_splits
from fidan.errors import FidanError
from fidan.training import distributed as dist_util

SAMPLE_PROMPT = "Türkiye"
# The optimizer each preset was tuned with (``--optimizer auto``), and its learning rates (``--lr``,
# ``--muon-lr`` when not given). hizli's were picked from 2-minute speedruns (benchmarks/RESULTS.md).
PRESET_OPTIMIZER = {"ders": "adamw", "hizli": "muon"}
PRESET_LR = {"ders": (1e-3, 0.02), "hizli": (3e-3, 0.04)}


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
    optimizer: str = "adamw"
    muon_lr: float = 0.02
    precision: str = "fp32"
    world_size: int = 1


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metrics logged after the checkpoint (they will be logged again)."""
    if not path.exists():
        return
    import json

    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """Dropout masks are a pure function of (seed, step, rank): exact resume needs no RNG state."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63)


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
    depth: int | None = None,
    lr: float | None = None,
    min_lr_ratio: float = 0.1,
    warmup_steps: int = 50,
    weight_decay: float = 0.1,
    grad_clip: float = 1.0,
    optimizer: Literal["auto", "adamw", "muon"] = "auto",
    muon_lr: float | None = None,
    precision: Literal["auto", "fp32", "bf16"] = "auto",
    compile: bool = False,
    fsdp: bool = False,
    peak_gflops: float | None = None,
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
    """Pretrain a GPT on a tokenized data folder (one process, or many under torchrun).

    Args:
        data: a data folder made by `fidan data prepare` (it is tokenized on first use).
        tokenizer: a tokenizer folder made by `fidan tokenizer train`.
        out: the run folder (checkpoints, metrics.jsonl, plots/, model.safetensors).
        preset: model architecture preset: ders (the lesson's GPT-2) or hizli (fastest to quality on CPU).
        max_steps: length of the learning-rate schedule, in optimizer steps.
        until_step: stop and checkpoint at this step (continue later with --resume).
        max_minutes: stop and checkpoint after this many minutes of training.
        batch_size: sequences per micro-batch (per process under torchrun).
        grad_accum: micro-batches per optimizer step.
        block_size: sequence length (default: the preset's).
        dropout: dropout rate (default: the preset's).
        depth: the size dial: layers; width is 64 per layer, heads of size 64 (default: the preset's size).
        lr: peak learning rate of AdamW (with --optimizer muon, of the embeddings, head and norms);
            default: the preset's (1e-3 for ders, 3e-3 for hizli).
        min_lr_ratio: the cosine schedule ends at lr * min_lr_ratio.
        warmup_steps: linear warmup steps.
        weight_decay: weight decay on matrices and embeddings.
        grad_clip: clip the global gradient norm to this (0 disables).
        optimizer: adamw, muon (Muon for block matrices + AdamW for the rest), or auto (the preset's).
        muon_lr: peak learning rate of the Muon matrices (default: the preset's, 0.04 for hizli).
        precision: auto (bf16 autocast where the hardware supports it), fp32 or bf16.
        compile: compile the model with torch.compile (slower start, faster steps).
        fsdp: under torchrun, shard the model with FSDP instead of replicating it (DDP).
        peak_gflops: peak GFLOP/s of the machine for MFU (default: measured briefly at start).
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
    args = dict(locals())  # every argument, handed on to the loop below
    for name, value in (("max_steps", max_steps), ("batch_size", batch_size), ("grad_accum", grad_accum),
                        ("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if value <= 0:
            raise FidanError(f"--{name.replace('_', '-')} must be positive, got {value}")
    default_lr, default_muon_lr = PRESET_LR.get(preset, (1e-3, 0.02))
    lr = default_lr if lr is None else lr
    muon_lr = default_muon_lr if muon_lr is None else muon_lr
    if lr <= 0 or muon_lr <= 0:
        raise FidanError(f"--lr and --muon-lr must be positive, got {lr} and {muon_lr}")
    if optimizer == "auto":
        optimizer = PRESET_OPTIMIZER.get(preset, "adamw")
    if optimizer not in ("adamw", "muon"):
        raise FidanError(f"unknown --optimizer {optimizer}; choose auto, adamw or muon")
    device = pick_device(device)
    precision = resolve_precision(precision, device)
    dist = dist_util.init_distributed(device)
    device = dist.device
    if fsdp and optimizer != "adamw":
        raise FidanError("--fsdp shards every parameter, which Muon cannot orthogonalize; use --optimizer adamw")
    args.update(optimizer=optimizer, precision=precision, device=device, dist=dist, lr=lr, muon_lr=muon_lr)
    try:
        return _pretrain(**args)
    finally:
        dist_util.shutdown(dist)


def _pretrain(data, tokenizer, out, preset, max_steps, until_step, max_minutes, batch_size, grad_accum, block_size,
              dropout, depth, lr, min_lr_ratio, warmup_steps, weight_decay, grad_clip, optimizer, muon_lr, precision,
              compile, fsdp, peak_gflops, eval_every, eval_windows, checkpoint_every, keep_checkpoints, seed, device,
              resume, force, quiet, dist) -> dict:
    main = dist.is_main
    quiet = quiet or not main
    run = Path(out)
    tok = load_tokenizer(tokenizer)
    manifest = load_manifest(data)
    settings = TrainSettings(preset, max_steps, batch_size, grad_accum, lr, min_lr_ratio, warmup_steps,
                             weight_decay, grad_clip, eval_every, eval_windows, checkpoint_every,
                             keep_checkpoints, seed, optimizer, muon_lr, precision, dist.world_size)

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
        cfg = config_from_preset(preset, tok.vocab_size, depth=depth, block_size=block_size, dropout=dropout)

    if main:
        token_dir = encode_splits(data, tok)
    dist_util.barrier(dist)  # the other ranks wait until rank 0 has encoded the tokens
    token_dir = encode_splits(data, tok) if not main else token_dir
    train_split, val_split = TokenSplit(token_dir, "train"), TokenSplit(token_dir, "val")
    train_split.check_block(cfg.block_size, "train")
    val_split.check_block(cfg.block_size, "val")
    token_bytes = tok.token_bytes()

    torch.manual_seed(seed)
    raw = GPT(cfg).to(device)
    state = None
    step = 0
    if ckpt is not None:
        load_weights(raw, ckpt, device)
        state = load_checkpoint_state(ckpt)
    model = dist_util.wrap_model(raw, dist, fsdp)  # DDP / FSDP under torchrun, else the model itself
    opt = make_optimizer(raw, optimizer, lr, weight_decay, (0.9, 0.95), muon_lr, fused=False if fsdp else None)
    train_model = torch.compile(model) if compile else model
    ctx = autocast(device, precision)
    batch_gen = torch.Generator().manual_seed(seed + 1)
    global_batch = batch_size * grad_accum * dist.world_size
    train_s = 0.0
    if state is not None:
        saved = state["settings"]
        saved_global = saved["batch_size"] * saved["grad_accum"] * saved.get("world_size", 1)
        if main and (saved_global != global_batch or saved["max_steps"] != max_steps):
            print(f"note: resuming with a global batch of {global_batch} and max_steps {max_steps}; the checkpoint "
                      f"used {saved_global} and {saved['max_steps']} (the run will not be exact)")
        if saved.get("optimizer", "adamw") != optimizer:
            raise FidanError(f"--resume: the checkpoint was trained with --optimizer {saved.get('optimizer', 'adamw')}, "
                             f"not {optimizer}; pass --optimizer {saved.get('optimizer', 'adamw')}")
        if fsdp and dist.enabled:
            dist_util.load_full_optimizer_state(model, opt, state["optimizer"])
        else:
            opt.load_state_dict(state["optimizer"])
        batch_gen.set_state(state["batch_rng"])
        step = state["step"]
        train_s = state.get("train_s", 0.0)
        if main:
            _truncate_metrics(run / "metrics.jsonl", step)
    elif main:
        clear_run(run)
        run.mkdir(parents=True, exist_ok=True)

    tokens_per_step = global_batch * cfg.block_size
    flops_per_token = raw.flops_per_token()
    peak = peak_gflops * 1e9 if peak_gflops else quick_peak_flops(device, precision)
    resolved = {
        "fidan_version": __version__,
        "stage": "pretrain",
        "data": str(Path(data).resolve()),
        "data_sha256": [f["sha256"] for s in manifest["splits"].values() for f in s["files"]],
        "tokenizer": str(Path(tokenizer).resolve()),
        "tokenizer_sha256": tok.sha256,
        "model": cfg.to_dict(),
        "parameters": raw.num_params(),
        "train": asdict(settings),
        "tokens_per_step": tokens_per_step,
        "flops_per_token": flops_per_token,
        "peak_flops": peak,
        "device": device,
        "compile": compile,
        "fsdp": fsdp,
        "torch": str(torch.__version__),
    }
    metrics_path = run / "metrics.jsonl"
    if main:
        atomic_write_text(run / "config.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
        copy_tokenizer(tok, run)

    def log(record: dict) -> None:
        if main:
            append_jsonl(metrics_path, record)

    def checkpoint() -> None:
        """Rank 0 writes; under FSDP every rank first takes part in gathering the full state."""
        full_weights = dist_util.full_model_state(model, dist, fsdp)
        full_opt = dist_util.full_optimizer_state(model, opt, dist, fsdp)
        if not main:
            return
        state = {
            "step": step,
            "optimizer": full_opt if full_opt is not None else opt.state_dict(),
            "rng": torch.get_rng_state(),
            "batch_rng": batch_gen.get_state(),
            "train_s": train_s,
            "settings": asdict(settings),
        }
        save_checkpoint(run, step, _plain_copy(cfg, full_weights) if full_weights else raw, state, keep_checkpoints)

    def evaluate() -> dict:
        result = evaluate_bpb(raw, val_split, token_bytes, cfg.block_size, batch_size, eval_windows, device,
                              autocast=autocast(device, precision) if precision == "bf16" else None)
        sample_gen = torch.Generator(device=device).manual_seed(seed)
        prompt = torch.tensor([tok.encode(SAMPLE_PROMPT)], device=device)
        ids = list(raw.generate(prompt, 48, temperature=0.8, top_k=50, generator=sample_gen, stop_ids={tok.eos_id}))
        result["sample"] = SAMPLE_PROMPT + tok.decode([i for i in ids if i != tok.eos_id])
        return result

    n_params = raw.num_params()
    if not quiet:
        where = f"{device} x{dist.world_size}" if dist.enabled else device
        print(f"model: {preset}, {n_params:,} parameters, vocab {cfg.vocab_size}, block {cfg.block_size}; "
              f"{tokens_per_step:,} tokens/step on {where}, {precision}, {optimizer}"
              f"{', compiled' if compile else ''}")
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
        set_lr(opt, lr_at(step, max_steps, lr, warmup_steps, min_lr_ratio))
        torch.manual_seed(dropout_seed(seed, step, dist.rank))
        # One draw of window starts for the whole global batch; this rank reads only its own rows.
        starts = torch.randint(0, len(train_split) - cfg.block_size - 1, (global_batch,), generator=batch_gen)
        loss_sum = 0.0
        for micro in range(grad_accum):
            row = (micro * dist.world_size + dist.rank) * batch_size
            x, y = train_split.windows(starts[row:row + batch_size], cfg.block_size)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with dist_util.sync_gradients(model, sync=micro == grad_accum - 1), ctx:
                _, loss = train_model(x, y, return_logits=False)
                (loss / grad_accum).backward()
            loss_sum += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), grad_clip if grad_clip > 0 else float("inf"))
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a sharded (DTensor) norm
            grad_norm = grad_norm.full_tensor()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss_mean = dist_util.mean_over_ranks(loss_sum / grad_accum, dist)
        dt = time.time() - t0
        train_s += dt
        record = {"kind": "train", "step": step, "loss": loss_mean, "lr": opt.param_groups[0]["lr"],
                  "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_step / dt,
                  "mfu": round(mfu(flops_per_token, tokens_per_step / dt, peak * dist.world_size), 4),
                  "train_s": round(train_s, 3), "elapsed_s": round(time.time() - train_start, 3)}
        log(record)
        bar.update()
        bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}",
                        mfu=f"{record['mfu']:.1%}", refresh=False)
        out_of_time = dist_util.any_rank(deadline is not None and time.time() >= deadline, dist)
        # Rank 0 evaluates alone, except under FSDP where every rank holds a shard and must take part.
        if (main or fsdp) and (step % eval_every == 0 or step == max_steps):
            last_eval, last_eval_step = evaluate(), step
            log({"kind": "eval", "step": step, **last_eval, "train_s": round(train_s, 3),
                 "elapsed_s": round(time.time() - train_start, 3)})
            if not quiet:
                bar.write(f"step {step}: val loss {last_eval['val_loss']:.3f}, {last_eval['val_bpb']:.3f} bits/byte | "
                          f"{last_eval['sample']!r}")
        if step % checkpoint_every == 0 or step == stop_at or out_of_time:
            checkpoint()
        if out_of_time and step < stop_at:
            stopped_early = True
            break
    bar.close()
    full_weights = dist_util.full_model_state(model, dist, fsdp)
    if last_eval_step != step and (main or fsdp):  # the run ended between evaluations: measure where it stopped
        last_eval = evaluate()
        log({"kind": "eval", "step": step, **last_eval, "train_s": round(train_s, 3),
             "elapsed_s": round(time.time() - train_start, 3)})
    if not main:
        return {"step": step, "rank": dist.rank}
    save_weights(_plain_copy(cfg, full_weights) if full_weights else raw, run,
                 {"fidan_step": step, "fidan_preset": preset})
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


def _plain_copy(cfg, state: dict) -> GPT:
    """An unsharded CPU model holding gathered FSDP weights, for saving as safetensors."""
    model = GPT(cfg)
    model.load_state_dict(state)
    return model


def estimate_step_seconds(cfg, batch_size: int, grad_accum: int = 1, device: str = "cpu", steps: int = 3,
                          precision: str = "auto", optimizer: str = "adamw") -> float:
    """Time a few training steps of a throwaway model, to size a run to a time budget."""
    model = GPT(cfg).to(device)
    opt = make_optimizer(model, optimizer, 1e-4, 0.0, (0.9, 0.95))
    ctx = autocast(device, resolve_precision(precision, device))
    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size), device=device)
    times = []
    for i in range(steps + 1):
        t0 = time.time()
        for _ in range(grad_accum):
            with ctx:
                _, loss = model(x, x, return_logits=False)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators and kernels
            times.append(time.time() - t0)
    return sorted(times)[len(times) // 2]
