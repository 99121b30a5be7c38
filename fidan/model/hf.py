"""Any local Hugging Face causal LM, behind the face of fidan's GPT, so the one training loop, the scoring
routine and the inference engine take it as they take a fidan model.

``HFCausalLM`` forwards ``(idx, targets, reduction, doc_ids, return_logits)`` as ``GPT`` does: the
training loss runs through fidan's chunked cross-entropy over the model's hidden states and output head
(a 150k-token vocabulary never holds full fp32 logits), and packed rows (``doc_ids``) become a
block-diagonal causal mask with positions restarting in each example. ``.config`` gives the few fields
fidan reads (``block_size``, ``vocab_size``, ``dropout``); the network itself stays an ordinary
transformers model (``.net``), saved with ``save_pretrained``.
"""

from __future__ import annotations

import gc
import json
import logging
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from fidan.errors import FidanError, MissingExtra
from fidan.model.gpt import positions_in_documents
from fidan.model.loss import chunked_cross_entropy, chunked_token_nll
from fidan.model.memory import logical_parameters

# Scoring a long context on a CPU is slow: training windows of HF models are capped unless asked otherwise.
HF_DEFAULT_MAX_BLOCK = 1024


def is_hf_folder(path: str | Path) -> bool:
    """A folder whose config.json is a transformers config (fidan runs write model_type fidan-gpt)."""
    cfg = Path(path) / "config.json"
    if not cfg.exists():
        return False
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FidanError(f"{cfg} is not valid JSON; is {path} a model folder?") from None
    return model_type is not None and model_type != "fidan-gpt"


class _Config:
    """The fields of a fidan GPTConfig that stages read, backed by the transformers config."""

    def __init__(self, hf_config, block_size: int):
        self.hf, self.block_size = hf_config, block_size

    @property
    def vocab_size(self) -> int:
        return self.hf.vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:
        self.hf.vocab_size = value
        text = getattr(self.hf, "get_text_config", None)
        if text is not None:
            text().vocab_size = value

    @property
    def dropout(self) -> float:
        for name in ("attention_dropout", "attn_pdrop", "resid_pdrop", "hidden_dropout"):
            if isinstance(getattr(self.hf, name, None), (int, float)):
                return float(getattr(self.hf, name))
        return 0.0

    @property
    def tie_embeddings(self) -> bool:
        return bool(getattr(self.hf, "tie_word_embeddings", False))

    def to_dict(self) -> dict:
        return {"hf_model_type": self.hf.model_type, "architectures": getattr(self.hf, "architectures", None),
                "vocab_size": self.vocab_size, "block_size": self.block_size}


def context_length(hf_config) -> int | None:
    return getattr(hf_config, "n_positions", None) or getattr(hf_config, "max_position_embeddings", None)


class HFCausalLM(nn.Module):
    """A transformers causal LM with fidan's forward signature (training and scoring; generation goes
    through fidan.inference, which drives ``.net`` with its own KV cache)."""

    def __init__(self, net: nn.Module, block_size: int | None = None):
        super().__init__()
        quiet_transformers()
        self.net = net
        limit = context_length(net.config) or HF_DEFAULT_MAX_BLOCK
        self.config = _Config(net.config, min(block_size or HF_DEFAULT_MAX_BLOCK, limit))
        head = net.get_output_embeddings()
        # The chunked loss needs logits = hidden @ head.T and nothing else (no bias, no soft-capping).
        self._chunked = (isinstance(head, nn.Linear) and head.bias is None
                         and not getattr(net.config, "final_logit_softcapping", None)
                         and getattr(net.config, "logit_scale", None) is None)

    def empty_copy(self) -> HFCausalLM:
        """The same architecture with fresh weights, on the CPU (what FSDP's gathered weights are loaded into)."""
        return HFCausalLM(type(self.net)(self.net.config), self.config.block_size)

    def set_grad_checkpointing(self, on: bool = True) -> None:
        """transformers' own: each decoder layer's activations recomputed in backward (non-reentrant, so
        frozen inputs, as under LoRA, need no gradient)."""
        enable = getattr(self.net, "activation_checkpointing_enable", None)  # the name since transformers 5.25
        if on and enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        elif on:
            self.net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            (getattr(self.net, "activation_checkpointing_disable", None) or self.net.gradient_checkpointing_disable)()

    def num_params(self, non_embedding: bool = False) -> int:
        n = logical_parameters(self)
        if non_embedding:
            n -= self.net.get_input_embeddings().weight.numel()
        return n

    def flops_per_token(self) -> float:
        """6 per weight used in a matmul (all but the input embedding) + 12·L·d·T for attention."""
        c = self.net.config
        layers = getattr(c, "num_hidden_layers", None) or getattr(c, "n_layer", 0)
        width = getattr(c, "hidden_size", None) or getattr(c, "n_embd", 0)
        matmul = self.num_params() - self.net.get_input_embeddings().weight.numel()
        if self.config.tie_embeddings:
            matmul += self.net.get_input_embeddings().weight.numel()
        return 6 * matmul + 12 * layers * width * self.config.block_size

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean",
                doc_ids: torch.Tensor | None = None, return_logits: bool = True, cache=None):
        if cache is not None:
            raise FidanError("HFCausalLM does not take a fidan KV cache; generate through fidan.inference.Engine")
        B, T = idx.shape
        if T > self.config.block_size:
            raise FidanError(f"sequence of {T} tokens is longer than the block size {self.config.block_size}")
        kwargs: dict = {"input_ids": idx}
        if doc_ids is not None:  # packed examples: attention stays inside each, positions restart at 0
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            kwargs["attention_mask"] = (causal & (doc_ids[:, :, None] == doc_ids[:, None, :]))[:, None]
            kwargs["position_ids"] = positions_in_documents(doc_ids)
        if targets is not None and not return_logits and reduction in ("mean", "none") and self._chunked:
            hidden = self.net.base_model(**kwargs, use_cache=False).last_hidden_state
            head = self.net.get_output_embeddings().weight
            loss = (chunked_cross_entropy if reduction == "mean" else chunked_token_nll)(
                hidden.reshape(B * T, -1), head, targets.reshape(-1))
            return None, loss
        logits = self.net(**kwargs, use_cache=False).logits
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                               ignore_index=-100, reduction=reduction)
        return logits, loss


