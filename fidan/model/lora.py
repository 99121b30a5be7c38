"""LoRA: train small low-rank adapters beside frozen weights, through ``peft``.

Each targeted linear layer ``W`` gains two small matrices, ``A`` (r × in) and ``B`` (out × r), and
computes ``W x + (alpha / r) · B A x``. ``B`` starts at zero, so an adapted model starts exactly as the
base model; only ``A`` and ``B`` are trained. ``merge_lora`` folds ``(alpha / r) · B A`` into ``W`` and
gives back an ordinary model with the original state_dict keys.

Adapters are injected in place (``peft.inject_adapter_in_model``): a fidan GPT stays a ``GPT`` (same
``forward``, ``config``, ``num_params``, ``flops_per_token``), and a transformers model keeps its class.
Apply LoRA before wrapping a model in DDP or ``torch.compile``.

QLoRA: the base's block linear layers in 4-bit NF4 (bitsandbytes ``Linear4bit``, loaded by
fidan.artifacts.loader, on CPU or CUDA) with the adapters over them; ``merge_lora`` dequantizes first.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from fidan.errors import BadConfig, BadInput, MissingExtra

# Default targets, in order of preference: fidan's GPT, Llama/Qwen/Mistral-style and GPT-2-style blocks.
FIDAN_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.gate", "mlp.proj")
HF_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "c_attn", "c_proj", "c_fc")


@dataclass
class LoraSpec:
    """Rank ``r``, scale ``alpha`` (updates are scaled by alpha / r), dropout on the adapter input and the
    target layers (names or dotted name endings such as ``attn.proj``; None: ``default_targets``)."""

    r: int = 16
    alpha: float = 32
    dropout: float = 0.0
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):  # "q_proj,v_proj" from a command line
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip())
        elif self.targets is not None:
            self.targets = tuple(self.targets)
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise BadConfig(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not self.alpha > 0:
            raise BadConfig(f"LoRA alpha must be positive, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise BadConfig(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if self.targets is not None and not self.targets:
            raise BadConfig("LoRA targets are empty; name at least one linear layer, or leave them out for the defaults")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = list(self.targets) if self.targets is not None else None
        return d


def _peft():
    from fidan.model.hf import quiet_bitsandbytes

    quiet_bitsandbytes()  # peft imports bitsandbytes when it is installed
    try:
        import peft
    except ImportError:
        raise MissingExtra("LoRA needs the peft package: pip install 'fidan[lora]'") from None
    return peft


def _is_linear(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2) is a linear layer with a transposed weight; bnb's 4-bit layers subclass Linear
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def _output_head(model: nn.Module) -> nn.Module | None:
    for owner in (model, getattr(model, "net", None)):
        get = getattr(owner, "get_output_embeddings", None)
        if callable(get) and get() is not None:
            return get()
    return getattr(model, "lm_head", None)


def _matches(name: str, target: str) -> bool:
    """peft's rule: a target names a module when it is the full name or a dotted ending of it."""
    return name == target or name.endswith("." + target)


def linear_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Linear layers that can take LoRA, by name (the output head is left out: the chunked training loss
    reads its weight directly, so an adapter there would be skipped)."""
    head = _output_head(model)
    return {n: m for n, m in model.named_modules() if _is_linear(m) and m is not head}


def _layer_patterns(names) -> str:
    seen = dict.fromkeys(re.sub(r"\.\d+(?=\.)", ".N", n) for n in names)
    return ", ".join(seen) or "none"


def default_targets(model: nn.Module) -> list[str]:
    """Attention and MLP linear layers: fidan's qkv/proj/fc/gate/proj, else the usual transformers names."""
    names = list(linear_layers(model))
    candidates = FIDAN_TARGETS if any(_matches(n, "attn.qkv") for n in names) else HF_TARGETS
    found = [t for t in candidates if any(_matches(n, t) for n in names)]
    if not found:
        raise BadConfig(f"no usual attention or MLP layers found for LoRA; name targets from: {_layer_patterns(names)}")
    return found


def _is_lora_layer(module: nn.Module) -> bool:
    return any(c.__name__ == "LoraLayer" for c in type(module).__mro__)  # without importing peft


def has_lora(model: nn.Module) -> bool:
    return any(_is_lora_layer(m) for m in model.modules())


def apply_lora(model: nn.Module, spec: LoraSpec, train_also: tuple[str, ...] = ()) -> nn.Module:
    """Inject LoRA adapters into ``model`` in place and freeze every other parameter; returns ``model``.

    ``train_also`` names modules that stay fully trainable beside the adapters, such as ``("wte", "lm_head")``
    when new token rows were added to a model and must learn (they are saved with the model, not the adapters).
    """
    peft = _peft()
    if has_lora(model):
        raise BadConfig("the model already has LoRA adapters; merge them (merge_lora) before adding new ones")
    outer, model = model, peft_target(model)
    modules = dict(model.named_modules())
    also = [t for t in train_also if not any(_matches(n, t) for n in modules if n)]
    if also:
        raise BadConfig(f"modules to train beside LoRA ({', '.join(also)}) match no module of the model")
    also = [m for n, m in modules.items() if n and any(_matches(n, t) for t in train_also)]
    chosen, conv1d = check_targets(model, spec)
    config = peft.LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, bias="none",
                             target_modules=chosen, fan_in_fan_out=conv1d)
    for p in model.parameters():
        p.requires_grad_(False)
    model = peft.inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():  # peft freezes the base already; make sure of it
        p.requires_grad_("lora_" in name)
    for module in also:
        module.requires_grad_(True)
    return outer


