"""What a model's weights take in memory, however they are stored (fp32, bf16, 4-bit NF4 with its scales), and
gradient checkpointing, which trades activation memory for compute."""

from __future__ import annotations

import torch

from fidan.errors import BadConfig


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes the weights take in memory: parameters and buffers (a tied matrix once), 4-bit scales included."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
        state = getattr(t, "quant_state", None)
        if state is not None:
            total += _quant_state_bytes(state)
    return total


def _quant_state_bytes(state, tables: bool = True) -> int:
    """A 4-bit weight's scales (its absmax per block, themselves quantized with double quantization) and,
    with ``tables``, its lookup tables (16 or 256 values per layer, whatever the layer's size)."""
    n = 0
    for part in (getattr(state, "absmax", None), getattr(state, "code", None) if tables else None):
        if isinstance(part, torch.Tensor):
            n += part.numel() * part.element_size()
    nested = getattr(state, "state2", None)
    return n + (_quant_state_bytes(nested, tables) if nested is not None else 0)


def logical_parameters(model: torch.nn.Module) -> int:
    """Weights as the model has them, however stored (a 4-bit layer packs two in a byte)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.data_ptr() in seen:
            continue
        seen.add(p.data_ptr())
        state = getattr(p, "quant_state", None)
        total += int(torch.Size(state.shape).numel()) if state is not None else p.numel()
    return total


def four_bit_summary(model: torch.nn.Module) -> dict:
    """How many linear layers hold 4-bit weights, and the bytes per weight they take (scales included, the
    per-layer lookup tables not; about 0.52 for NF4 with double quantization): proof that a base is 4-bit."""
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit" and not hasattr(m, "lora_A")
              and getattr(getattr(m, "weight", None), "quant_state", None) is not None]  # not peft's wrapper
    weights = sum(int(torch.Size(m.weight.quant_state.shape).numel()) for m in layers)
    stored = sum(m.weight.numel() * m.weight.element_size() + _quant_state_bytes(m.weight.quant_state, False)
                 for m in layers)
    return {"layers": len(layers), "bytes_per_weight": round(stored / weights, 4) if weights else None}


def grad_checkpointing(model: torch.nn.Module) -> None:
    """Recompute block activations in backward, in every model part that can (fidan's GPT, transformers)."""
    parts = [m for m in model.modules() if hasattr(m, "set_grad_checkpointing")]
    if not parts:
        raise BadConfig(f"--grad-checkpointing: {type(model).__name__} has no blocks to checkpoint; leave it out")
    for part in parts:
        part.set_grad_checkpointing(True)
