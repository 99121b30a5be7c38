"""Speed facts shared by training and benchmarks: bf16 support, autocast, peak FLOP/s and MFU."""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path

import torch

from fidan.errors import FidanError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls beat fp32 on a CPU only with native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_supported(device: str) -> bool:
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device == "cpu":
        return cpu_has_fast_bf16()
    if device == "mps":  # Metal computes bf16 from macOS 14 on
        check = getattr(torch.backends.mps, "is_macos_or_newer", None)
        return bool(check and check(14, 0))
    return False


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` → ``bf16`` where the hardware computes it natively, else ``fp32``."""
    if precision not in PRECISIONS:
        raise FidanError(f"unknown --precision {precision}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and device.startswith("cuda") and not bf16_supported(device):
        raise FidanError("--precision bf16: this GPU has no bf16 support; use --precision fp16 or fp32")
    if precision == "fp16" and not device.startswith("cuda"):
        raise FidanError(f"--precision fp16 needs a CUDA GPU (it trains with loss scaling there); on {device} use "
                         "bf16 or fp32")
    return precision


def autocast(device: str, precision: str):
    """bf16 or fp16 autocast (weights and optimizer stay fp32), or a no-op context for fp32."""
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.split(":")[0], dtype=dtype)
    return contextlib.nullcontext()


def measure_peak_flops(device: str = "cpu", precision: str = "fp32", size: int = 2048, seconds: float = 1.0) -> float:
    """Best FLOP/s of square matmuls of ``size``, repeated for about ``seconds`` (the roofline for MFU)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    start = time.perf_counter()
    a @ b  # warm-up: thread pools, kernels
    sync()
    best = 2 * size**3 / (time.perf_counter() - start)
    # Where one product already takes longer than the time given (bf16 emulated on a CPU without native
    # bf16: about 18 s for 2048² on one thread of an AVX2 CPU), the warm-up is the measurement.
    if time.perf_counter() - start > seconds:
        return best
    while True:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * size**3 / (time.perf_counter() - t0))
        if time.perf_counter() - start > seconds:
            return best


@functools.cache
def quick_peak_flops(device: str, precision: str) -> float:
    """A fast peak estimate (a fraction of a second), measured once per process."""
    return measure_peak_flops(device, precision, size=1024 if device == "cpu" else 4096, seconds=0.3)


def mfu(flops_per_token: float, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilization: achieved training FLOP/s over the peak."""
    return flops_per_token * tokens_per_s / peak_flops if peak_flops > 0 else 0.0


def is_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so that a clock read after it covers that work (nothing off CUDA)."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def gpu_peak_reset(device: str) -> None:
    """Start a new high-water mark of ``torch.cuda.max_memory_allocated`` on a CUDA device (nothing elsewhere)."""
    if is_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak_mb(device: str) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, in MiB; None off CUDA."""
    if not is_cuda(device):
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20
