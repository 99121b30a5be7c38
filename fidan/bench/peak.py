"""`fidan bench peak`: the machine's peak matmul FLOP/s, the denominator of MFU."""

from __future__ import annotations

import torch

from fidan.errors import BadInput
from fidan.runtime.device import pick_device
from fidan.runtime.io import atomic_write_json
from fidan.runtime.perf import bf16_supported, measure_peak_flops


def bench_peak(device: str = "auto", size: int = 2048, seconds: float = 2.0, json: str | None = None) -> dict:
    """Measure peak FLOP/s of large square matmuls in fp32 and bf16.

    Args:
        device: auto, cpu or cuda.
        size: matrix size (square).
        seconds: time spent per precision (the best repetition counts).
        json: also write the figures to this JSON file.
    """
    if size < 16 or seconds <= 0:
        raise BadInput(f"--size must be at least 16 and --seconds positive, got {size} and {seconds}")
    device = pick_device(device)
    result = {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__, "size": size,
              "bf16_native": bf16_supported(device)}
    for precision in ("fp32", "bf16"):
        gflops = measure_peak_flops(device, precision, size, seconds) / 1e9
        result[f"{precision}_gflops"] = round(gflops, 1)
        print(f"{precision}: {gflops:,.0f} GFLOP/s ({size}x{size} matmul on {device}, {torch.get_num_threads()} threads)")
    if json:
        atomic_write_json(json, result)
    return result
