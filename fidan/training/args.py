"""The options every training stage shares, declared once.

A stage function declares only its own parameters and takes the shared ones as ``**training``;
:func:`training_command` adds the shared ones to its signature, type hints and docstring, so the CLI
(``fidan pretrain --help``), ``fidan.pretrain(...)`` and ``--config`` see one flat list of options, and
every stage documents, checks and defaults them the same way. A stage may change a default (tuning
uses smaller batches) or the help of a parameter (by listing it in its own docstring).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fidan.errors import FidanError
from fidan.runtime.lock import folder_lock


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
    schedule: str = "cosine"
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    optimizer: str = "adamw"
    muon_lr: float = 0.02
    precision: str = "fp32"
    compile: bool = False
    fsdp: bool = False
    grad_checkpointing: bool = False
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
            raise FidanError(f"--fsdp shards every parameter, which {self.optimizer} cannot handle as sharded "
                             "tensors; use --optimizer adamw")


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


@dataclass(frozen=True)
class Option:
    name: str
    type: object
    default: object
    help: str


# In the order --help lists them, after the stage's own options.
SHARED: tuple[Option, ...] = (
    Option("max_steps", int, 1000, "length of the learning-rate schedule, in optimizer steps."),
    Option("until_step", int | None, None, "stop and checkpoint at this step (continue later with --resume)."),
    Option("max_minutes", float | None, None, "stop and checkpoint after this many minutes of training."),
    Option("budget_minutes", float | None, None,
           "plan the run to fill this many minutes: the schedule's length is re-estimated from the measured "
           "time per step as training goes (--max-steps is then only the first guess)."),
    Option("batch_size", int, 32, "sequences per micro-batch (per process under torchrun)."),
    Option("grad_accum", int, 1, "micro-batches per optimizer step."),
    Option("lr", float | None, None, "peak learning rate."),
    Option("min_lr_ratio", float, 0.1, "the schedule ends at lr * min_lr_ratio."),
    Option("schedule", Literal["cosine", "linear"], "cosine", "decay after warm-up: cosine or linear."),
    Option("warmup_steps", int, 50, "linear warmup steps (at most a quarter of the run)."),
    Option("weight_decay", float, 0.1, "weight decay on matrices and embeddings."),
    Option("grad_clip", float, 1.0, "clip the global gradient norm to this (0 disables)."),
    Option("optimizer", Literal["auto", "adamw", "muon", "adamw8bit"], "auto",
           "adamw, muon (Muon for block matrices + AdamW for the rest), adamw8bit (bitsandbytes' 8-bit AdamW: "
           "a quarter of AdamW's state), or auto."),
    Option("muon_lr", float | None, None, "peak learning rate of the Muon matrices."),
    Option("precision", Literal["auto", "fp32", "bf16", "fp16"], "auto",
           "auto (bf16 autocast where the hardware supports it), fp32, bf16 or fp16 (CUDA only)."),
    Option("compile", bool, False, "compile the model with torch.compile (slower start, faster steps)."),
    Option("fsdp", bool, False, "under torchrun, shard the model with FSDP instead of replicating it (DDP)."),
    Option("grad_checkpointing", bool, False, "recompute each block's activations in the backward pass instead of "
                                              "keeping them: less memory for about a third more compute."),
    Option("load_dtype", Literal["auto", "fp32", "bf16", "fp16"], "auto",
           "precision a transformers base is loaded in: auto (its checkpoint's own), fp32, bf16 or fp16; frozen "
           "weights stay in it, trained ones are kept in fp32."),
    Option("trust_remote_code", bool, False, "let a transformers base run the Python code in its folder or hub "
                                             "repository (never done without this flag)."),
    Option("peak_gflops", float | None, None, "peak GFLOP/s of the machine for MFU (default: measured briefly at start)."),
    Option("eval_every", int, 100, "evaluate held-out loss and bits per byte every N steps."),
    Option("patience", int, 0, "stop after this many evaluations without a better held-out loss and keep the best "
                               "weights (0 disables early stopping)."),
    Option("checkpoint_every", int, 200, "write a checkpoint every N steps."),
    Option("keep_checkpoints", int, 3, "keep the newest K checkpoints."),
    Option("logger", list[str] | None, None, "also send metrics to tensorboard, wandb or csv (repeatable or comma "
                                             "separated); metrics.jsonl is always written."),
    Option("seed", int, 1337, "seed for initialization, batches and dropout."),
    Option("device", str, "auto", "auto (cuda, else a working Apple GPU: mps, else cpu), cpu, cuda or mps."),
    Option("resume", bool, False, "continue exactly from the newest checkpoint in --out."),
    Option("force", bool, False, "replace an existing run folder."),
    Option("quiet", bool, False, "no progress bar or samples."),
)
NAMES = {o.name for o in SHARED}


def training_command(**defaults: object) -> Callable[[Callable], Callable]:
    """Give a stage function ``f(own..., **training)`` the shared options, with these defaults changed."""
    unknown = set(defaults) - NAMES
    if unknown:
        raise TypeError(f"not shared training options: {sorted(unknown)}")

    def wrap(func: Callable) -> Callable:
        sig = inspect.signature(func)
        own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        shared = [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(o.name, o.default),
                                    annotation=o.type) for o in SHARED]
        full = sig.replace(parameters=own + shared)
        own_names = [p.name for p in own]

        @functools.wraps(func)
        def stage(*args, **kwargs):
            try:
                bound = full.bind(*args, **kwargs)
            except TypeError as e:
                raise FidanError(f"{func.__name__}: {e}") from None
            bound.apply_defaults()
            values = dict(bound.arguments)
            out = values.get("out")
            # one writer per run folder (rank 0 writes for all ranks under torchrun)
            held = folder_lock(out, "run") if out and os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
            with held:
                return func(**{n: values.pop(n) for n in own_names}, **values)

        stage.__signature__ = full
        hints = typing.get_type_hints(func)
        stage.__annotations__ = {**{n: hints[n] for n in own_names if n in hints},
                                 **{o.name: o.type for o in SHARED}, "return": hints.get("return")}
        stage.__doc__ = _with_shared_docs(func.__doc__ or "", defaults)
        return stage

    return wrap


def _with_shared_docs(doc: str, defaults: dict) -> str:
    """The stage's docstring with an ``Args:`` line for each shared option it does not describe itself."""
    doc = inspect.cleandoc(doc)
    documented = {m.group(1) for m in re.finditer(r"^    (\w+):", doc, re.MULTILINE)}
    lines = [f"    {o.name}: {o.help}" for o in SHARED if o.name not in documented]
    if "\nArgs:\n" not in doc:
        doc += "\n\nArgs:"
    return doc.rstrip() + "\n" + "\n".join(lines) + "\n"


