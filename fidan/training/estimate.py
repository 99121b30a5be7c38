"""A quick step-time estimate, to size a run before it starts (the demo's first guess of a schedule)."""

from __future__ import annotations

import time

import torch

from fidan.runtime.perf import autocast
from fidan.training.optim import make_optimizer


def estimate_step_seconds(cfg, batch_size: int, grad_accum: int = 1, device: str = "cpu", steps: int = 3,
                          precision: str = "fp32", optimizer: str = "adamw", packed: bool = False) -> float:
    """Time a few training steps of a throwaway model (``packed``: with document-masked attention)."""
    from fidan.model.gpt import GPT

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
