"""Precision for inference: fp32, bf16 weights, or int8 Linear layers, for fidan models and transformers LMs.

- ``auto``: the weights in the dtype their checkpoint holds (fp32 for a fidan run, often bf16 for a
  transformers model), as transformers loads them.
- ``fp32``: the model as trained.
- ``bf16``: every floating-point weight and buffer cast to bfloat16 (half the memory; activations and the
  KV cache follow). Fast only where the CPU computes bf16 natively (AVX512-BF16, AMX); elsewhere each
  matmul converts, and it is slower than fp32.
- ``int8``: the large ``nn.Linear`` layers (the output head, and the attention and MLP projections of
  wider models) become dynamically quantized int8 layers: weights stored as int8, activations quantized
  per call. Embeddings, norms and small layers stay fp32. "Large" is at least ``INT8_MIN_WEIGHTS``
  weights (128 Ki, 512 KiB in fp32): each int8 call pays a fixed cost to quantize its input, which only
  a large matrix earns back by reading a quarter of the bytes. On the 2-core CPU here, quantizing the
  small projections of the `ders` preset (16-64 Ki weights each) made a batch-1 decoding step slower
  than fp32, while its 1 Mi-weight output head gained.

Why ``torch.ao.quantization.quantize_dynamic`` rather than torchao: both were measured on the 2-core AVX2
CPU fidan targets (torch 2.13, torchao 0.18; decode tokens/s of the `ders` and `hizli` presets at batch 1
and 16, side by side). torchao's ``Int8WeightOnlyConfig`` runs its matmuls through
``_weight_int8pack_mm``, which without AVX512 was slower than fp32 at every batch measured;
``Int8DynamicActivationInt8WeightConfig`` was several times slower still. ``quantize_dynamic`` calls
fbgemm's int8 kernels, which use AVX2, and was the fastest of the three int8 routes at every batch. It
needs no extra package. (torch marks eager-mode quantization as deprecated in favour of torchao; the warning
is silenced here, and the choice should be measured again when torchao gains fast AVX2 int8 kernels.)

GPT-2 models from transformers keep their projections in ``Conv1D`` modules (a Linear with its weight
transposed), which no int8 routine recognises; they are rewritten as ``nn.Linear`` first, exactly.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from fidan.errors import BadInput

PRECISIONS = ("auto", "fp32", "bf16", "int8")
# The dtype the loader reads weights in, for each precision: bf16 is loaded as bf16 (never held in fp32 first);
# int8 quantizes fp32 weights; auto keeps the checkpoint's own (fp32 for fidan runs).
LOAD_DTYPE = {"auto": "auto", "fp32": "fp32", "bf16": "bf16", "int8": "fp32"}
INT8_MIN_WEIGHTS = 1 << 17


def check_precision(precision: str) -> str:
    """The precision name, or a one-line BadInput naming the choices."""
    if precision not in PRECISIONS:
        raise BadInput(f"unknown --precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def apply_precision(model: nn.Module, precision: str, min_int8_weights: int = INT8_MIN_WEIGHTS) -> nn.Module:
    """The model at ``precision`` (``fp32``, ``bf16`` or ``int8``), changed in place and returned.

    Works for fidan's ``GPT``, for a ``HFCausalLM`` wrapper (its ``.net`` is converted) and for a bare
    transformers causal LM. int8 replaces the Linear modules with at least ``min_int8_weights`` weights
    (0: every one), so the result is for inference only.
    """
    check_precision(precision)
    if precision == "auto":
        return model
    if precision == "fp32":
        return model.float()
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise BadInput("--precision int8 runs on the CPU (fbgemm kernels); use --device cpu, or bf16 on a GPU")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise BadInput("--precision int8 quantizes fp32 weights; load the model in fp32 first")
    _conv1d_to_linear(model)
    with warnings.catch_warnings():  # eager-mode quantization is marked deprecated; see the module notes
        warnings.simplefilter("ignore")
        large = {name for name, m in model.named_modules()
                 if isinstance(m, nn.Linear) and m.weight.numel() >= min_int8_weights}
        torch.ao.quantization.quantize_dynamic(model, large, dtype=torch.qint8, inplace=True)
    return model


def _conv1d_to_linear(model: nn.Module) -> None:
    """Replace transformers' ``Conv1D`` (y = x @ W + b, W of shape (in, out)) by the equal ``nn.Linear``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ != "Conv1D" or not hasattr(child, "nf"):
                continue
            w = child.weight.detach()
            linear = nn.Linear(w.size(0), w.size(1), bias=child.bias is not None, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                linear.weight.copy_(w.T)
                if child.bias is not None:
                    linear.bias.copy_(child.bias)
            setattr(parent, name, linear)


def quantized_linears(model: nn.Module) -> int:
    """How many int8 dynamic Linear layers the model holds (0 unless ``apply_precision(..., "int8")`` ran)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return sum(isinstance(m, DynamicLinear) for m in model.modules())

