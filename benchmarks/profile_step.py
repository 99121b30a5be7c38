"""Where a training step's time goes: per phase and per operator (torch.profiler), and the matmul peak at
the step's own shapes.

    python benchmarks/profile_step.py                                  # ders and hizli, eager/compiled, fp32/bf16
    python benchmarks/profile_step.py --preset hizli --precision bf16 --mode eager --top 15

For each configuration it builds the preset at --vocab-size, trains --warmup steps on random tokens (the
step's cost does not depend on the token values), then times --steps steps of fidan's training step (the
model's forward with the chunked head and loss, backward, gradient clipping, fused AdamW or Muon) with
the phases marked, and profiles them. The phases, in milliseconds per step:

- blocks: embedding and transformer blocks, forward (eager only: compiled, the forward is one graph);
- head+loss: the output head and cross-entropy, forward (its gradients are made here too in eager mode:
  the chunked loss computes them chunk by chunk, so its backward only scales them);
- backward, clip, optimizer.

"matmul peak at these shapes" times every matmul of the step alone (forward x @ W.T and the two backward
products, at the step's rows), so its FLOPs over its seconds is what this machine's matmuls reach at these
sizes: the step's ceiling, against which MFU at the 2048x2048 peak understates what is attainable.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from fidan.model.gpt import GPT, config_from_preset
from fidan.model.loss import chunked_cross_entropy
from fidan.runtime.perf import autocast
from fidan.training.optim import make_optimizer
from fidan.training.pretrain import PRESET_LR, PRESET_OPTIMIZER

PHASES = ("blocks", "head+loss", "forward (compiled)", "backward", "clip", "optimizer")


def build(preset: str, vocab: int, compiled: bool):
    torch.manual_seed(0)
    cfg = config_from_preset(preset, vocab)
    model = GPT(cfg).train()
    lr, muon_lr = PRESET_LR.get(preset, (1e-3, 0.02))
    opt = make_optimizer(model, PRESET_OPTIMIZER.get(preset, "adamw"), lr, 0.1, muon_lr=muon_lr)
    fwd = torch.compile(model) if compiled else model
    return cfg, model, fwd, opt


def step(model, fwd, opt, x, y, ctx, compiled: bool) -> None:
    with ctx:
        if compiled:
            with record_function("forward (compiled)"):
                _, loss = fwd(x, y, return_logits=False)
        else:
            with record_function("blocks"):
                h = model.hidden_states(x)
            with record_function("head+loss"):
                loss = chunked_cross_entropy(h.view(-1, h.size(-1)), model.lm_head.weight, y.reshape(-1))
    with record_function("backward"):
        loss.backward()
    with record_function("clip"):
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    with record_function("optimizer"):
        opt.step()
        opt.zero_grad(set_to_none=True)


def matmul_ceiling(model: GPT, rows: int, dtype: torch.dtype, reps: int = 3) -> tuple[float, float]:
    """(GFLOP/s, ms per step) of the step's matmuls alone: every Linear's forward and two backward products."""
    flops = seconds = 0.0
    for mod in model.modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        w = torch.randn(mod.out_features, mod.in_features, dtype=dtype)
        a = torch.randn(rows, mod.in_features, dtype=dtype)
        g = torch.randn(rows, mod.out_features, dtype=dtype)
        pairs = [(a, w.T), (g, w), (g.T, a)]  # forward, input gradient, weight gradient
        for p, q in pairs:
            p @ q
        t = time.perf_counter()
        for _ in range(reps):
            for p, q in pairs:
                p @ q
        seconds += (time.perf_counter() - t) / reps
        flops += 3 * 2 * rows * mod.in_features * mod.out_features
    return flops / seconds / 1e9, seconds * 1e3


def run(preset: str, vocab: int, batch: int, precision: str, compiled: bool, warmup: int, steps: int, top: int):
    cfg, model, fwd, opt = build(preset, vocab, compiled)
    ctx = autocast("cpu", precision)
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, vocab, (batch, cfg.block_size), generator=gen)
    y = torch.randint(0, vocab, (batch, cfg.block_size), generator=gen)
    t = time.perf_counter()
    for _ in range(warmup):
        step(model, fwd, opt, x, y, ctx, compiled)
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(model, fwd, opt, x, y, ctx, compiled)
    wall_ms = (time.perf_counter() - t) * 1e3 / steps
    events = prof.key_averages()
    phase_ms = {e.key: e.cpu_time_total / 1e3 / steps for e in events if e.key in PHASES}
    tokens = batch * cfg.block_size
    flops = model.flops_per_token() * tokens
    gflops, mm_ms = matmul_ceiling(model, tokens, torch.bfloat16 if precision == "bf16" else torch.float32)
    name = f"{preset} {precision} {'compiled' if compiled else 'eager'}"
    print(f"\n## {name}: {wall_ms:.0f} ms/step under the profiler ({tokens / wall_ms * 1e3:,.0f} tokens/s, "
          f"{flops / wall_ms / 1e6:.1f} GFLOP/s); warm-up {warmup} steps {warm_s:.1f} s")
    print(f"matmul peak at these shapes: {gflops:.1f} GFLOP/s, {mm_ms:.0f} ms of matmuls per step "
          f"(the step reaches {mm_ms / wall_ms:.0%} of that ceiling)")
    print("| phase | ms/step | share |\n|---|---|---|")
    for p in PHASES:
        if p in phase_ms:
            print(f"| {p} | {phase_ms[p]:.1f} | {phase_ms[p] / wall_ms:.0%} |")
    print("\n| operator (self CPU time) | ms/step | share | calls/step |\n|---|---|---|---|")
    ops = sorted((e for e in events if e.key not in PHASES and not e.key.startswith("ProfilerStep")),
                 key=lambda e: e.self_cpu_time_total, reverse=True)
    for e in ops[:top]:
        ms = e.self_cpu_time_total / 1e3 / steps
        print(f"| {e.key} | {ms:.1f} | {ms / wall_ms:.0%} | {e.count / steps:g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["ders", "hizli"])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--mode", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for preset in args.preset:
        for precision in args.precision:
            for mode in args.mode:
                run(preset, args.vocab_size, args.batch_size, precision, mode == "compiled", args.warmup,
                    args.steps, args.top)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
