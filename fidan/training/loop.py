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

Time: ``max_minutes`` stops a run (with a checkpoint) when the time is up. ``budget_minutes`` plans the run to
fill that time (wall time, or with ``budget_counts="training"`` the steps' time only): the schedule's length is
re-estimated from the measured time per step as training goes, so the learning rate ends when the time does.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from fidan.artifacts.runs import (
    PLANNED_STEPS,
    load_checkpoint_state,
    load_weights,
    read_metrics,
    save_checkpoint,
    save_weights,
)
from fidan.artifacts.schema import stamp
from fidan.errors import BadRunState, Interrupted
from fidan.model.memory import grad_checkpointing
from fidan.runtime import distributed as dist_util
from fidan.runtime.device import peak_rss_mb
from fidan.runtime.io import append_jsonl
from fidan.runtime.perf import autocast, mfu, quick_peak_flops
from fidan.runtime.plots import plot_loss
from fidan.runtime.signals import stop_requests
from fidan.training.args import CheckpointArgs, EvalArgs, TrainArgs
from fidan.training.compiling import CompileChoice, auto_eligible
from fidan.training.optim import lr_at, make_optimizer, set_lr
from fidan.training.run_folder import check_resume, truncate_metrics, write_config
from fidan.training.step_lines import StepLines
from fidan.training.task import Progress, Task, describe, dropout_seed, monitored

__all__ = ["Progress", "Task", "Trainer", "dropout_seed", "fit", "warmup_for"]

WARMUP_SHARE = 0.25  # warm-up never takes more than this share of the run
MAX_BAD_STEPS = 5  # non-finite steps in a row before a run stops
PLAN_AFTER_STEPS = 3  # budgeted runs time steps after this many (allocators and kernels warm up first)


def warmup_for(args: TrainArgs, plan: int) -> int:
    return min(args.warmup_steps, max(1, int(plan * WARMUP_SHARE)))


def fit(task: Task, run: Path, args: TrainArgs, evals: EvalArgs, ckpts: CheckpointArgs, *, dist, device: str,
        resume_from: Path | None, config: dict, command_args: dict, logger: str | list[str] | None = None,
        quiet: bool = False, title: str = "") -> dict:
    """Train ``task`` in the folder ``run`` with settled settings; return a summary (rank 0's is the full one)."""
    trainer = Trainer(task, run, args, evals, ckpts, dist=dist, device=device, quiet=quiet)
    trainer.start(resume_from, config, command_args, logger)
    try:
        with stop_requests() as trainer.interrupt:
            trainer.train()
        summary = trainer.finish(title)
    finally:
        if trainer.trackers is not None:
            trainer.trackers.close()
    if trainer.stopped == "interrupted":
        raise Interrupted(f"interrupted at step {trainer.progress.step}; a checkpoint is saved in {run}/checkpoints: "
                          "run the same command with --resume to continue exactly")
    return summary


class Trainer:
    def __init__(self, task: Task, run: Path, args: TrainArgs, evals: EvalArgs, ckpts: CheckpointArgs, *, dist,
                 device: str, quiet: bool):
        self.task, self.run, self.args, self.evals, self.ckpts = task, run, args, evals, ckpts
        self.dist, self.device, self.main = dist, device, dist.is_main
        self.quiet = quiet or not dist.is_main
        self.raw = task.model
        if args.grad_checkpointing:
            grad_checkpointing(self.raw)
        self.model = dist_util.wrap_model(self.raw, dist, args.fsdp)  # DDP / FSDP under torchrun, else itself
        self.opt = make_optimizer(self.raw, args.optimizer, args.lr, args.weight_decay, (0.9, 0.95), args.muon_lr,
                                  fused=False if args.fsdp else None)
        self.compiling = CompileChoice(args.compile, device, auto_eligible(self.raw, dist.enabled), args.precision)
        self.compiled: torch.nn.Module | None = None  # torch.compile's wrapper, from the first compiled step
        self.compiled_now = False  # the step just taken compiled it
        self.ctx = autocast(device, args.precision)
        self.scaler = torch.amp.GradScaler(device.split(":")[0]) if args.precision == "fp16" else None
        self.global_batch = args.batch_size * args.grad_accum * dist.world_size
        self.progress = Progress(plan=args.max_steps)
        self.flops_per_token = self.raw.flops_per_token()
        self.peak = args.peak_gflops * 1e9 if args.peak_gflops else quick_peak_flops(device, args.precision)
        self.settings = {**asdict(args), "world_size": dist.world_size, "global_batch": self.global_batch}
        self.trackers = None
        self.evaluates = self.main or args.fsdp  # rank 0 evaluates alone, except under FSDP (every rank holds a shard)
        self.best_dir = run / "checkpoints" / "best"
        self.before: dict | None = None
        self.last_eval: dict = {}
        self.last_eval_step = -1
        self.stopped = ""
        self.session_start = time.time()
        self.wall_at_start = 0.0
        self._warned = False  # about a warm-up capped to a share of the run
        self.interrupt = threading.Event()  # set by Ctrl-C / SIGTERM: stop after the current step
        self.bad_steps = 0  # non-finite steps in a row

    # --- the run folder ---------------------------------------------------------------------------

    def start(self, resume_from: Path | None, config: dict, command_args: dict, logger) -> None:
        if resume_from is not None:
            self._resume(resume_from)
        if self.main:
            write_config(self.run, command_args, {
                **config, "train": self.settings, "eval": asdict(self.evals), "checkpoint": asdict(self.ckpts),
                "flops_per_token": self.flops_per_token, "peak_flops": self.peak, "device": self.device,
                "torch": str(torch.__version__)})
            if logger:
                from fidan.training.loggers import make_logger

                self.trackers = make_logger(logger, self.run, self.settings)
        self.session_start, self.wall_at_start = time.time(), self.progress.wall_s
        if resume_from is None and self.task.evaluate_first and self.evaluates:
            # Tuning may only make things worse: the starting weights are a candidate for the best too.
            self.before = self.evaluate()
            if self.before and not self.quiet:
                print(f"before training: {describe(self.task, self.before)}")

    def _resume(self, ckpt: Path) -> None:
        state = load_checkpoint_state(ckpt)
        check_resume(state, self.args, self.global_batch, self.main)
        if self.args.fsdp and self.dist.enabled:
            dist_util.load_full_optimizer_state(self.model, self.opt, state["optimizer"])
        else:
            self.opt.load_state_dict(state["optimizer"])
        self.task.load_state_dict(state.get("task", state))  # (older checkpoints kept it at the top level)
        self.compiling.resume(state.get("compile"))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(step=state["step"], plan=state.get("plan", self.args.max_steps),
                                 train_s=state.get("train_s", 0.0),
                                 wall_s=state.get("wall_s", state.get("train_s", 0.0)),
                                 best=state.get("best", Progress().best))
        if self.main:
            truncate_metrics(self.run / "metrics.jsonl", self.progress.step)

    def wall(self) -> float:
        return self.wall_at_start + time.time() - self.session_start

    def budget_clock(self) -> float:  # the seconds --budget-minutes counts
        return self.progress.train_s if self.args.budget_counts == "training" else self.wall()

    def log(self, record: dict) -> None:
        if self.main:
            record = {**record, "train_s": round(self.progress.train_s, 3), "elapsed_s": round(self.wall(), 3)}
            append_jsonl(self.run / "metrics.jsonl", record)
            if self.trackers is not None:
                self.trackers.log(record)

    def checkpoint(self) -> None:
        """Rank 0 writes; under FSDP every rank first takes part in gathering the full state."""
        full_weights = dist_util.full_model_state(self.model, self.dist, self.args.fsdp)
        full_opt = dist_util.full_optimizer_state(self.model, self.opt, self.dist, self.args.fsdp)
        if not self.main:
            return
        p = self.progress
        p.wall_s = self.wall()
        state = {"step": p.step, "plan": p.plan, "train_s": p.train_s, "wall_s": p.wall_s, "best": p.best,
                 "settings": self.settings, "optimizer": full_opt if full_opt is not None else self.opt.state_dict(),
                 "task": self.task.state_dict(), "compile": self.compiling.state(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None}
        save_checkpoint(self.run, p.step, dist_util.gathered_copy(self.raw, full_weights), stamp("checkpoint", state),
                        self.ckpts.keep)

    def evaluate(self) -> dict:
        """Held-out figures, logged; the best so far is tracked (and kept, with --patience)."""
        result = self.task.evaluate()
        if result:
            p = self.progress
            self.log({"kind": "eval", "step": p.step, **result})
            key, higher = monitored(self.task)
            best = p.best.get("value", p.best.get("loss"))
            value = result[key]
            if best is None or (value > best if higher else value < best):
                p.best = {"value": value, "step": p.step, "bad_evals": 0}
                if self.evals.patience and self.main:
                    save_weights(self.raw, self.best_dir, {"fidan_step": p.step, "fidan_stage": self.task.stage})
            else:
                p.best["bad_evals"] += 1
        self.last_eval, self.last_eval_step = result, self.progress.step
        return result

    # --- the loop --------------------------------------------------------------------------------

    def stop_at(self) -> int:
        return min(self.args.until_step or self.progress.plan, self.progress.plan)

    def train(self) -> None:
        args, evals, p = self.args, self.evals, self.progress
        if not self.quiet:
            where = f"{self.device} x{self.dist.world_size}" if self.dist.enabled else self.device
            print(f"{self.task.stage}: {self.raw.num_params():,} parameters, {self.global_batch} rows/step on "
                  f"{where}, {args.precision}, {args.optimizer}{', compiled' if args.compile else ''}")
        budget_s = args.budget_minutes * 60 if args.budget_minutes else None
        deadline = time.time() + args.max_minutes * 60 if args.max_minutes else None

        def left_s(per_step: float) -> float:
            """Training left in the whole run, for the compile decision (not only up to --until-step or
            --max-minutes: a resumed run must decide as an uninterrupted one does)."""
            return budget_s - self.budget_clock() if budget_s is not None else (p.plan - p.step) * per_step

        timed_from: tuple[float, int] | None = None  # (wall, step) where a budgeted run starts timing steps
        first_step = p.step
        self.model.train()
        lines = StepLines(self.quiet, p.step)  # to a file or pipe (nohup, Slurm): plain lines, not a bar
        bar = tqdm(total=self.stop_at(), initial=p.step, desc=self.task.stage, unit="step",
                   disable=self.quiet or lines.on, dynamic_ncols=True)
        while p.step < self.stop_at():
            train_s = p.train_s
            record = self.step(bar)
            if (note := self.compiling.observe(p.step, first_step, p.train_s - train_s, left_s)) and not self.quiet:
                bar.write(note)
            if self.compiled_now:  # that step compiled the model: time the faster steps afresh for the budget
                self.compiled_now, timed_from, first_step = False, None, p.step
            bar.update()
            bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:,.0f}",
                            mfu=f"{record['mfu']:.1%}", refresh=False)
            lines.after(p.step, self.stop_at(), record)
            if budget_s is not None:  # re-plan the schedule's length from the time per step so far
                if timed_from is None and p.step - first_step >= PLAN_AFTER_STEPS:
                    timed_from = (self.budget_clock(), p.step)
                elif timed_from is not None:
                    per_step = (self.budget_clock() - timed_from[0]) / (p.step - timed_from[1])
                    plan = p.step + int(max(0.0, budget_s - self.budget_clock()) / per_step)
                    p.plan = dist_util.broadcast_int(max(p.step, plan), self.dist)
                    bar.total = self.stop_at()
            # One collective for the clocks and signals of every rank.
            over_budget, out_of_time, interrupted = dist_util.any_ranks(
                [budget_s is not None and self.budget_clock() >= budget_s,
                 deadline is not None and time.time() >= deadline,
                 self.interrupt.is_set()], self.dist)
            if over_budget:
                p.plan = p.step  # a budgeted run ends when its time does: that is its last step
            if self.evaluates and (p.step % evals.every == 0 or p.step == p.plan):
                result = self.evaluate()
                if result and not self.quiet:
                    sample = f" | {result['sample']!r}" if result.get("sample") else ""
                    bar.write(f"step {p.step}: {describe(self.task, result)}{sample}")
                if evals.patience and p.best["bad_evals"] >= evals.patience:
                    what = monitored(self.task)[0].removeprefix("val_").replace("_", "-")
                    self.stopped = f"early stop: no better held-out {what} in {evals.patience} evaluations"
            if evals.patience and dist_util.any_rank(bool(self.stopped), self.dist):  # rank 0 decided for all
                self.stopped = self.stopped or "early stop"
            if interrupted:
                self.stopped = "interrupted"
                if not self.quiet:
                    bar.write(f"interrupted: saving a checkpoint at step {p.step}")
            if p.step % self.ckpts.every == 0 or p.step == self.stop_at() or out_of_time or self.stopped:
                self.checkpoint()
            if self.stopped:
                break
            if out_of_time and p.step < self.stop_at():
                self.stopped = "time limit"
                break
        bar.close()

    def step(self, bar) -> dict:
        """One optimizer step over the task's global batch; returns its metrics record."""
        args, p, task = self.args, self.progress, self.task
        t0 = time.time()
        warmup = warmup_for(args, p.plan)
        if warmup < args.warmup_steps and not self._warned and not self.quiet:
            bar.write(f"note: --warmup-steps {args.warmup_steps} is more than {WARMUP_SHARE:.0%} of a "
                      f"{p.plan}-step run; warming up for {warmup} steps")
            self._warned = True
        set_lr(self.opt, lr_at(p.step, p.plan, args.lr, warmup, args.min_lr_ratio, args.schedule))
        torch.manual_seed(dropout_seed(args.seed, p.step, self.dist.rank))
        task.begin_step()
        loss_sum, n_tokens = 0.0, 0
        for micro in range(args.grad_accum):
            batch = task.micro_batch(micro)
            with dist_util.sync_gradients(self.model, sync=micro == args.grad_accum - 1), self.ctx:
                loss, share, tokens = task.loss(self.train_model(), batch)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += share
            n_tokens += tokens
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        clip = args.grad_clip if args.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), clip)
        if hasattr(grad_norm, "full_tensor"):  # FSDP: a sharded (DTensor) norm
            grad_norm = grad_norm.full_tensor()
        grad_norm = float(grad_norm)
        # A non-finite loss or gradient is never trained on: the step is skipped and logged. (Under fp16 the
        # loss scaler skips steps with overflowing gradients itself and lowers its scale: that is routine.)
        bad = not math.isfinite(loss_sum) or (self.scaler is None and not math.isfinite(grad_norm))
        bad = dist_util.any_rank(bad, self.dist)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        elif not bad:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        p.step += 1
        loss_mean = dist_util.mean_over_ranks(loss_sum, self.dist)
        tokens_all = int(dist_util.mean_over_ranks(float(n_tokens), self.dist) * self.dist.world_size)
        dt = time.time() - t0
        p.train_s += dt
        record = {"kind": "train", "step": p.step, "loss": loss_mean, "lr": self.opt.param_groups[0]["lr"],
                  "grad_norm": grad_norm, "tokens_per_s": tokens_all / dt,
                  "mfu": round(mfu(self.flops_per_token, tokens_all / dt, self.peak * self.dist.world_size), 4),
                  **task.record(), **({"skipped": "non-finite loss or gradient"} if bad else {})}
        self.log(record)
        self.bad_steps = self.bad_steps + 1 if bad else 0
        if bad and not self.quiet:
            bar.write(f"step {p.step}: non-finite loss or gradient; the step was skipped")
        if self.bad_steps >= MAX_BAD_STEPS:
            raise BadRunState(f"{MAX_BAD_STEPS} steps in a row (up to step {p.step}) had a non-finite loss or gradient "
                              "and were skipped, so training stopped: lower --lr, check the data or try --precision "
                              f"fp32, then --resume from the last checkpoint in {self.run}/checkpoints")
        return record

    def train_model(self) -> torch.nn.Module:
        if self.compiled is None and self.compiling.compiled_at(self.progress.step):
            self.compiled, self.compiled_now = torch.compile(self.model), True
        return self.compiled if self.compiled is not None else self.model

    # --- the end ---------------------------------------------------------------------------------

    def finish(self, title: str) -> dict:
        p = self.progress
        full_weights = dist_util.full_model_state(self.model, self.dist, self.args.fsdp)
        if self.evaluates and self.last_eval_step != p.step and self.stopped != "interrupted":
            # the run ended between evaluations: measure where it stopped
            self.evaluate()
        if self.evals.patience and 0 <= p.best["step"] != p.step and (self.best_dir / "model.safetensors").exists() \
                and self.stopped != "interrupted":
            load_weights(self.raw, self.best_dir, self.device)  # keep the weights that did best on held-out data
            self.last_eval = self.task.evaluate()
            if not self.quiet:
                print(f"kept the best weights, from step {p.best['step']}")
        # The whole held-out set once, when the run is over (not at a stop that will be resumed).
        over = (p.step >= p.plan or self.stopped.startswith("early stop")) and self.stopped != "interrupted"
        final = self.task.final_evaluation() if self.evaluates and over else None
        if final:
            self.log({"kind": "final", "step": p.step, **final})
        if not self.main:
            return {"step": p.step, "rank": self.dist.rank}
        save_weights(dist_util.gathered_copy(self.raw, full_weights), self.run,
                     {"fidan_step": p.step, "fidan_stage": self.task.stage, "fidan_best_step": p.best["step"],
                      PLANNED_STEPS: p.plan})
        records = read_metrics(self.run)
        plot_loss(records, self.run / "plots" / "loss.png", title=title or self.task.stage)
        figures = final or self.last_eval
        before = self.before or next((r for r in records if r.get("kind") == "eval" and r["step"] == 0), None)
        return {**{k: v for k, v in figures.items() if k.startswith("val_") and not isinstance(v, dict | list)},
                "step": p.step, "max_steps": p.plan, "stopped": self.stopped or None,
                "stopped_early": self.stopped == "time limit", "val_loss": figures.get("val_loss"),
                "val_bpb": figures.get("val_bpb"), "sample": self.last_eval.get("sample"),
                "val_loss_before": before and before["val_loss"], "val_bpb_before": before and before["val_bpb"],
                "best_step": p.best["step"], "train_seconds": round(p.train_s, 1),
                "wall_seconds": round(self.wall(), 1), "peak_rss_mb": round(peak_rss_mb(), 1), "run": str(self.run)}
