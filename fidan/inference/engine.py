"""The one inference engine: every command that generates text (generate, chat, eval samples) runs here.

One prompt or a batch of prompts of different lengths goes in; the engine runs the prompt once through
the model (prefill), filling a KV cache, then one token per row per step (decode), each step reading the
cache instead of recomputing the context. Rows end on their own: at a stop token id, at a stop string,
or at ``max_new_tokens``. Text streams out per row, a character only once all of its bytes are there.
Past the window, the window slides. The decoding itself is the ``Runner``'s (``fidan.inference.runner``),
which the server's continuous batcher shares: the engine puts a fixed batch in one and steps it to the end.

Models: fidan's ``GPT`` (its preallocated ``KVCache``) and Hugging Face causal LMs loaded with
``AutoModelForCausalLM`` (their own cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from fidan.errors import BadInput
from fidan.inference.backends import check_window
from fidan.inference.runner import Event, Job, Runner
from fidan.inference.sampling import Sampling
from fidan.model.hf import HFCausalLM

__all__ = ["Completion", "Engine", "Event"]


@dataclass
class Completion:
    """One row's result: its new tokens (a stop id left out) and their text, cut before a stop string."""

    tokens: list[int]
    text: str | None
    reason: str


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
        self.window = check_window(model, window)

    def stream(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, sampling: Sampling | None = None,
               generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
               stop_ids: Sequence[int] | set[int] = (), stop_strings: Sequence[str] = ()) -> Iterator[Event]:
        """Yield an ``Event`` for every new token of every row, step by step.

        ``generator`` is one ``torch.Generator`` for the whole batch, or one per row (then each row draws
        what it would draw alone). A row that has ended yields nothing more; the others go on.
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
        generators = generator if isinstance(generator, Sequence) else [generator] * len(prompts)
        jobs = [Job(list(p), max_new_tokens, None, sampling, g, set(stop_ids), stop_strings, row=i)
                for i, (p, g) in enumerate(zip(prompts, generators, strict=True))]
        was_training = self.model.training
        self.model.eval()
        try:  # the runner enters inference_mode around model calls only, never across a yield: the caller's
            # code between tokens runs in its own autograd mode
            runner = Runner(self.model, self.decode, len(prompts), self.window)
            events = runner.join(jobs)
            while True:
                for job, event in events:
                    if job.error is not None:
                        raise job.error
                    yield event
                if not runner.jobs:
                    return
                events = runner.step()
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
