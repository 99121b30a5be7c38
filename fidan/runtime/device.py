"""Device selection and process facts (RSS) shared by training, generation and benchmarks."""

from __future__ import annotations

import os

import torch

from fidan.errors import BadInput


def pick_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is present, else ``mps`` (an Apple GPU) when it is there and works, else
    ``cpu``."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_works() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(f"--device {device} asked for, but no CUDA GPU is available; use --device cpu")
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise BadInput("--device mps asked for, but Apple's Metal (MPS) backend is not available on this "
                           "machine or in this torch build; use --device cpu")
        return device
    if device != "cpu" and not device.startswith("cuda"):
        raise BadInput(f"unknown --device {device}; use auto, cpu, cuda or mps")
    return device


def mps_works() -> bool:
    """Apple's Metal backend is built in, available, and runs a matmul (it can be listed but unusable, as in a
    virtual machine)."""
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        return False
    try:
        x = torch.ones(2, 2, device="mps")
        return bool((x @ x).sum().item() == 8)
    except Exception:  # noqa: BLE001 - any failure means: not this backend
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    On Linux, the high-water mark of the process's own memory (VmHWM): ``ru_maxrss`` also keeps the peak of
    the process it was forked from, so a command started from a large process would report that one's.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except ImportError:  # Windows
        import psutil

        return psutil.Process(os.getpid()).memory_info().peak_wset / 2**20


def set_threads(threads: int | None) -> int:
    """Run torch's CPU operators on ``threads`` threads (None or 0: torch's own choice); the count in use."""
    if threads is not None:
        if threads < 0:
            raise BadInput(f"--threads must be positive (0 or leave it out: torch's default), got {threads}")
        if threads:
            torch.set_num_threads(threads)
    return torch.get_num_threads()
