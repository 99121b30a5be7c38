"""The one inference engine: every command that generates text (generate, chat, eval samples) runs here.

One prompt or a batch of prompts of different lengths goes in; the engine runs the prompt once through
the model (prefill), filling a KV cache, then one token per row per step (decode), each step reading the
cache instead of recomputing the context. Rows end on their own: at a stop token id, at a stop string,
or at ``max_new_tokens``. Text streams out per row, a character only once all of its bytes are there.

Models: fidan's ``GPT`` (its preallocated ``KVCache``) and Hugging Face causal LMs loaded with
``AutoModelForCausalLM`` (their own ``past_key_values``), behind the same two calls, prefill and decode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from fidan.errors import BadInput
from fidan.inference.sampling import Sampling, choose_tokens
from fidan.inference.streaming import TextStream
from fidan.model.cache import KVCache
from fidan.model.gpt import GPT
from fidan.model.hf import HFCausalLM, forward_with_cache


@dataclass
class Event:
    """One new token of one row. ``piece`` is the text that became safe to show; the row's last event has
    ``done`` set, ``reason`` saying why ("stop_id", "stop_string" or "length") and the row's whole ``text``."""

    row: int
    token: int
    piece: str = ""
    done: bool = False
    reason: str | None = None
    text: str | None = None


@dataclass
class Completion:
    """One row's result: its new tokens (a stop id left out) and their text, cut before a stop string."""

    tokens: list[int]
    text: str | None
    reason: str


class _FidanRunner:
    """Prefill and decode for a fidan ``GPT`` over a preallocated cache of ``block_size`` positions."""

    def __init__(self, model: GPT, batch: int):
        p = next(model.parameters())
        self.model, self.device = model, p.device
        self.cache = KVCache(model.config, batch, device=p.device, dtype=p.dtype)

    def prefill(self, rows: list[list[int]]) -> torch.Tensor:
        idx = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)  # shorter rows right-padded
        for b, row in enumerate(rows):
            idx[b, :len(row)] = torch.tensor(row)
        return self.model(idx.to(self.device), cache=self.cache, last=[len(r) - 1 for r in rows])[0]

    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        idx = torch.tensor(tokens, device=self.device)[:, None]
        return self.model(idx, cache=self.cache, start=positions)[0]


class _HFRunner:
    """Prefill and decode for a `transformers` causal LM: left padding, an attention mask, explicit
    position ids (so a padded row counts its positions from its first real token) and the model's cache."""

    def __init__(self, model: torch.nn.Module, batch: int):
        self.model, self.device = model, next(model.parameters()).device

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, past=None) -> torch.Tensor:
        logits, self.past = forward_with_cache(self.model, ids.to(self.device), self.mask.to(self.device),
                                               positions.to(self.device), past)
        return logits[:, -1].float()

    def prefill(self, rows: list[list[int]]) -> torch.Tensor:
        width = max(map(len, rows))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        self.mask = torch.zeros(len(rows), width, dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, width - len(row):] = torch.tensor(row)
            self.mask[b, width - len(row):] = 1
        return self._run(ids, (self.mask.cumsum(-1) - 1).clamp(min=0))

    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        self.mask = torch.cat([self.mask, torch.ones(len(tokens), 1, dtype=torch.long)], dim=1)
        return self._run(torch.tensor(tokens)[:, None], torch.tensor(positions)[:, None], self.past)


def model_window(model: torch.nn.Module) -> int:
    """How many tokens of context the model takes at once."""
    if isinstance(model, GPT):
        return model.config.block_size
    cfg = getattr(model, "config", None)
    window = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if not window:
        raise BadInput(f"cannot tell the context length of {type(model).__name__}; pass window= to Engine")
    return int(window)


def advance_row(b: int, token: int, context: list[int], stream: TextStream | None, stop_ids: set[int],
                last_step: bool, active: list[bool]) -> Event:
    """Add one token to row b; say whether the row ends here and why (``active[b]`` is cleared if so).
    The engine and the continuous batcher (``fidan.inference.batcher``) both end rows through here."""
    if token in stop_ids:  # the stop token is reported but is not part of the row's text
        active[b] = False
        return Event(b, token, stream.finish() if stream else "", True, "stop_id", stream and stream.text)
    context.append(token)
    piece = stream.push(token) if stream else ""
    reason = "stop_string" if stream and stream.stopped else "length" if last_step else None
    if reason is None:
        return Event(b, token, piece)
    active[b] = False
    return Event(b, token, piece + (stream.finish() if stream else ""), True, reason, stream and stream.text)


