"""Classification as a task of the one training loop (fidan.training.loop): batches, the loss, held-out
macro-F1 for picking the best weights and early stopping; and batched prediction.

The loss of a step is ``sum_i w_i * l_i / sum_i w_i`` over the whole global batch (``w_i`` the class
weight of example i, 1 without weights; ``l_i`` cross-entropy, with label smoothing and the focal factor
``(1 - p_i) ** gamma`` when asked), so it does not depend on how the batch is split into micro-batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextvars import ContextVar

import numpy as np
import torch
import torch.nn.functional as F

from fidan.classify.metrics import classification_metrics
from fidan.classify.models import pad_batch
from fidan.training.sft_data import EpochBatches

CLASS_WEIGHTS = ("none", "balanced", "sqrt")
# Called as hook(index, figures) after every held-out evaluation (a search prunes bad trials with it).
eval_hook: ContextVar = ContextVar("classify_eval_hook", default=None)


def class_weights(counts: list[int], how: str) -> list[float] | None:
    """Per-class loss weights from the training counts: ``balanced`` is n / (k * n_c) (scikit-learn's
    rule), ``sqrt`` its square root (milder); ``none`` gives None."""
    if how == "none":
        return None
    n, k = sum(counts), len(counts)
    w = [n / (k * max(c, 1)) for c in counts]
    return [math.sqrt(x) for x in w] if how == "sqrt" else w


def example_losses(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0, gamma: float = 0.0
                   ) -> torch.Tensor:
    """Per-example loss: cross-entropy against the (smoothed) target, times the focal factor."""
    logp = F.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(1, y[:, None]).squeeze(1)
    loss = -picked if smoothing == 0 else -((1 - smoothing) * picked + smoothing * logp.mean(-1))
    if gamma:
        loss = (1 - picked.exp()).clamp_min(0).pow(gamma) * loss
    return loss


class EpochOrder:
    """Examples in a seeded order per epoch (fidan.training.sft_data's, one example per row)."""

    def __init__(self, n: int, seed: int):
        self.batches = EpochBatches([([0], [0])] * n, block_size=1, pack=False, seed=seed)

    @property
    def epoch(self) -> int:
        return self.batches.epoch

    def next(self, k: int) -> list[int]:
        return [row[0] for row in self.batches.next(k)]

    def state(self) -> dict:
        return self.batches.state()

    def load_state(self, state: dict) -> None:
        self.batches.load_state(state)


def length_batches(rows: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Indices in batches of similar length (less padding), every index once."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    for i in range(0, len(order), batch_size):
        yield order[i:i + batch_size]


@torch.no_grad()
def predict_logits(model: torch.nn.Module, rows: list[list[int]], pad_id: int, batch_size: int, device: str,
                   autocast_ctx=None) -> torch.Tensor:
    """Logits (n, k) on the CPU, in the order of ``rows``."""
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    for idx in length_batches(rows, batch_size):
        x, mask = pad_batch([rows[i] for i in idx], pad_id)
        if autocast_ctx is not None:
            with autocast_ctx:
                logits = model(x.to(device), mask.to(device))
        else:
            logits = model(x.to(device), mask.to(device))
        logits = logits.float().cpu()
        if out is None:
            out = torch.empty(len(rows), logits.size(1))
        out[idx] = logits
    model.train(was_training)
    return out if out is not None else torch.empty(0, 0)


def held_out_figures(logits: torch.Tensor, y: list[int], labels: list[str]) -> dict:
    """Loss (plain cross-entropy), accuracy, macro-F1 and weighted F1, prefixed ``val_``."""
    target = torch.tensor(y, dtype=torch.long)
    m = classification_metrics(y, logits.argmax(1).tolist(), labels)
    return {"val_loss": float(F.cross_entropy(logits, target)), "val_accuracy": m["accuracy"],
            "val_macro_f1": m["macro_f1"], "val_weighted_f1": m["weighted_f1"]}


class ClassifyTask:
    """What `fidan classify train` hands the loop."""

    stage = "classify"
    evaluate_first = False
    monitor = "val_macro_f1"
    higher_is_better = True

    def __init__(self, model: torch.nn.Module, train: tuple[list[list[int]], list[int]],
                 val: tuple[list[list[int]], list[int]], labels: list[str], pad_id: int, args, dist, device: str,
                 weights: list[float] | None = None, smoothing: float = 0.0, gamma: float = 0.0,
                 eval_ctx=None, monitor: str = "val_macro_f1"):
        self.model, self.labels, self.pad_id = model, labels, pad_id
        self.monitor = monitor  # the held-out figure that picks the best weights (higher is better)
        self.train_rows, self.train_y = train
        self.val_rows, self.val_y = val
        self.args, self.dist, self.device, self.eval_ctx = args, dist, device, eval_ctx
        self.weights = torch.tensor(weights, dtype=torch.float32) if weights else None
        self.smoothing, self.gamma = smoothing, gamma
        self.order = EpochOrder(len(self.train_rows), args.seed)
        self.batch: list[int] = []
        self.denominator = 1.0
        self.evaluations = 0

    def _weight(self, idx: list[int]) -> torch.Tensor:
        y = torch.tensor([self.train_y[i] for i in idx], dtype=torch.long)
        return self.weights[y] if self.weights is not None else torch.ones(len(idx))

    def begin_step(self) -> None:
        global_rows = self.args.batch_size * self.args.grad_accum * self.dist.world_size
        self.batch = self.order.next(global_rows)
        self.denominator = float(self._weight(self.batch).sum())

    def micro_batch(self, index: int) -> dict:
        bs = self.args.batch_size
        start = (index * self.dist.world_size + self.dist.rank) * bs
        idx = self.batch[start:start + bs]
        x, mask = pad_batch([self.train_rows[i] for i in idx], self.pad_id)
        y = torch.tensor([self.train_y[i] for i in idx], dtype=torch.long)
        return {"x": x.to(self.device), "mask": mask.to(self.device), "y": y.to(self.device),
                "w": self._weight(idx).to(self.device)}

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, float, int]:
        logits = model(batch["x"], batch["mask"])
        share = (example_losses(logits, batch["y"], self.smoothing, self.gamma) * batch["w"]).sum() / self.denominator
        # DDP averages gradients over processes; scaling by the world size makes that a sum of the parts.
        return share * self.dist.world_size, share.item() * self.dist.world_size, int(batch["mask"].sum())

    def evaluate(self) -> dict:
        if not self.val_rows:
            return {}
        logits = predict_logits(self.model, self.val_rows, self.pad_id, self.args.batch_size * 2, self.device,
                                self.eval_ctx)
        figures = held_out_figures(logits, self.val_y, self.labels)
        self.evaluations += 1
        hook = eval_hook.get()
        if hook is not None:
            hook(self.evaluations, figures)
        return figures

    @staticmethod
    def describe(result: dict) -> str:
        return (f"held-out macro-F1 {result['val_macro_f1']:.3f}, accuracy {result['val_accuracy']:.3f}, "
                f"loss {result['val_loss']:.3f}")

    def final_evaluation(self) -> dict | None:
        return None  # every evaluation covers the whole validation split

    def record(self) -> dict:
        return {"epoch": self.order.epoch}

    def state_dict(self) -> dict:
        return {"data": self.order.state()}

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state(state["data"])


def probabilities(logits: torch.Tensor) -> np.ndarray:
    return F.softmax(logits.float(), dim=-1).numpy()
