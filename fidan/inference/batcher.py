"""Continuous batching: requests that arrive while others decode join the batch at the next step.

``Engine.stream`` decodes a batch that is fixed when it starts. A server cannot wait for a batch to end
before it takes the next request, nor serve one request at a time behind a long answer. The ``Batcher``
keeps a pool of rows (``max_batch``) and one thread that owns the model:

    loop: take waiting jobs into free rows (prefill each, pick its first token)
          one decode step for every row in use, one token each
          end rows at a stop id, a stop string or their token limit; free them

Every job has its own sampling settings, random generator, stops and limit, and gets its ``Event``s (the
same ones ``Engine.stream`` yields) through a callback, called on the batcher's thread. A job's tokens do
not depend on which other jobs share its steps: each row attends only to its own cache slots and, given
its own generator, draws what it would draw alone.

A job's prompt plus its new tokens must fit the model's window; the caller caps ``max_new_tokens``
(``fit_window``). There is no sliding window here, unlike ``Engine.stream``.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from fidan.errors import BadInput, FidanError
from fidan.inference.engine import Event, advance_row, model_window
from fidan.inference.sampling import Sampling, choose_tokens
from fidan.inference.streaming import TextStream
from fidan.model.cache import KVCache
from fidan.model.gpt import GPT
from fidan.model.hf import HFCausalLM, forward_with_cache


class QueueFull(FidanError):
    """Every row is busy and the waiting line is at its limit: try again later (HTTP 503)."""


@dataclass(eq=False)
class Job:
    """One request: its prompt ids, limits, sampling and where its events go."""

    prompt: list[int]
    max_new_tokens: int
    on_event: Callable[[Event], None]
    sampling: Sampling = field(default_factory=Sampling)
    generator: torch.Generator | None = None
    stop_ids: set[int] = field(default_factory=set)
    stop_strings: Sequence[str] = ()
    cancelled: bool = False  # set by the caller (a client that went away); the row is freed at the next step
    # filled in by the batcher
    row: int = -1
    context: list[int] = field(default_factory=list)
    stream: TextStream | None = None
    produced: int = 0
    finished: bool = False  # its row is freed (once: a row freed twice would serve two jobs)

    def cancel(self) -> None:
        self.cancelled = True


class _FidanRows:
    """A fidan ``GPT`` over one preallocated cache of ``max_batch`` rows; a row is a cache row."""

    def __init__(self, model: GPT, max_batch: int):
        p = next(model.parameters())
        self.model, self.device = model, p.device
        self.cache = KVCache(model.config, max_batch, device=p.device, dtype=p.dtype)
        self.views: dict[tuple[int, int], KVCache] = {}

    def _view(self, lo: int, hi: int) -> KVCache:
        if (lo, hi) not in self.views:
            self.views[lo, hi] = self.cache.rows(lo, hi)
        return self.views[lo, hi]

    def prefill(self, first_row: int, prompts: list[list[int]]) -> torch.Tensor:
        """Prompts into rows ``first_row`` onward, in one call; logits (len(prompts), vocab). Shorter prompts
        are right-padded: the padding's keys land in slots past the row's end, which its decoding steps
        overwrite before any query can see them."""
        idx = torch.zeros(len(prompts), max(map(len, prompts)), dtype=torch.long)
        for b, ids in enumerate(prompts):
            idx[b, :len(ids)] = torch.tensor(ids)
        view = self._view(first_row, first_row + len(prompts))
        return self.model(idx.to(self.device), cache=view, last=[len(p) - 1 for p in prompts])[0]

    def decode(self, rows: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Logits (len(rows), vocab): every row up to the highest in use runs; idle ones are ignored."""
        hi = max(rows) + 1
        tok, pos = [0] * hi, [0] * hi
        for r, t, p in zip(rows, tokens, positions, strict=True):
            tok[r], pos[r] = t, p
        idx = torch.tensor(tok, device=self.device)[:, None]
        logits = self.model(idx, cache=self._view(0, hi), start=pos)[0]
        return logits[torch.tensor(rows, device=logits.device)]

    def release(self, row: int) -> None:
        pass  # the next prefill of this row overwrites its slots from position 0


