"""One face for the models an evaluation scores: fidan runs and Hugging Face causal LMs in local folders.

Every task needs the same four things from a model: encode text, a start token to condition the first
token on, a context length, and per-token negative log-likelihoods. ``LanguageModel`` gives exactly that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from fidan.artifacts.loader import load
from fidan.errors import FidanError
from fidan.model.hf import HF_DEFAULT_MAX_BLOCK, context_length


@dataclass
class LanguageModel:
    kind: str  # "fidan" or "hf"
    path: Path
    net: torch.nn.Module
    encode: Callable[[str], list[int]]
    decode: Callable[[list[int]], str]
    start_id: int | None  # the token every document is conditioned on (end-of-text / BOS)
    stop_ids: set[int]
    block_size: int  # the window scored at once
    device: str
    max_context: int = 0  # the model's own context length

    def __post_init__(self) -> None:
        self.max_context = self.max_context or self.block_size

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) for a batch of token ids (B, T)."""
        if self.kind == "fidan":
            return self.net(x)[0]
        return self.net(input_ids=x).logits

    @torch.no_grad()
    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood in nats of each target (B, T); targets of -100 give 0."""
        logits = self.logits(x.to(self.device))
        y = y.to(self.device)
        keep = y != -100  # context positions are given, not scored: skip their softmax
        out = torch.zeros(y.shape, dtype=torch.float32, device=self.device)
        out[keep] = F.cross_entropy(logits[keep].float(), y[keep], reduction="none")
        return out.cpu()


def load_lm(model: str, tokenizer: str | None = None, device: str = "cpu", block_size: int | None = None,
            dtype: str = "auto") -> LanguageModel:
    """A fidan run or checkpoint, a transformers causal LM (folder or cached hub name) or a LoRA adapter folder,
    through the one loader (no remote code)."""
    loaded = load(model, tokenizer=tokenizer, device=device, dtype=dtype)
    tok, net = loaded.tok, loaded.model
    if loaded.kind == "fidan":
        lm = LanguageModel("fidan", loaded.folder, net, tok.encode, tok.decode, tok.eos_id, {tok.eos_id},
                           net.config.block_size, device)
    else:
        context = context_length(net.net.config) or HF_DEFAULT_MAX_BLOCK
        eos = tok.special_id("eos_token")
        bos = tok.special_id("bos_token")
        lm = LanguageModel("hf", loaded.folder, net.net, tok.encode, tok.decode, bos if bos is not None else eos,
                           {eos} if eos is not None else set(), min(context, HF_DEFAULT_MAX_BLOCK), device,
                           max_context=context)
    if block_size is not None:
        if not 1 <= block_size <= lm.max_context:
            raise FidanError(f"--block-size {block_size} is outside 1..{lm.max_context}, the model's context length")
        lm.block_size = block_size
    return lm


def pad_batch(rows: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (inputs, targets) pairs; padded targets are -100. Causal models never look right,
    so padding cannot change the scores of real positions."""
    width = max(len(x) for x, _ in rows)
    xs = torch.zeros(len(rows), width, dtype=torch.long)
    ys = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        xs[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        ys[i, :len(y)] = torch.tensor(y, dtype=torch.long)
    return xs, ys


def result_path(model: str, task: str, name: str, out: str | None, force: bool) -> Path:
    """Where a task's result JSON goes (default ``MODEL/eval/<task>-<name>.json``); never overwrite without --force."""
    path = Path(out) if out else Path(model) / "eval" / f"{task}-{name}.json"
    if path.exists() and not force:
        raise FidanError(f"result {path} already exists; pass --force to replace it or choose another --out")
    return path


def text_hash(docs: Iterable[Iterable[str]]) -> str:
    """sha256 of the documents a result scored (each one length-prefixed): results with the same hash
    scored the same text, which is what lets `fidan compare` put them side by side."""
    h = hashlib.sha256()
    for doc in docs:
        data = "".join(doc).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return "sha256:" + h.hexdigest()