def peft_target(model: nn.Module) -> nn.Module:
    """The module adapters are injected into: a transformers model itself (inside fidan's ``HFCausalLM``), so
    adapter names are the ones peft gives that model, or the model as it is."""
    from fidan.model.hf import HFCausalLM

    return model.net if isinstance(model, HFCausalLM) else model


def check_targets(model: nn.Module, spec: LoraSpec) -> tuple[list[str], bool]:
    """The linear layers ``spec`` names in ``model`` (and whether they are GPT-2 Conv1D layers); one clear
    error when a target names none. Changes nothing, so a command can check before it writes anything."""
    layers = linear_layers(model)
    targets = list(spec.targets) if spec.targets is not None else default_targets(model)
    unknown = [t for t in targets if not any(_matches(n, t) for n in layers)]
    if unknown:
        head = _output_head(model)
        on_head = [t for t in unknown if any(_matches(n, t) for n, m in model.named_modules() if m is head)]
        why = "the output head cannot take LoRA; " if on_head else ""
        raise BadConfig(f"LoRA targets {', '.join(unknown)} match no linear layer; {why}"
                        f"linear layers: {_layer_patterns(layers)}")
    chosen = [n for n in layers if any(_matches(n, t) for t in targets)]
    conv1d = {type(layers[n]).__name__ == "Conv1D" for n in chosen}
    if len(conv1d) > 1:
        raise BadConfig("LoRA targets mix Linear and GPT-2 Conv1D layers; target one kind at a time")
    return chosen, conv1d == {True}


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a shared (tied) tensor is counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def merge_lora(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Fold every adapter into its base weight (W += alpha / r · B A) and put the plain layer back.

    Returns ``model`` itself as an ordinary model: the original state_dict keys, every parameter trainable
    again. A 4-bit (QLoRA) base is first dequantized to ``dtype`` (the weights the adapters were trained
    against), so the result holds no 4-bit layers.
    """
    if hasattr(model, "merge_and_unload"):  # a peft.PeftModel from get_peft_model
        model = model.merge_and_unload()
    for name, module in list(model.named_modules()):
        if not _is_lora_layer(module):
            continue
        base = module.get_base_layer()
        if is_four_bit(base):  # W = dequantized NF4 weight + the update, summed in fp32
            merged = _dequantized(base, torch.float32)
            with torch.no_grad():
                for adapter in module.active_adapters:
                    merged.weight += module.get_delta_weight(adapter).float()
            merged = merged.to(dtype)
        else:
            module.merge(safe_merge=True)
            merged = module.get_base_layer()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, merged)
    dequantize(model, dtype)  # 4-bit layers that had no adapter
    if "peft_config" in vars(peft_target(model)):
        del peft_target(model).peft_config
    for p in model.parameters():
        p.requires_grad_(p.is_floating_point())  # packed 4-bit weights are integers: never trainable
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter weights (keys such as ``blocks.0.attn.qkv.lora_A.weight``), detached copies."""
    if not has_lora(model):
        raise BadConfig("the model has no LoRA adapters to save")
    state = _peft().get_peft_model_state_dict(peft_target(model))
    return {k: v.detach().clone() for k, v in state.items()}


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights from ``lora_state_dict`` into a model that ``apply_lora`` gave the same adapters."""
    if not has_lora(model):
        raise BadConfig("the model has no LoRA adapters; apply_lora with the same spec before loading them")
    expected = set(lora_state_dict(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise BadInput(f"LoRA weights do not fit the model's adapters ({len(missing)} missing, {len(unexpected)} "
                       f"unexpected, e.g. {first}); were they trained with other targets?")
    try:
        _peft().set_peft_model_state_dict(peft_target(model), state)
    except RuntimeError as e:
        raise BadInput(f"LoRA weights do not fit the model's adapters ({str(e).splitlines()[-1].strip()[:200]}); "
                       "was the rank r different?") from None


def is_four_bit(module: nn.Module) -> bool:
    """A bitsandbytes 4-bit linear layer (by class name: bitsandbytes is imported only when used)."""
    return type(module).__name__ == "Linear4bit" and hasattr(module, "weight") and \
        getattr(module.weight, "quant_state", None) is not None


def four_bit_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if is_four_bit(m) and not _is_lora_layer(m)]


def one_four_bit_kernel(model: nn.Module) -> int:
    """Keep 4-bit layers on one matmul path. On a CPU with AVX512-BF16, bitsandbytes repacks a layer's weights
    for a faster kernel the first time it runs in eval mode; training computed after that differs in the last
    bits from training before it, so a run that evaluated would not match its own resume. Returns the count."""
    layers = [m for m in model.modules() if is_four_bit(m)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def _dequantized(layer: nn.Module, dtype: torch.dtype) -> nn.Linear:
    """The plain ``nn.Linear`` a 4-bit layer stands for, in ``dtype``."""
    import bitsandbytes.functional as bnbf

    weight = bnbf.dequantize_4bit(layer.weight.data, layer.weight.quant_state).to(dtype)
    plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device=weight.device,
                      dtype=dtype)
    with torch.no_grad():
        plain.weight.copy_(weight)
        if layer.bias is not None:
            plain.bias.copy_(layer.bias.to(dtype))
    return plain


def dequantize(model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace every 4-bit layer outside LoRA wrappers by its plain equal in ``dtype``."""
    for name, module in list(model.named_modules()):
        if not is_four_bit(module) or _is_lora_layer(module):
            continue
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        if not _is_lora_layer(owner):
            setattr(owner, child, _dequantized(module, dtype))
    return model
