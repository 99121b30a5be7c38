"""Sampling settings, checked in one place, and the choice of each next token.

Every generating command (generate, chat, eval samples) builds a ``Sampling`` through ``check_sampling``,
so a bad value gets the same one-line error wherever it comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fidan.errors import BadInput


@dataclass(frozen=True)
class Sampling:
    """How the next token is picked: greedy at temperature 0, else top-k / nucleus sampling."""

    temperature: float = 1.0
    top_k: int | None = None  # None or 0: no top-k filter
    top_p: float | None = None  # None or 1: no nucleus filter
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the context less likely; 1 is off

    def check(self) -> Sampling:
        if self.temperature < 0:
            raise BadInput(f"--temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise BadInput(f"--top-k must be >= 0 (0 disables it), got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise BadInput(f"--top-p must be in (0, 1] (1 disables it), got {self.top_p}")
        if self.repetition_penalty <= 0:
            raise BadInput(f"--repetition-penalty must be > 0 (1 disables it), got {self.repetition_penalty}")
        return self


def check_sampling(max_new_tokens: int, temperature: float, top_p: float | None = None, top_k: int | None = None,
                   repetition_penalty: float = 1.0) -> Sampling:
    """Validate user-facing sampling settings with one clear error each; return them as a ``Sampling``."""
    if max_new_tokens <= 0:
        raise BadInput(f"--max-new-tokens must be positive, got {max_new_tokens}")
    return Sampling(temperature, top_k, top_p, repetition_penalty).check()


def penalize_repeats(logits: torch.Tensor, seen: Sequence[Sequence[int]], penalty: float) -> torch.Tensor:
    """Make every token already in row b's context (``seen[b]``) less likely, as CTRL and `transformers` do:
    a positive logit is divided by ``penalty``, a negative one multiplied by it."""
    logits = logits.clone()
    for b, ids in enumerate(seen):
        idx = torch.tensor(sorted(set(ids)), dtype=torch.long, device=logits.device)
        scores = logits[b, idx]
        logits[b, idx] = torch.where(scores > 0, scores / penalty, scores * penalty)
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from logits (B, V): greedy at temperature 0, else top-k / nucleus sampling."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1, None]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # Drop tokens once the mass before them already exceeds top_p (the top token always stays).
        drop = (cum - sorted_logits.softmax(-1)) > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def choose_tokens(logits: torch.Tensor, sampling: Sampling, seen: Sequence[Sequence[int]],
                  generator: torch.Generator | Sequence[torch.Generator | None] | None = None) -> list[int]:
    """The next token of every row. ``generator`` is one for the batch, or one per row: then each row draws
    exactly what it would draw alone with that generator (``fidan generate --num-samples`` uses seed + i)."""
    if sampling.repetition_penalty != 1.0:
        logits = penalize_repeats(logits, seen, sampling.repetition_penalty)
    args = (sampling.temperature, sampling.top_k, sampling.top_p)
    if isinstance(generator, Sequence):
        return [int(sample_next(logits[b:b + 1], *args, generator=g)) for b, g in enumerate(generator)]
    return sample_next(logits, *args, generator=generator)[:, 0].tolist()
