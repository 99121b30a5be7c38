"""The one decoding runner: what the engine and the server's batcher both decode with.

A ``Runner`` holds rows of a KV cache (``fidan.inference.backends``); each ``Job`` in it is one sequence
with its own sampling settings, random generator, stops and token limit. Jobs join at any time between
steps, and every step gives each job in the runner one token:

    join(jobs)   prefill their prompts (rows next to each other in one call); pick each one's first token
    step()       one token for every job; past the window, a row is prefilled again (below)
    leave(job)   free its row (a job that ends at a stop or its limit leaves by itself)

Both return ``(job, Event)`` pairs, in row order. ``Engine.stream`` puts a fixed batch in a runner and
steps it to the end; the ``Batcher`` lets jobs join and leave between steps. So a request decodes the same
way through `fidan generate` and through `fidan serve`.

Past the window (the model's block size, or a smaller ``window``) the window slides by one token per step.
Every position then shifts, so the cached keys (which carry their positions) no longer fit: the row runs
its last ``window`` tokens again for each new token, which is exactly what the model computes without a
cache.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from fidan.inference.backends import backend_for, check_window
from fidan.inference.sampling import Sampling, choose_tokens
from fidan.inference.streaming import TextStream
from fidan.model.hf import HFCausalLM


@dataclass
class Event:
    """One new token of one row. ``piece`` is the text that became safe to show; the row's last event has
    ``done`` set, ``reason`` saying why ("stop_id", "stop_string", "length", or "error" with the error in
    ``text``) and the row's whole ``text``."""

    row: int
    token: int
    piece: str = ""
    done: bool = False
    reason: str | None = None
    text: str | None = None


@dataclass(eq=False)
class Job:
    """One sequence to decode: its prompt ids, limits, sampling and, for the batcher, where its events go."""

    prompt: list[int]
    max_new_tokens: int
    on_event: Callable[[Event], None] | None = None
    sampling: Sampling = field(default_factory=Sampling)
    generator: torch.Generator | None = None
    stop_ids: set[int] = field(default_factory=set)
    stop_strings: Sequence[str] = ()
    cancelled: bool = False  # set by the caller (a client that went away); the row is freed at the next step
    # filled in while it runs
    row: int = -1
    context: list[int] = field(default_factory=list)
    stream: TextStream | None = None
    produced: int = 0
    error: Exception | None = None  # what ended it, with an "error" event

    def cancel(self) -> None:
        self.cancelled = True


class Runner:
    """Decodes jobs over ``rows`` rows of one model.

    Args:
        model: a fidan ``GPT``, an ``HFCausalLM`` or a transformers causal LM, in eval mode.
        decode: token ids → text, for streamed text and stop strings (None: no text).
        rows: how many jobs it holds at once.
        window: the longest context fed to the model (default: its own block size / context length).
    """

    def __init__(self, model: torch.nn.Module, decode: Callable[[list[int]], str] | None = None, rows: int = 1,
                 window: int | None = None):
        if isinstance(model, HFCausalLM):  # a wrapped transformers model decodes with its own cache
            model = model.net
        self.model, self.decode = model, decode
        self.window = check_window(model, window)
        # inference_mode, not just no_grad, around every model call: no autograd bookkeeping at all (a tenth
        # of a small model's decoding step on a CPU); nothing made inside (cache, logits) reaches autograd.
        with torch.inference_mode():
            self.backend = backend_for(model, rows)
        self.jobs: dict[int, Job] = {}  # row → the job in it

    def join(self, jobs: list[Job]) -> list[tuple[Job, Event]]:
        """Start jobs whose ``row`` is set (and free): prefill, then each one's first token. A job whose own
        settings fail (a bad generator) ends alone with an "error" event; a failed prefill raises."""
        for job in jobs:
            job.context = list(job.prompt)
            job.stream = TextStream(self.decode, job.stop_strings) if self.decode else None
        with torch.inference_mode():
            logits = self.backend.prefill([j.row for j in jobs], [j.context[-self.window:] for j in jobs])
        out = []
        for i, job in enumerate(jobs):
            self.jobs[job.row] = job
            try:
                with torch.inference_mode():
                    token = choose_tokens(logits[i:i + 1], job.sampling, [job.context], [job.generator])[0]
            except Exception as e:  # this job's own settings: it ends, its neighbours go on
                out.append((job, self.fail(job, e)))
                continue
            out.append((job, self._advance(job, token)))
        return out

    def step(self) -> list[tuple[Job, Event]]:
        """One new token for every job in the runner."""
        jobs = sorted(self.jobs.values(), key=lambda j: j.row)
        sliding = [j for j in jobs if len(j.context) > self.window]
        stepping = [j for j in jobs if len(j.context) <= self.window]
        with torch.inference_mode():
            for job in sliding:  # its cached keys no longer fit; it is prefilled again after the step
                self.backend.release(job.row)
            parts = []
            if stepping:
                parts.append(self.backend.step([j.row for j in stepping], [j.context[-1] for j in stepping],
                                               [len(j.context) - 1 for j in stepping]))
            if sliding:
                parts.append(self.backend.prefill([j.row for j in sliding],
                                                  [j.context[-self.window:] for j in sliding]))
            order = stepping + sliding
            picks = self._choose(parts[0] if len(parts) == 1 else torch.cat(parts), order)
        return sorted(((job, self._advance(job, token)) for job, token in zip(order, picks, strict=True)),
                      key=lambda pair: pair[0].row)

    def leave(self, job: Job) -> bool:
        """Free the job's row; False when it had left already (or never joined)."""
        if self.jobs.get(job.row) is not job:
            return False
        del self.jobs[job.row]
        with torch.inference_mode():
            self.backend.release(job.row)
        return True

    def fail(self, job: Job, error: Exception) -> Event:
        """End the job with an "error" event."""
        self.leave(job)
        job.error = error
        return Event(job.row, -1, "", True, "error", f"{type(error).__name__}: {error}")

    @staticmethod
    def _choose(logits: torch.Tensor, jobs: list[Job]) -> list[int]:
        """The next token of every job: jobs with the same settings draw together (one call), each with its
        own generator, so a job draws what it would draw alone."""
        if all(j.sampling == jobs[0].sampling for j in jobs):  # the common case: one group, no regrouping
            groups = [list(range(len(jobs)))]
        else:
            ordered = sorted(range(len(jobs)), key=lambda i: repr(jobs[i].sampling))
            groups = [list(g) for _, g in itertools.groupby(ordered, key=lambda i: jobs[i].sampling)]
        picks = [0] * len(jobs)
        for idx in groups:
            gens = [jobs[i].generator for i in idx]
            chosen = choose_tokens(logits if len(idx) == len(jobs) else logits[idx], jobs[idx[0]].sampling,
                                   [jobs[i].context for i in idx], None if all(g is None for g in gens) else gens)
            for i, token in zip(idx, chosen, strict=True):
                picks[i] = token
        return picks

    def _advance(self, job: Job, token: int) -> Event:
        """Add one token to the job; say whether it ends here and why (then it leaves its row)."""
        job.produced += 1
        stream = job.stream
        if token in job.stop_ids:  # the stop token is reported but is not part of the text
            self.leave(job)
            return Event(job.row, token, stream.finish() if stream else "", True, "stop_id", stream and stream.text)
        job.context.append(token)
        piece = stream.push(token) if stream else ""
        reason = "stop_string" if stream and stream.stopped else "length" if job.produced >= job.max_new_tokens else None
        if reason is None:
            return Event(job.row, token, piece)
        self.leave(job)
        return Event(job.row, token, piece + (stream.finish() if stream else ""), True, reason, stream and stream.text)
