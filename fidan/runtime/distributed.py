"""Data parallelism under `torchrun`: process group, model wrapping, and the few collectives training needs.

`torchrun --nproc-per-node N -m fidan pretrain ...` starts N copies of the same command; each reads
RANK / WORLD_SIZE / LOCAL_RANK from the environment. Backend: NCCL on GPUs, gloo on CPU. Every rank
computes the same global batch of window starts from the shared seeded generator and reads only its
own rows from the memory-mapped token file; DDP averages the gradients, so a step equals a
single-process step on the same global batch. Rank 0 alone evaluates, logs and writes checkpoints.

FSDP (``--fsdp``) shards parameters, gradients and optimizer state over the ranks with PyTorch's
``fully_shard`` (one unit per transformer block, or per decoder layer of a transformers model, plus the
root), for models that do not fit one GPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from fidan.errors import FidanError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if torch.cuda.device_count() <= local_rank:
            raise FidanError(f"rank {rank} wants GPU {local_rank} but only {torch.cuda.device_count()} are visible; "
                             "start torchrun with --nproc-per-node at most the number of GPUs")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank, world, local_rank, device)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, info: DistInfo, fsdp: bool = False) -> torch.nn.Module:
    """DDP (a full replica per rank) or FSDP2 (``fully_shard``: parameters sharded over ranks)."""
    if not info.enabled:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in shard_units(model):
            fully_shard(block)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.local_rank] if info.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def shard_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """FSDP's units: fidan's blocks, or a transformers model's decoder layers (the classes it lists in
    ``_no_split_modules``, the ones it never splits across devices)."""
    if hasattr(model, "blocks"):
        return list(model.blocks)
    net = getattr(model, "net", model)
    names = set(getattr(net, "_no_split_modules", None) or [])
    units = [m for m in net.modules() if type(m).__name__ in names]
    if not units:
        raise FidanError(f"--fsdp: no decoder layers found to shard in {type(net).__name__} (it lists none in "
                         "_no_split_modules); train it without --fsdp")
    return units


def sync_gradients(model: torch.nn.Module, sync: bool):
    """Context for one micro-batch: skip the gradient all-reduce on all but the last micro-batch."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
    elif not sync and hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    return contextlib.nullcontext()


def mean_over_ranks(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return float(t) / info.world_size


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when it is true on any (e.g. rank 0's clock says stop)."""
    return any_ranks([flag], info)[0]


def any_ranks(flags: list[bool], info: DistInfo) -> list[bool]:
    """:func:`any_rank` for several flags in one collective."""
    if not info.enabled:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def broadcast_int(value: int, info: DistInfo) -> int:
    """Rank 0's value on every rank (e.g. a schedule length planned from rank 0's clock)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=info.device)
    dist.broadcast(t, src=0)
    return int(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def full_model_state(model: torch.nn.Module, info: DistInfo, fsdp: bool) -> dict | None:
    """Under FSDP, gather the full (unsharded) weights onto rank 0's CPU; a collective on all ranks."""
    if not (fsdp and info.enabled):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model, optimizer, info: DistInfo, fsdp: bool) -> dict | None:
    if not (fsdp and info.enabled):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def gathered_copy(raw: torch.nn.Module, full_weights: dict | None) -> torch.nn.Module:
    """The model to save: itself, or an unsharded CPU copy holding FSDP's gathered weights."""
    if not full_weights:
        return raw
    copy = raw.empty_copy() if hasattr(raw, "empty_copy") else type(raw)(raw.config)
    copy.load_state_dict(full_weights)
    return copy
