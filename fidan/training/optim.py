"""Optimizers and the learning-rate schedule shared by every training stage.

Two choices: AdamW for everything (GPT-2's recipe), or Muon for the hidden weight matrices with AdamW
for embeddings, the output head, norms and biases (the recipe of modded-nanogpt and nanochat). Muon is
torch's own ``torch.optim.Muon`` when the installed torch has it, else the small one below.
"""

from __future__ import annotations

import math

import torch

from fidan.errors import FidanError

OPTIMIZERS = ("adamw", "muon", "adamw8bit")


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """Fused AdamW needs floating-point tensors on one CPU or CUDA device."""
    devices = {p.device.type for p in params}
    return len(devices) <= 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)


def make_adamw(model: torch.nn.Module | list, lr: float, weight_decay: float, betas: tuple[float, float],
               fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (not on biases and norm gains).

    ``model`` is a module or a list of parameters. The fused kernel (one pass over all parameters) is
    used where it is available; ``fused=False`` falls back to torch's multi-tensor (foreach) kernel.
    """
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else list(model)
    params = [p for p in params if p.requires_grad]
    # Matrices decay; biases, norm gains and matrices trained only in some rows (new tokens) do not.
    decay = [p for p in params if p.dim() >= 2 and not getattr(p, "fidan_rows_only", False)]
    no_decay = [p for p in params if p.dim() < 2 or getattr(p, "fidan_rows_only", False)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]] or groups[:1]
    use_fused = _fused_ok(params) if fused is None else fused
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=use_fused or None, foreach=None if use_fused else True)


def make_adamw8bit(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]):
    """bitsandbytes' AdamW with 8-bit moments (blockwise quantized; tensors under 4096 weights keep 32-bit
    ones): a quarter of AdamW's 8 bytes of state per weight, for full tuning of a large base. CPU and CUDA."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise FidanError("--optimizer adamw8bit needs bitsandbytes: pip install 'fidan[lora]'") from None
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2 and not getattr(p, "fidan_rows_only", False)]
    no_decay = [p for p in params if p.dim() < 2 or getattr(p, "fidan_rows_only", False)]
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
              if g["params"]]
    return bnb.optim.AdamW8bit(groups, lr=lr, betas=betas)


def _newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalize a matrix (U S V^T → U S' V^T with S' near 1) by a quintic iteration.

    The coefficients push small singular values up fast; bf16 is accurate enough for an update direction.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16()
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # a·x + (b·G + c·G²)·x
    return x.T if tall else x


class OwnMuon(torch.optim.Optimizer):
    """Muon (MomentUm Orthogonalized by Newton-schulz) for 2-D weights, with the semantics of
    ``torch.optim.Muon``: Nesterov momentum, orthogonalized update, decoupled weight decay, and the
    update scaled by sqrt(max(1, rows / cols)) so tall and wide matrices move at the same RMS rate."""

    def __init__(self, params, lr: float = 0.02, weight_decay: float = 0.0, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = 5):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                      ns_steps=ns_steps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D weights only, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mom = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - mom)
                update = p.grad.lerp(buf, mom) if group["nesterov"] else buf
                update = _newton_schulz(update, group["ns_steps"])
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update.to(p.dtype), alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))


def muon_class() -> type[torch.optim.Optimizer]:
    return getattr(torch.optim, "Muon", OwnMuon)


class MuonAdamW:
    """Muon for the hidden matrices and AdamW for the rest, stepped together as one optimizer.

    ``param_groups`` lists AdamW's groups first (so ``param_groups[0]["lr"]`` is the base rate), then
    Muon's, whose ``lr_scale`` keeps them at ``muon_lr`` relative to the schedule.
    """

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list[dict]:
        return self.adamw.param_groups + self.muon.param_groups

    def step(self) -> None:
        self.adamw.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != {"adamw", "muon"}:
            raise FidanError("the checkpoint's optimizer state is not Muon + AdamW; resume with --optimizer adamw")
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])


def split_muon_params(model: torch.nn.Module) -> tuple[list, list]:
    """Hidden 2-D weights (inside transformer blocks) for Muon; embeddings, head, norms and biases for AdamW."""
    muon, rest, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (muon if p.dim() == 2 and ".blocks." in f".{name}" else rest).append(p)
    return muon, rest


def make_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.95), muon_lr: float = 0.02, fused: bool | None = None):
    """``adamw`` (everything), ``adamw8bit`` (the same with 8-bit moments) or ``muon`` (Muon at ``muon_lr`` for
    block matrices + AdamW at ``lr``)."""
    if name == "adamw":
        return make_adamw(model, lr, weight_decay, betas, fused)
    if name == "adamw8bit":
        return make_adamw8bit(model, lr, weight_decay, betas)
    if name != "muon":
        raise FidanError(f"unknown --optimizer {name}; choose one of {', '.join(OPTIMIZERS)}")
    matrices, rest = split_muon_params(model)
    if not matrices:
        raise FidanError("--optimizer muon: the model has no 2-D weights inside blocks; use --optimizer adamw")
    muon = muon_class()([{"params": matrices, "lr_scale": muon_lr / lr}], lr=muon_lr,
                        weight_decay=weight_decay, momentum=0.95)
    return MuonAdamW(muon, make_adamw(rest, lr, 0.0, betas, fused))


SCHEDULES = ("cosine", "linear")


def lr_at(step: int, max_steps: int, lr: float, warmup_steps: int, min_lr_ratio: float,
          schedule: str = "cosine") -> float:
    """Linear warmup to ``lr``, then cosine (or linear) decay to ``lr * min_lr_ratio`` at ``max_steps``.

    A pure function of the step, so a resumed run follows exactly the same schedule.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    shape = 1 - progress if schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * shape)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
