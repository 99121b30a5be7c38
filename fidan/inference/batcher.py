"""Continuous batching: requests that arrive while others decode join the batch at the next step.

``Engine.stream`` decodes a batch that is fixed when it starts. A server cannot wait for a batch to end
before it takes the next request, nor serve one request at a time behind a long answer. The ``Batcher``
keeps a pool of rows (``max_batch``) in one ``Runner`` (the engine's own decoding runner) and one thread
that owns the model:

    loop: take waiting jobs into free rows (prefill each, pick its first token)
          one step for every row in use, one token each
          rows end at a stop id, a stop string or their token limit; their rows are free again

Every job has its own sampling settings, random generator, stops and limit, and gets its ``Event``s (the
same ones ``Engine.stream`` yields) through a callback, called on the batcher's thread. A job's tokens do
not depend on which other jobs share its steps: each row attends only to its own cache slots and, given
its own generator, draws what it would draw alone. Past the model's window the row's window slides, as in
``Engine.stream``, so a request gives the same text here as through `fidan generate`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import torch

from fidan.errors import BadInput, FidanError
from fidan.inference.backends import runs
from fidan.inference.runner import Event, Job, Runner

__all__ = ["Batcher", "Job", "QueueFull"]


class QueueFull(FidanError):
    """Every row is busy and the waiting line is at its limit: try again later (HTTP 503)."""


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
        if max_batch < 1 or max_waiting < 0:
            raise BadInput(f"max_batch must be >= 1 and max_waiting >= 0, got {max_batch} and {max_waiting}")
        self.runner = Runner(model.eval(), decode, max_batch)
        self.window = self.runner.window
        self.max_batch, self.max_waiting = max_batch, max_waiting
        self.waiting: deque[Job] = deque()
        self.free = list(range(max_batch))
        self.lock = threading.Condition()
        self.closed = False
        self.steps = 0  # decoding steps run (a step serves every active row)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="fidan-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        """Queue a job; its events arrive through ``job.on_event`` (the last one has ``done`` set)."""
        if not job.prompt:
            raise BadInput("every prompt needs at least one token")
        if job.max_new_tokens < 1:
            raise BadInput(f"max_new_tokens must be at least 1, got {job.max_new_tokens}")
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
            return {"active": len(self.runner.jobs), "waiting": len(self.waiting), "max_batch": self.max_batch,
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
                    while not self.closed and not self.waiting and not self.runner.jobs:
                        self.lock.wait()
                    if self.closed:
                        return
                    joining = {}
                    while self.waiting and self.free:
                        job = self.waiting.popleft()
                        if not job.cancelled:
                            job.row = self.free.pop(0)
                            joining[job.row] = job
                for run in runs(list(joining)):  # rows next to each other are prefilled in one call
                    jobs = [joining[r] for r in run]
                    try:
                        self._deliver(self.runner.join(jobs))
                    except Exception as e:  # a prefill that failed (a prompt the model cannot take)
                        self._deliver([(job, self.runner.fail(job, e)) for job in jobs])
                for job in [j for j in self.runner.jobs.values() if j.cancelled]:
                    self.runner.leave(job)
                    self._free(job.row)
                if self.runner.jobs:
                    events = self.runner.step()
                    self.steps += 1
                    self._deliver(events)
        except BaseException as e:  # a model error must not hang every waiting client: end them all
            self.error = e
            self._fail_all(e)

    def _deliver(self, events: list[tuple[Job, Event]]) -> None:
        for job, event in events:
            if event.done:
                self._free(job.row)
            job.on_event(event)

    def _free(self, row: int) -> None:
        with self.lock:
            self.free.append(row)
            self.free.sort()  # lowest rows first: decoding runs the rows up to the highest in use

    def _fail_all(self, error: BaseException) -> None:
        with self.lock:
            jobs = list(self.runner.jobs.values()) + list(self.waiting)
            self.runner.jobs.clear()
            self.waiting.clear()
            self.closed = True
        for job in jobs:
            job.on_event(Event(job.row, -1, "", True, "error", f"{type(error).__name__}: {error}"))