class Engine:
    """Generates from a fidan ``GPT`` or a Hugging Face causal LM.

    Args:
        model: the network (put in eval mode while generating, then restored).
        decode: token ids → text; needed for streamed text and stop strings.
        window: the longest context fed to the model (default: its own block size / context length).
    """

    def __init__(self, model: torch.nn.Module, decode: Callable[[list[int]], str] | None = None,
                 window: int | None = None):
        if isinstance(model, HFCausalLM):  # a wrapped transformers model decodes with its own cache
            model = model.net
        self.model, self.decode = model, decode
        self.window = window or model_window(model)
        if not 0 < self.window <= model_window(model):
            raise BadInput(f"window {self.window} is outside 1..{model_window(model)}, the model's context length")

    def stream(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, sampling: Sampling | None = None,
               generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
               stop_ids: Sequence[int] | set[int] = (), stop_strings: Sequence[str] = ()) -> Iterator[Event]:
        """Yield an ``Event`` for every new token of every row, step by step.

        ``generator`` is one ``torch.Generator`` for the whole batch, or one per row (then each row draws
        what it would draw alone). A row that has ended is carried along idle until every row has ended.
        """
        sampling = (sampling or Sampling()).check()
        if not prompts or any(len(p) == 0 for p in prompts):
            raise BadInput("every prompt needs at least one token; start an empty prompt with the end-of-text id")
        if isinstance(generator, Sequence) and len(generator) != len(prompts):
            raise BadInput(f"{len(generator)} generators for {len(prompts)} prompts; pass one per prompt or one in all")
        if stop_strings and self.decode is None:
            raise BadInput("stop strings need a decode function: Engine(model, decode=tokenizer.decode)")
        if max_new_tokens <= 0:
            return
        stop_ids = set(stop_ids)
        contexts = [list(p) for p in prompts]
        streams = [TextStream(self.decode, stop_strings) if self.decode else None for _ in prompts]
        active = [True] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            # inference_mode, not just no_grad: no autograd bookkeeping at all (a tenth of a small model's
            # decoding step on a CPU). Entered around model calls only, never across a yield, so the caller's
            # code between tokens runs in its own mode; nothing made inside (cache, logits) reaches autograd.
            with torch.inference_mode():
                runner = (_FidanRunner if isinstance(self.model, GPT) else _HFRunner)(self.model, len(prompts))
                logits = runner.prefill([c[-self.window:] for c in contexts])
            for step in range(max_new_tokens):
                with torch.inference_mode():
                    picks = choose_tokens(logits, sampling, contexts, generator)
                last_step = step == max_new_tokens - 1
                for b, token in enumerate(picks):
                    if active[b]:
                        yield advance_row(b, token, contexts[b], streams[b], stop_ids, last_step, active)
                if last_step or not any(active):
                    return
                with torch.inference_mode():
                    if max(map(len, contexts)) > self.window:
                        # Past the block, the window slides: every position shifts by one, so cached keys
                        # (which carry their positions) no longer fit. Running the last `window` tokens
                        # again each step is exactly what the cache-less path computes.
                        logits = runner.prefill([c[-self.window:] for c in contexts])
                    else:  # an ended row repeats its last token at its last position: harmless, ignored
                        logits = runner.decode([c[-1] for c in contexts], [len(c) - 1 for c in contexts])
        finally:
            self.model.train(was_training)

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, sampling: Sampling | None = None,
                 generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
                 stop_ids: Sequence[int] | set[int] = (), stop_strings: Sequence[str] = (),
                 on_event: Callable[[Event], None] | None = None) -> list[Completion]:
        """Run ``stream`` to the end; one ``Completion`` per prompt, in order."""
        done: list[Completion] = [Completion([], None, "length") for _ in prompts]
        for event in self.stream(prompts, max_new_tokens, sampling, generator, stop_ids, stop_strings):
            if on_event:
                on_event(event)
            row = done[event.row]
            if event.reason != "stop_id":
                row.tokens.append(event.token)
            if event.done:
                row.text, row.reason = event.text, event.reason or "length"
        return done
