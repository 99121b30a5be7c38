"""The one training loop. Pretraining and instruction tuning are tasks that hand it batches, a loss and
what to evaluate; everything else lives here, once.

Per step: learning rate from the schedule, dropout seeded from (seed, step, rank), one global batch drawn
by the task, micro-batches under autocast with gradient accumulation (the all-reduce only on the last
one under DDP/FSDP), clipping, the optimizer step, a metrics record; then evaluation on a fixed grid of
steps, early stopping, checkpoints and the time limit.

Exact resume: the schedule is a pure function of the step (and of the planned length, saved), dropout
masks are a pure function of (seed, step, rank), and the task's data cursor and the optimizer are in
the checkpoint. A run stopped at step N and resumed logs the same loss at every later step as one that
never stopped, also under another number of processes when the global batch stays the same. Records
logged after the checkpoint (a crash between checkpoints) are cut from metrics.jsonl on resume.

Time: ``max_minutes`` stops a run (with a checkpoint) when the time is up. ``budget_minutes`` plans the
run to fill that time: the schedule's length is re-estimated from the measured time per step (evaluation
and checkpoints included) as training goes, so the learning rate reaches its end when the time does.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from fidan.core.checkpoint import (
    load_checkpoint_state,
    load_weights,
    read_metrics,
    save_checkpoint,
    save_weights,
)
from fidan.core.io import append_jsonl
from fidan.core.optim import lr_at, make_optimizer, set_lr
from fidan.core.perf import autocast, mfu, quick_peak_flops
from fidan.core.plots import plot_loss
from fidan.core.runtime import peak_rss_mb
from fidan.errors import FidanError
from fidan.training import distributed as dist_util
from fidan.training.runs import truncate_metrics, write_config

WARMUP_SHARE = 0.25  # warm-up never takes more than this share of the run
PLAN_AFTER_STEPS = 3  # budgeted runs time steps after this many (allocators and kernels warm up first)


@dataclass
class TrainArgs:
    """How to optimize: schedule, batch, optimizer, precision, time."""

    max_steps: int = 1000
    until_step: int | None = None
    max_minutes: float | None = None
    budget_minutes: float | None = None
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    muon_lr: float = 0.02
    precision: str = "fp32"
    compile: bool = False
    fsdp: bool = False
    seed: int = 1337
    peak_gflops: float | None = None

    def check(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum"):
            if getattr(self, name) <= 0:
                raise FidanError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("lr", "muon_lr"):
            if getattr(self, name) <= 0:
                raise FidanError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise FidanError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise FidanError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("max_minutes", "budget_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise FidanError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.fsdp and self.optimizer != "adamw":
            raise FidanError("--fsdp shards every parameter, which Muon cannot orthogonalize; use --optimizer adamw")


@dataclass
class EvalArgs:
    """When to evaluate, and when to stop because held-out loss stopped improving."""

    every: int = 100
    patience: int = 0  # evaluations without a better held-out loss before stopping (0: never)

    def check(self) -> None:
        if self.every <= 0:
            raise FidanError(f"--eval-every must be positive, got {self.every}")
        if self.patience < 0:
            raise FidanError(f"--patience must be >= 0, got {self.patience}")


@dataclass
class CheckpointArgs:
    every: int = 200
    keep: int = 3

    def check(self) -> None:
        if self.every <= 0:
            raise FidanError(f"--checkpoint-every must be positive, got {self.every}")


class Task(Protocol):
    """What a training stage supplies to the loop."""

    stage: str
    model: torch.nn.Module  # the plain model, on its device
    evaluate_first: bool  # measure the starting weights (tuning: the "before" figure)

    def begin_step(self) -> None: ...  # draw this step's global batch
    def micro_batch(self, index: int) -> dict: ...  # this rank's rows of micro-batch ``index``, on the device
    # (loss to backpropagate, its share of the step's logged loss, tokens processed)
    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, float, int]: ...
    def evaluate(self) -> dict: ...  # held-out figures ({} when there is nothing held out)
    def final_evaluation(self) -> dict | None: ...  # a fuller evaluation at the end, or None
    def record(self) -> dict: ...  # extra fields for the step's metrics record
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Progress:
    """Everything about where a run is that a checkpoint must restore."""

    step: int = 0
    plan: int = 0  # planned length of the schedule, in steps
    train_s: float = 0.0  # seconds spent in training steps
    wall_s: float = 0.0  # seconds of wall time, evaluations and checkpoints included
    best: dict = field(default_factory=lambda: {"loss": math.inf, "step": -1, "bad_evals": 0})


def warmup_for(args: TrainArgs, plan: int) -> int:
    return min(args.warmup_steps, max(1, int(plan * WARMUP_SHARE)))


def fit(task: Task, run: Path, args: TrainArgs, evals: EvalArgs, ckpts: CheckpointArgs, *, dist, device: str,
        resume_from: Path | None, config: dict, command_args: dict, logger: str | list[str] | None = None,
        quiet: bool = False, title: str = "") -> dict:
    """Train ``task`` in the run folder ``run`` and return a summary (rank 0's is the full one)."""
    for part in (args, evals, ckpts):
        part.check()
    if evals.patience and args.fsdp:
        raise FidanError("--patience keeps the best weights, which --fsdp does not gather; drop one of them")
    main = dist.is_main
    quiet = quiet or not main
    raw = task.model
    model = dist_util.wrap_model(raw, dist, args.fsdp)  # DDP / FSDP under torchrun, else the model itself
    opt = make_optimizer(raw, args.optimizer, args.lr, args.weight_decay, (0.9, 0.95), args.muon_lr,
                         fused=False if args.fsdp else None)
    train_model = torch.compile(model) if args.compile else model
    ctx = autocast(device, args.precision)
    scaler = torch.amp.GradScaler(device.split(":")[0]) if args.precision == "fp16" else None
    global_batch = args.batch_size * args.grad_accum * dist.world_size
    progress = Progress(plan=args.max_steps)

    if resume_from is not None:
        state = load_checkpoint_state(resume_from)
        _check_resume(state, args, global_batch, main)
        if args.fsdp and dist.enabled:
            dist_util.load_full_optimizer_state(model, opt, state["optimizer"])
        else:
            opt.load_state_dict(state["optimizer"])
        task.load_state_dict(state.get("task", state))  # (older checkpoints kept the task's state at the top)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        progress = Progress(step=state["step"], plan=state.get("plan", args.max_steps),
                            train_s=state.get("train_s", 0.0), wall_s=state.get("wall_s", state.get("train_s", 0.0)),
                            best=state.get("best", Progress().best))
        if main:
            truncate_metrics(run / "metrics.jsonl", progress.step)

    flops_per_token = raw.flops_per_token()
    peak = args.peak_gflops * 1e9 if args.peak_gflops else quick_peak_flops(device, args.precision)
    settings = {**asdict(args), "world_size": dist.world_size, "global_batch": global_batch}
    if main:
        write_config(run, command_args, {**config, "train": settings, "eval": asdict(evals),
                                         "checkpoint": asdict(ckpts), "flops_per_token": flops_per_token,
                                         "peak_flops": peak, "device": device, "torch": str(torch.__version__)})
    trackers = None
    if main and logger:
        from fidan.training.loggers import make_logger

        trackers = make_logger(logger, run, settings)
    metrics_path = run / "metrics.jsonl"
    session_start = time.time()
    wall_at_start = progress.wall_s

    def wall() -> float:
        return wall_at_start + time.time() - session_start

    def log(record: dict) -> None:
        if main:
            record = {**record, "train_s": round(progress.train_s, 3), "elapsed_s": round(wall(), 3)}
            append_jsonl(metrics_path, record)
            if trackers is not None:
                trackers.log(record)

    def checkpoint() -> None:
        """Rank 0 writes; under FSDP every rank first takes part in gathering the full state."""
        full_weights = dist_util.full_model_state(model, dist, args.fsdp)
        full_opt = dist_util.full_optimizer_state(model, opt, dist, args.fsdp)
        if not main:
            return
        progress.wall_s = wall()
        state = {"step": progress.step, "plan": progress.plan, "train_s": progress.train_s,
                 "wall_s": progress.wall_s, "best": progress.best, "settings": settings,
                 "optimizer": full_opt if full_opt is not None else opt.state_dict(),
                 "task": task.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None}
        save_checkpoint(run, progress.step, _gathered(raw, full_weights), state, ckpts.keep)

    best_dir = run / "checkpoints" / "best"

    def evaluate_and_track() -> dict:
        result = task.evaluate()
        if result:
            log({"kind": "eval", "step": progress.step, **result})
            best = progress.best
            if result["val_loss"] < best["loss"]:
                progress.best = {"loss": result["val_loss"], "step": progress.step, "bad_evals": 0}
                if evals.patience and main:
                    save_weights(raw, best_dir, {"fidan_step": progress.step, "fidan_stage": task.stage})
            else:
                best["bad_evals"] += 1
        return result

    evaluates = main or args.fsdp  # rank 0 evaluates alone, except under FSDP where every rank holds a shard
    before = None
    if resume_from is None and task.evaluate_first and evaluates:
        # Tuning may only make things worse: the starting weights are a candidate for the best too.
        before = evaluate_and_track()
        if before and not quiet:
            print(f"before training: held-out loss {before['val_loss']:.3f}, {before['val_bpb']:.3f} bits/byte")

    if not quiet:
        where = f"{device} x{dist.world_size}" if dist.enabled else device
        print(f"{task.stage}: {raw.num_params():,} parameters, {global_batch} rows/step on {where}, {args.precision}, "
              f"{args.optimizer}{', compiled' if args.compile else ''}")
    budget_s = args.budget_minutes * 60 if args.budget_minutes else None
    deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None
    warned_warmup = False
    last_eval: dict = {}
    last_eval_step = -1
    stopped = ""
    timed_from: tuple[float, int] | None = None  # (wall, step) where a budgeted run starts timing steps
    first_step = progress.step
    model.train()
    bar = tqdm(total=_stop_at(args, progress.plan), initial=progress.step, desc=task.stage, unit="step",
               disable=quiet, dynamic_ncols=True)
    while progress.step < _stop_at(args, progress.plan):
        t0 = time.time()
        step = progress.step
        warmup = warmup_for(args, progress.plan)
        if warmup < args.warmup_steps and not warned_warmup and not quiet:
            bar.write(f"note: --warmup-steps {args.warmup_steps} is more than {WARMUP_SHARE:.0%} of a "
                      f"{progress.plan}-step run; warming up for {warmup} steps")
            warned_warmup = True
        set_lr(opt, lr_at(step, progress.plan, args.lr, warmup, args.min_lr_ratio))
        torch.manual_seed(dropout_seed(args.seed, step, dist.rank))
        task.begin_step()
        loss_sum, n_tokens = 0.0, 0
        for micro in range(args.grad_accum):
            batch = task.micro_batch(micro)
            with dist_util.sync_gradients(model, sync=micro == args.grad_accum - 1), ctx:
                loss, share, tokens = task.loss(train_model, batch)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            loss_sum += share
            n_tokens += tokens
        if scaler is not None:
            scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), args.grad_clip if args.grad_clip > 0 else math.inf)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a sharded (DTensor) norm
            grad_norm = grad_norm.full_tensor()
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        progress.step += 1
        step = progress.step
        loss_mean = dist_util.mean_over_ranks(loss_sum, dist)
        tokens_all = int(dist_util.mean_over_ranks(float(n_tokens), dist) * dist.world_size)
        dt = time.time() - t0
        progress.train_s += dt
        record = {"kind": "train", "step": step, "loss": loss_mean, "lr": opt.param_groups[0]["lr"],
                  "grad_norm": float(grad_norm), "tokens_per_s": tokens_all / dt,
                  "mfu": round(mfu(flops_per_token, tokens_all / dt, peak * dist.world_size), 4), **task.record()}
        log(record)
        bar.update()
        bar.set_postfix(loss=f"{loss_mean:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}", mfu=f"{record['mfu']:.1%}",
                        refresh=False)
        if budget_s is not None:
            if timed_from is None and step - first_step >= PLAN_AFTER_STEPS:
                timed_from = (wall(), step)
            elif timed_from is not None:
                per_step = (wall() - timed_from[0]) / (step - timed_from[1])
                plan = step + int(max(0.0, budget_s - wall()) / per_step)
                progress.plan = dist_util.broadcast_int(max(step, plan), dist)
                bar.total = _stop_at(args, progress.plan)
        out_of_time = dist_util.any_rank(
            (deadline is not None and time.time() >= deadline) or (budget_s is not None and wall() >= budget_s), dist)
        if evaluates and (step % evals.every == 0 or step == progress.plan):
            last_eval, last_eval_step = evaluate_and_track(), step
            if last_eval and not quiet:
                sample = f" | {last_eval['sample']!r}" if last_eval.get("sample") else ""
                bar.write(f"step {step}: held-out loss {last_eval['val_loss']:.3f}, "
                          f"{last_eval['val_bpb']:.3f} bits/byte{sample}")
            if evals.patience and progress.best["bad_evals"] >= evals.patience:
                stopped = f"early stop: no better held-out loss in {evals.patience} evaluations"
        if evals.patience and dist_util.any_rank(bool(stopped), dist):  # rank 0 decided for everyone
            stopped = stopped or "early stop"
        if step % ckpts.every == 0 or step == _stop_at(args, progress.plan) or out_of_time or stopped:
            checkpoint()
        if stopped:
            break
        if out_of_time and step < _stop_at(args, progress.plan):
            stopped = "time limit"
            break
    bar.close()

    step = progress.step
    full_weights = dist_util.full_model_state(model, dist, args.fsdp)
    if evaluates and last_eval_step != step:  # the run ended between evaluations: measure where it stopped
        last_eval = evaluate_and_track()
    restored = evals.patience and 0 <= progress.best["step"] != step and (best_dir / "model.safetensors").exists()
    if restored:
        load_weights(raw, best_dir, device)  # keep the weights that did best on held-out data
        last_eval = task.evaluate()
        if not quiet:
            print(f"kept the best weights, from step {progress.best['step']}")
    final = task.final_evaluation() if evaluates else None
    if final:
        log({"kind": "final", "step": step, **final})
    if trackers is not None:
        trackers.close()
    if not main:
        return {"step": step, "rank": dist.rank}
    save_weights(_gathered(raw, full_weights), run, {"fidan_step": step, "fidan_stage": task.stage,
                                                    "fidan_best_step": progress.best["step"]})
    plot_loss(read_metrics(run), run / "plots" / "loss.png", title=title or task.stage)
    figures = final or last_eval
    if before is None:
        before = next((r for r in read_metrics(run) if r.get("kind") == "eval" and r["step"] == 0), None)
    return {"step": step, "max_steps": progress.plan, "stopped": stopped or None,
            "stopped_early": stopped == "time limit", "val_loss": figures.get("val_loss"),
            "val_bpb": figures.get("val_bpb"), "sample": last_eval.get("sample"),
            "val_loss_before": before and before["val_loss"], "val_bpb_before": before and before["val_bpb"],
            "best_step": progress.best["step"], "train_seconds": round(progress.train_s, 1),
            "wall_seconds": round(wall(), 1), "peak_rss_mb": round(peak_rss_mb(), 1), "run": str(run)}


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """Dropout masks are a pure function of (seed, step, rank): exact resume needs no RNG state."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63)


def _stop_at(args: TrainArgs, plan: int) -> int:
    return min(args.until_step or plan, plan)


def _check_resume(state: dict, args: TrainArgs, global_batch: int, main: bool) -> None:
    saved = state.get("settings", {})
    saved_global = saved.get("batch_size", 0) * saved.get("grad_accum", 1) * saved.get("world_size", 1)
    if main and (saved_global != global_batch or saved.get("max_steps") != args.max_steps):
        print(f"note: resuming with a global batch of {global_batch} and max_steps {args.max_steps}; the checkpoint "
              f"used {saved_global} and {saved.get('max_steps')} (the run will not be exact)")
    if saved.get("optimizer", "adamw") != args.optimizer:
        raise FidanError(f"--resume: the checkpoint was trained with --optimizer {saved.get('optimizer', 'adamw')}, "
                         f"not {args.optimizer}; pass --optimizer {saved.get('optimizer', 'adamw')}")


def _gathered(raw: torch.nn.Module, full_weights: dict | None) -> torch.nn.Module:
    """The model to save: itself, or an unsharded CPU copy holding FSDP's gathered weights."""
    if not full_weights:
        return raw
    copy = type(raw)(raw.config)
    copy.load_state_dict(full_weights)
    return copy


def estimate_step_seconds(cfg, batch_size: int, grad_accum: int = 1, device: str = "cpu", steps: int = 3,
                          precision: str = "fp32", optimizer: str = "adamw", packed: bool = False) -> float:
    """Time a few training steps of a throwaway model (``packed``: with document-masked attention)."""
    from fidan.core.gpt import GPT

    model = GPT(cfg).to(device)
    opt = make_optimizer(model, optimizer, 1e-4, 0.0, (0.9, 0.95))
    ctx = autocast(device, precision)
    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size), device=device)
    doc = (torch.arange(cfg.block_size, device=device) // 24).expand(batch_size, -1) if packed else None
    times = []
    for i in range(steps + 1):
        t0 = time.time()
        for _ in range(grad_accum):
            with ctx:
                _, loss = model(x, x, doc_ids=doc, return_logits=False)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators and kernels
            times.append(time.time() - t0)
    return sorted(times)[len(times) // 2]
