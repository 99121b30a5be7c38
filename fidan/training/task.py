"""What a training stage hands the loop (:class:`Task`), where a run is (:class:`Progress`, what a checkpoint
restores) and the seed of each step's dropout masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch


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
    # Optional: ``monitor`` (the held-out figure that picks the best weights and drives early stopping;
    # default "val_loss"), ``higher_is_better`` (default False) and ``describe(result) -> str`` (the
    # evaluation line; default: loss and bits per byte).


def monitored(task) -> tuple[str, bool]:
    return getattr(task, "monitor", "val_loss"), getattr(task, "higher_is_better", False)


def describe(task, result: dict) -> str:
    if hasattr(task, "describe"):
        return task.describe(result)
    return f"held-out loss {result['val_loss']:.3f}, {result['val_bpb']:.3f} bits/byte"


@dataclass
class Progress:
    """Everything about where a run is that a checkpoint must restore."""

    step: int = 0
    plan: int = 0  # planned length of the schedule, in steps
    train_s: float = 0.0  # seconds spent in training steps
    wall_s: float = 0.0  # seconds of wall time, evaluations and checkpoints included
    # the best held-out value of the task's monitored figure so far (``loss`` for older checkpoints)
    best: dict = field(default_factory=lambda: {"value": None, "step": -1, "bad_evals": 0})


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """Dropout masks are a pure function of (seed, step, rank): exact resume needs no RNG state."""
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63)