def forward_with_cache(net: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       position_ids: torch.Tensor, cache=None) -> tuple[torch.Tensor, object]:
    """(logits, the model's KV cache after this call), through the ``cache`` argument and output of
    transformers 5.25 (the floor in pyproject.toml: earlier versions call it ``past_key_values``)."""
    out = net(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
              cache=cache)
    return out.logits, out.cache


def quiet_transformers() -> None:
    """No per-shard progress bars and advice lines from transformers inside fidan's own output."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def checkpoint_dtype(hf_config) -> torch.dtype:
    """The dtype a transformers checkpoint says it holds (``dtype``/``torch_dtype`` in config.json; fp32 if none)."""
    value = getattr(hf_config, "dtype", None) or getattr(hf_config, "torch_dtype", None)
    if isinstance(value, str):
        value = getattr(torch, value, None)
    return value if isinstance(value, torch.dtype) else torch.float32


def four_bit_config():
    """QLoRA's base: NF4 weights with double quantization (the scales quantized too), computed in bf16."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_hf_causal_lm(path: str | Path, device: str = "cpu", block_size: int | None = None,
                      dtype: str | torch.dtype = "auto", four_bit: bool = False,
                      trust_remote_code: bool = False) -> HFCausalLM:
    """A local transformers causal-LM folder (never fetched), wrapped for fidan.

    ``dtype``: ``auto`` (the checkpoint's own, as transformers does), ``fp32``, ``bf16``, ``fp16`` or a torch
    dtype. ``four_bit``: the linear layers of the blocks as bitsandbytes NF4 ``Linear4bit`` (the embeddings,
    norms and output head stay in ``dtype``), on ``device``, CPU included. Sharded safetensors (with their
    index), grouped-query attention and tied or untied heads load as transformers loads them.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_transformers()
    path = Path(path)
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise FidanError(f"{path} is not a transformers model folder ({str(e).splitlines()[0][:160]})") from None
    archs = getattr(config, "architectures", None) or []
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise FidanError(f"{path} holds a {', '.join(archs)}, not a causal language model; "
                         "pass a folder with a *ForCausalLM model")
    torch_dtype = checkpoint_dtype(config) if dtype == "auto" else DTYPES.get(dtype, dtype)
    kwargs: dict = {"dtype": torch_dtype}
    if four_bit:
        _bitsandbytes()
        kwargs.update(quantization_config=four_bit_config(),
                      device_map={"": torch.device(device).index or 0} if device.startswith("cuda") else "cpu")
    try:
        net = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True,
                                                   trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise FidanError(f"cannot load a causal LM from {path} ({str(e).splitlines()[0][:200]}); "
                         "pass a folder with config.json and weights") from None
    if four_bit:
        _own_storage(net)
    return HFCausalLM(net if four_bit else net.to(device), block_size)


def _own_storage(net: nn.Module) -> None:
    """Give the weights that stay unquantized storage of their own. transformers leaves a weight whose dtype
    matches the file's memory-mapped from the safetensors file, and one such weight keeps the whole mapped file
    resident: after quantization, the pages of the block weights already read (hundreds of MB) stay counted."""
    with torch.no_grad():
        for p in net.parameters():
            if p.is_floating_point():
                p.data = p.data.clone()
    gc.collect()


def quiet_bitsandbytes() -> None:
    """bitsandbytes, on a CPU with AVX512-BF16, first tries to fetch a 4-bit matmul kernel from the hub and logs
    a warning when it cannot (offline, untrusted): it then uses the 4-bit kernel it ships, which is fine."""
    for name in ("bitsandbytes.backends.cpu.ops", "kernels._internals.hf_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _bitsandbytes():
    quiet_bitsandbytes()
    try:
        import bitsandbytes
    except ImportError:
        raise MissingExtra("a 4-bit base (--qlora) needs bitsandbytes: pip install 'fidan[lora]'") from None
    return bitsandbytes