@dataclass
class Training:
    """The shared options of one call, in their groups."""

    train: TrainArgs
    evals: EvalArgs
    checkpoints: CheckpointArgs
    logger: list[str] | None
    device: str
    resume: bool
    force: bool
    quiet: bool

    def check(self) -> None:
        for part in (self.train, self.evals, self.checkpoints):
            part.check()


def group(training: dict, *, lr: float, optimizer: str, muon_lr: float, precision: str, device: str) -> Training:
    """The shared options in groups; the stage resolves the ones whose default depends on it."""
    t = training
    train = TrainArgs(max_steps=t["max_steps"], until_step=t["until_step"], max_minutes=t["max_minutes"],
                      budget_minutes=t["budget_minutes"], batch_size=t["batch_size"], grad_accum=t["grad_accum"],
                      lr=lr, min_lr_ratio=t["min_lr_ratio"], schedule=t["schedule"], warmup_steps=t["warmup_steps"],
                      weight_decay=t["weight_decay"], grad_clip=t["grad_clip"], optimizer=optimizer,
                      muon_lr=muon_lr, precision=precision, compile=t["compile"], fsdp=t["fsdp"],
                      grad_checkpointing=t["grad_checkpointing"], seed=t["seed"],
                      peak_gflops=t["peak_gflops"])
    out = Training(train, EvalArgs(t["eval_every"], t["patience"]),
                   CheckpointArgs(t["checkpoint_every"], t["keep_checkpoints"]), t["logger"], device,
                   t["resume"], t["force"], t["quiet"])
    out.check()
    return out