class _HFRows:
    """A transformers causal LM: rows are left-padded to one width, with an attention mask and explicit
    positions (as ``Engine`` drives it). A new row is prefilled alone, then its cache is padded and joined
    to the others'; an ended row is dropped from the batch."""

    def __init__(self, model: torch.nn.Module, max_batch: int):
        self.model, self.device = model, next(model.parameters()).device
        self.order: list[int] = []  # batch index → row number
        self.cache = None
        self.mask = torch.zeros(0, 0, dtype=torch.long)

    def _run(self, ids, mask, positions, past):
        from transformers import DynamicCache

        past = past if past is not None else DynamicCache()
        logits, cache = forward_with_cache(self.model, ids.to(self.device), mask.to(self.device),
                                           positions.to(self.device), past)
        return logits[:, -1].float(), cache

    def prefill(self, first_row: int, prompts: list[list[int]]) -> torch.Tensor:
        return torch.stack([self._prefill_one(first_row + i, ids) for i, ids in enumerate(prompts)])

    def _prefill_one(self, row: int, ids: list[int]) -> torch.Tensor:
        n = len(ids)
        mask = torch.ones(1, n, dtype=torch.long)
        logits, cache = self._run(torch.tensor([ids]), mask, torch.arange(n)[None], None)
        if self.cache is None:
            self.cache, self.mask = cache, mask
        else:  # pad the narrower side on the left, then stack the new row under the others
            width = max(self.mask.size(1), n)
            self._pad(self.cache, self.mask, width - self.mask.size(1))
            self._pad(cache, mask, width - n)
            self.mask = torch.cat([_left_pad(self.mask, width), _left_pad(mask, width)])
            for mine, new in zip(_layers(self.cache), _layers(cache), strict=True):
                mine.keys, mine.values = torch.cat([mine.keys, new.keys]), torch.cat([mine.values, new.values])
        self.order.append(row)
        return logits[0]

    @staticmethod
    def _pad(cache, mask, extra: int) -> None:
        if extra:
            for layer in _layers(cache):
                layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, extra, 0))
                layer.values = torch.nn.functional.pad(layer.values, (0, 0, extra, 0))

    def decode(self, rows: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        by_row = dict(zip(rows, zip(tokens, positions, strict=True), strict=True))
        tok = torch.tensor([by_row[r][0] for r in self.order])[:, None]
        pos = torch.tensor([by_row[r][1] for r in self.order])[:, None]
        self.mask = torch.cat([self.mask, torch.ones(len(self.order), 1, dtype=torch.long)], dim=1)
        logits, self.cache = self._run(tok, self.mask, pos, self.cache)
        index = {r: i for i, r in enumerate(self.order)}
        return logits[torch.tensor([index[r] for r in rows])]

    def release(self, row: int) -> None:
        keep = [i for i, r in enumerate(self.order) if r != row]
        self.order = [self.order[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, torch.zeros(0, 0, dtype=torch.long)
            return
        self.cache.batch_select_indices(torch.tensor(keep, device=self.device))
        self.mask = self.mask[keep]
        cut = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # columns that are padding in every row
        if cut:
            self.mask = self.mask[:, cut:]
            for layer in _layers(self.cache):
                layer.keys, layer.values = layer.keys[:, :, cut:], layer.values[:, :, cut:]


def _runs(jobs: list[Job]) -> list[list[Job]]:
    """Jobs grouped into runs of consecutive rows (each run is prefilled in one call)."""
    runs: list[list[Job]] = []
    for job in sorted(jobs, key=lambda j: j.row):
        if runs and runs[-1][-1].row == job.row - 1:
            runs[-1].append(job)
        else:
            runs.append([job])
    return runs


def _layers(cache) -> list:
    return list(cache.layers)


def _left_pad(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (width - mask.size(1), 0))


class Batcher:
    """Decodes many jobs at once on one thread; jobs join and leave between steps.

    Args:
        model: a fidan ``GPT``, an ``HFCausalLM`` or a transformers causal LM (in eval mode).
        decode: token ids → text, for streamed text and stop strings.
        max_batch: rows decoded together at most; later jobs wait for a free row.
        max_waiting: jobs allowed to wait for a row; ``submit`` raises ``QueueFull`` beyond it.
    """

    def __init__(self, model: torch.nn.Module, decode: Callable[[list[int]], str], max_batch: int = 16,
                 max_waiting: int = 64):
        if isinstance(model, HFCausalLM):
            model = model.net
        if max_batch < 1 or max_waiting < 0:
            raise BadInput(f"max_batch must be >= 1 and max_waiting >= 0, got {max_batch} and {max_waiting}")
        self.model, self.decode = model.eval(), decode
        self.window = model_window(model)
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.rows = (_FidanRows if isinstance(model, GPT) else _HFRows)(model, max_batch)
        self.waiting: deque[Job] = deque()
        self.active: dict[int, Job] = {}
        self.free = list(range(max_batch))
        self.lock = threading.Condition()
        self.closed = False
        self.steps = 0  # decoding steps run (a step serves every active row)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="fidan-batcher", daemon=True)
        self.thread.start()

    def fit_window(self, prompt_len: int, max_new_tokens: int) -> int:
        """``max_new_tokens`` capped so that the prompt and the answer fit the model's window."""
        if prompt_len >= self.window:
            raise BadInput(f"the prompt is {prompt_len} tokens; this model reads at most {self.window}, "
                           f"and needs room for at least one new token: shorten the prompt")
        return min(max_new_tokens, self.window - prompt_len)

    def submit(self, job: Job) -> Job:
        """Queue a job; its events arrive through ``job.on_event`` (the last one has ``done`` set)."""
        if not job.prompt:
            raise BadInput("every prompt needs at least one token")
        if job.max_new_tokens < 1 or len(job.prompt) + job.max_new_tokens > self.window:
            raise BadInput(f"{len(job.prompt)} prompt tokens + {job.max_new_tokens} new ones do not fit the "
                           f"window of {self.window}; cap max_new_tokens with fit_window")
        job.sampling.check()
        with self.lock:
            if self.closed:
                raise QueueFull("the server is shutting down")
            if len(self.waiting) - len(self.free) >= self.max_waiting:
                raise QueueFull(f"all {self.max_batch} rows are busy and {len(self.waiting)} requests are "
                                f"waiting; try again shortly")
            self.waiting.append(job)
            self.lock.notify()
        return job

    def load(self) -> dict:
        with self.lock:
            return {"active": len(self.active), "waiting": len(self.waiting), "max_batch": self.max_batch,
                    "steps": self.steps}

    def close(self, timeout: float = 5.0) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify()
        self.thread.join(timeout)

    # the batcher's thread -------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self.lock:
                    while not self.closed and not self.waiting and not self.active:
                        self.lock.wait()
                    if self.closed:
                        return
                    joining = []
                    while self.waiting and self.free:
                        job = self.waiting.popleft()
                        if not job.cancelled:
                            job.row = self.free.pop(0)
                            joining.append(job)
                for run in _runs(joining):
                    try:
                        self._start(run)
                    except Exception as e:  # a prefill that failed (a prompt the model cannot take)
                        for job in run:
                            self._fail(job, e)
                self._drop_cancelled()
                if self.active:
                    self._step()
        except BaseException as e:  # a model error must not hang every waiting client: end them all
            self.error = e
            self._fail_all(e)

    def _start(self, run: list[Job]) -> None:
        """Prefill jobs that took consecutive rows, in one model call; pick each one's first token."""
        for job in run:
            job.context = list(job.prompt)
            job.stream = TextStream(self.decode, job.stop_strings)
        with torch.inference_mode():
            logits = self.rows.prefill(run[0].row, [job.prompt for job in run])
        for job in run:
            self.active[job.row] = job
        for i, job in enumerate(run):
            try:
                token = choose_tokens(logits[i:i + 1], job.sampling, [job.context], [job.generator])[0]
            except Exception as e:  # this job's own settings: it ends, its neighbours go on
                self._fail(job, e)
                continue
            self._emit(job, token)

    def _fail(self, job: Job, error: Exception) -> None:
        if self._finish(job):  # not one that had already ended
            job.on_event(Event(job.row, -1, "", True, "error", f"{type(error).__name__}: {error}"))

    def _step(self) -> None:
        jobs = list(self.active.values())
        with torch.inference_mode():
            logits = self.rows.decode([j.row for j in jobs], [j.context[-1] for j in jobs],
                                      [len(j.context) - 1 for j in jobs])
            picks: list[int] = [0] * len(jobs)
            # rows with the same settings draw together (one call); each keeps its own generator
            by_sampling = itertools.groupby(sorted(range(len(jobs)), key=lambda i: repr(jobs[i].sampling)),
                                            key=lambda i: jobs[i].sampling)
            for sampling, group in by_sampling:
                idx = list(group)
                gens = [jobs[i].generator for i in idx]
                chosen = choose_tokens(logits[idx], sampling, [jobs[i].context for i in idx],
                                       None if all(g is None for g in gens) else gens)
                for i, token in zip(idx, chosen, strict=True):
                    picks[i] = token
        self.steps += 1
        for job, token in zip(jobs, picks, strict=True):
            self._emit(job, token)

    def _emit(self, job: Job, token: int) -> None:
        job.produced += 1
        alive = [True]
        event = advance_row(0, token, job.context, job.stream, job.stop_ids, job.produced >= job.max_new_tokens,
                            alive)
        event.row = job.row
        if not alive[0]:
            self._finish(job)
        job.on_event(event)

    def _finish(self, job: Job) -> bool:
        """Free the job's row; False when it was freed already."""
        if job.finished:
            return False
        job.finished = True
        self.active.pop(job.row, None)
        self.rows.release(job.row)
        with self.lock:
            self.free.append(job.row)
            self.free.sort()  # lowest rows first: decoding runs the rows up to the highest in use
        return True

    def _drop_cancelled(self) -> None:
        for job in [j for j in self.active.values() if j.cancelled]:
            self._finish(job)

    def _fail_all(self, error: BaseException) -> None:
        with self.lock:
            jobs = list(self.active.values()) + list(self.waiting)
            self.active.clear()
            self.waiting.clear()
            self.closed = True
        for job in jobs:
            job.on_event(Event(job.row, -1, "", True, "error", f"{type(error).__name__}: {error}"))
