"""Whether a training run compiles its model with torch.compile.

``--compile`` and ``--no-compile`` decide. Left to fidan (the default), a run compiles when compiling pays
for itself within it: compiling takes 40 to 50 s on a 2-core CPU with an empty cache (less once inductor
has cached the kernels) and then makes each step of fidan's models 1.1x to 1.6x faster in bf16 (0.8x to
1.3x in fp32; the speed-up moves with the machine's load), so it pays after two to ten minutes of bf16 training.
The run times its first eager steps; if 5 minutes or more of training are left (15 in fp32 on a CPU)
and a compiler toolchain works here (a C++ compiler on the CPU, triton on a CUDA GPU), it compiles from
the next step on. Only full training of fidan's own models on one process is compiled by default (adapters,
transformers models and torchrun runs stay eager unless ``--compile`` asks).

The decision and the step it took effect at go into every checkpoint, so ``--resume`` replays them: the
compiled and eager steps of a resumed run are those of the uninterrupted one.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable

import torch

AUTO_AFTER_STEPS = 3  # eager steps timed before deciding (the first is discounted: warm-up)
# Training left for compiling to be chosen. Measured on a 2-core CPU (benchmarks/compile_payback.py, cold
# cache): compiling took 40-52 s and repaid itself after 1.8-3.4 minutes in bf16 and for hizli in fp32, but
# after 14 minutes for ders in fp32 (1.07x faster steps): fp32 on a CPU waits for a longer run.
PAYS_AFTER_S = 300.0
PAYS_AFTER_S_CPU_FP32 = 900.0


def pays_after_s(device: str, precision: str) -> float:
    return PAYS_AFTER_S_CPU_FP32 if device.split(":")[0] == "cpu" and precision == "fp32" else PAYS_AFTER_S


def toolchain_problem(device: str) -> str | None:
    """Why torch.compile cannot work on ``device`` here, or None when it can."""
    kind = device.split(":")[0]
    if kind == "cpu":
        names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(name and shutil.which(name) for name in names):
            return "no C++ compiler (g++ or clang++) is installed"
        return None
    if kind == "cuda":
        return None if importlib.util.find_spec("triton") else "triton is not installed"
    return f"torch.compile is not used on {kind} by default"


def _compiles(device: str) -> str | None:
    """Compile and run a tiny function: a missing header or a broken compiler shows here, not mid-run."""
    try:
        f = torch.compile(lambda x: (x * 2 + 1).sum(), dynamic=False)
        f(torch.ones(8, device=device))
        return None
    except Exception as e:  # noqa: BLE001 - any failure means: stay eager
        return f"a test compilation failed ({type(e).__name__})"


class CompileChoice:
    """The run's compile decision: asked (True/False) or automatic (None), replayed on resume."""

    def __init__(self, asked: bool | None, device: str, eligible: bool, precision: str = "bf16"):
        self.asked, self.device, self.eligible = asked, device, eligible
        self.threshold_s = pays_after_s(device, precision)
        self.decided: bool = asked is not None
        self.from_step: int | None = 0 if asked else None  # first compiled step (0: from the start)
        self.timed: list[float] = []

    def state(self) -> dict:
        return {"asked": self.asked, "decided": self.decided, "from_step": self.from_step}

    def resume(self, saved: dict | None) -> None:
        """Take the decision of the run being resumed, unless --compile / --no-compile overrides it."""
        if self.asked is None and saved and saved.get("decided"):
            self.decided, self.from_step = True, saved.get("from_step")

    def compiled_at(self, step: int) -> bool:
        return self.from_step is not None and step >= self.from_step

    def observe(self, step: int, first_step: int, seconds: float, left_s: Callable[[float], float]) -> str | None:
        """After step ``step`` (which took ``seconds``): decide once enough steps are timed, with ``left_s``
        a function of the time per step: the training seconds left. Returns a line for the user, or None."""
        if self.decided:
            return None
        self.timed.append(seconds)
        if step - first_step < AUTO_AFTER_STEPS:
            return None
        self.decided = True
        if not self.eligible:
            return None
        per_step = sum(self.timed[1:]) / max(1, len(self.timed) - 1)
        left = left_s(per_step)
        if left < self.threshold_s:
            return None
        started = time.time()
        problem = toolchain_problem(self.device) or _compiles(self.device)
        if problem:
            return (f"note: about {left / 60:.0f} minutes of training are left, but the model is not compiled: "
                    f"{problem} (--no-compile silences this)")
        self.from_step = step
        return (f"compiling the model from step {step + 1}: about {left / 60:.0f} minutes of training are left, "
                f"which torch.compile repays (toolchain checked in {time.time() - started:.1f} s; --no-compile "
                "to train eager)")


def auto_eligible(model: torch.nn.Module, distributed: bool) -> bool:
    """Whether the default may compile: full training of a fidan model, on one process."""
    from fidan.model.gpt import GPT

    return isinstance(model, GPT) and not distributed and all(p.requires_grad for p in model.parameters())
