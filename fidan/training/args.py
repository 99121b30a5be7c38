"""The settings every training stage shares, in groups, each declared once (fidan.training.settings
derives the flags, --help sections, config.yaml and the flat keywords from them).

A default of ``None`` or ``"auto"`` leaves the choice to the stage (the preset's learning rate, the base
model's optimizer, bf16 where the hardware has it): :meth:`TrainArgs.settled` fills those in before training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from fidan.errors import FidanError
from fidan.training.settings import Group, option

__all__ = ["TrainArgs", "EvalArgs", "CheckpointArgs", "LoraArgs", "LoadArgs", "LogArgs", "RunArgs", "ShapeArgs",
           "Precision"]

Precision = Literal["auto", "fp32", "bf16", "fp16"]


def _positive(flag: str, value) -> None:
    if value is not None and value <= 0:
        raise FidanError(f"--{flag} must be positive, got {value}")


@dataclass
class TrainArgs(Group, key="train", title="training: schedule, batch, optimizer, precision, time"):
    """How to optimize: schedule, batch, optimizer, precision, time."""

    max_steps: int = option(1000, "length of the learning-rate schedule, in optimizer steps.")
    until_step: int | None = option(None, "stop and checkpoint at this step (continue later with --resume).")
    max_minutes: float | None = option(None, "stop and checkpoint after this many minutes of training.")
    budget_minutes: float | None = option(
        None, "plan the run to fill this many minutes: the schedule's length is re-estimated from the measured "
              "time per step as training goes (--max-steps is then only the first guess).")
    budget_counts: Literal["wall", "training"] = option(
        "wall", "what --budget-minutes counts: wall time (evaluations and checkpoints included) or the training "
                "steps' time only (evaluations excluded, as `fidan bench speedrun` reports it).")
    batch_size: int = option(32, "sequences per micro-batch (per process under torchrun).")
    grad_accum: int = option(1, "micro-batches per optimizer step.")
    lr: float | None = option(None, "peak learning rate.")
    min_lr_ratio: float = option(0.1, "the schedule ends at lr * min_lr_ratio.")
    schedule: Literal["cosine", "linear"] = option("cosine", "decay after warm-up: cosine or linear.")
    warmup_steps: int = option(50, "linear warmup steps (at most a quarter of the run).")
    weight_decay: float = option(0.1, "weight decay on matrices and embeddings.")
    grad_clip: float = option(1.0, "clip the global gradient norm to this (0 disables).")
    optimizer: Literal["auto", "adamw", "muon", "adamw8bit"] = option(
        "auto", "adamw, muon (Muon for block matrices + AdamW for the rest), adamw8bit (bitsandbytes' 8-bit AdamW: "
                "a quarter of AdamW's state), or auto.")
    muon_lr: float | None = option(None, "peak learning rate of the Muon matrices.")
    precision: Precision = option("auto", "auto (bf16 autocast where the hardware supports it), fp32, bf16 or fp16 "
                                          "(CUDA only).")
    compile: bool | None = option(
        None, "compile the model with torch.compile: a slower start (under a minute on a CPU), faster steps. Default: "
              "compile when 5 minutes or more of training (15 in fp32 on a CPU) are left after the first steps and a "
              "compiler works here "
              "(full training of fidan models on one process); --no-compile never does.")
    fsdp: bool = option(False, "under torchrun, shard the model with FSDP instead of replicating it (DDP).")
    grad_checkpointing: bool = option(False, "recompute each block's activations in the backward pass instead of "
                                             "keeping them: less memory for about a third more compute.")
    seed: int = option(1337, "seed for initialization, batches and dropout.")
    peak_gflops: float | None = option(None, "peak GFLOP/s of the machine for MFU (default: measured briefly at "
                                             "start).")

    def settled(self, evals: EvalArgs, ckpts: CheckpointArgs, *, lr: float, optimizer: str, muon_lr: float,
                precision: str) -> TrainArgs:
        """These settings with the stage's choices for the ones left to it (``None``, ``"auto"``); they, the
        evaluation's and the checkpoints' checked."""
        train = dataclasses.replace(self, lr=self.lr if self.lr is not None else lr,
                                    optimizer=optimizer if self.optimizer == "auto" else self.optimizer,
                                    muon_lr=self.muon_lr if self.muon_lr is not None else muon_lr, precision=precision)
        for part in (train, evals, ckpts):
            part.check()
        if evals.patience and train.fsdp:
            raise FidanError("--patience keeps the best weights, which --fsdp does not gather; drop one of them")
        return train

    def check(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "lr", "muon_lr", "max_minutes", "budget_minutes"):
            _positive(name.replace("_", "-"), getattr(self, name))
        if self.warmup_steps < 0:
            raise FidanError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise FidanError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.fsdp and self.optimizer != "adamw":
            raise FidanError(f"--fsdp shards every parameter, which {self.optimizer} cannot handle as sharded "
                             "tensors; use --optimizer adamw")


@dataclass
class EvalArgs(Group, key="eval", title="evaluation and early stopping"):
    """When to evaluate, and when to stop because the held-out figure stopped improving."""

    every: int = option(100, "evaluate held-out loss and bits per byte every N steps.", flag="eval_every")
    patience: int = option(0, "stop after this many evaluations without a better held-out loss and keep the best "
                              "weights (0 disables early stopping).")

    def check(self) -> None:
        _positive("eval-every", self.every)
        if self.patience < 0:
            raise FidanError(f"--patience must be >= 0, got {self.patience}")


@dataclass
class CheckpointArgs(Group, key="checkpoint", title="checkpoints"):
    every: int = option(200, "write a checkpoint every N steps.", flag="checkpoint_every")
    keep: int = option(3, "keep the newest K checkpoints.", flag="keep_checkpoints")

    def check(self) -> None:
        _positive("checkpoint-every", self.every)


@dataclass
class LoraArgs(Group, key="lora", title="LoRA and QLoRA adapters"):
    lora_r: int = option(0, "train LoRA adapters of this rank instead of the weights (0: off).")
    lora_alpha: float = option(32.0, "LoRA scale: updates are multiplied by alpha / r.")
    lora_targets: str | None = option(None, "comma-separated linear layers that get adapters (default: every "
                                            "attention and MLP layer).")
    qlora: bool = option(False, "load the base with its block linear layers in 4-bit NF4 and train LoRA adapters "
                                "over it (needs --lora-r).")

    def check(self) -> None:
        if self.qlora and not self.lora_r:
            raise FidanError("--qlora trains LoRA adapters over a 4-bit base: pass --lora-r too (e.g. --lora-r 16)")
        if not self.lora_r and self.lora_targets:
            raise FidanError("--lora-targets needs --lora-r (the adapters' rank)")


@dataclass
class LoadArgs(Group, key="load", title="loading a transformers base"):
    load_dtype: Precision = option("auto", "precision a transformers base is loaded in: auto (its checkpoint's own), "
                                           "fp32, bf16 or fp16; frozen weights stay in it, trained ones are kept in "
                                           "fp32.")
    trust_remote_code: bool = option(False, "let a transformers base run the Python code in its folder or hub "
                                            "repository (never done without this flag).")


@dataclass
class LogArgs(Group, key="log", title="logging"):
    logger: list[str] | None = option(None, "also send metrics to tensorboard, wandb or csv (repeatable or comma "
                                            "separated); metrics.jsonl is always written.")
    quiet: bool = option(False, "no progress bar or samples.")


@dataclass
class RunArgs(Group, key="run", title="the run: device, resume, replace"):
    device: str = option("auto", "auto (cuda, else a working Apple GPU: mps, else cpu), cpu, cuda or mps.")
    resume: bool = option(False, "continue exactly from the newest checkpoint in --out.")
    force: bool = option(False, "replace an existing run folder.")


@dataclass
class ShapeArgs(Group, key="shape", title="model shape (a new model)"):
    """A new model's architecture: a preset and what to change of it."""

    preset: str = option("ders", "model architecture preset: ders (the lesson's GPT-2), hizli (fastest to quality "
                                 "on CPU) or qwen3 (Qwen3's shape, small, tied embeddings: exports as "
                                 "Qwen3ForCausalLM).")
    block_size: int | None = option(None, "sequence length (default: the preset's).")
    dropout: float | None = option(None, "dropout rate (default: the preset's).")
    depth: int | None = option(None, "the size dial: layers; width is 64 per layer, heads of size 64 (default: the "
                                     "preset's size).")
    n_layer: int | None = option(None, "transformer blocks, as the lesson sizes its model (overrides the preset and "
                                       "--depth).")
    n_head: int | None = option(None, "attention heads; n_embd must divide by it (rotary positions need an even head "
                                      "size).")
    n_embd: int | None = option(None, "the model's width (embedding size).")
    mlp_ratio: float | None = option(None, "the MLP's hidden width as a multiple of n_embd (default: the preset's, 4 "
                                           "for ders).")

    def sized(self) -> bool:
        """Whether any option that sizes a new model was given."""
        return any(v is not None for v in (self.depth, self.n_layer, self.n_head, self.n_embd, self.mlp_ratio))

