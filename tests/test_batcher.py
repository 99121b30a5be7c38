"""Continuous batching: jobs that join a running batch get exactly the tokens they get alone, for fidan and
transformers models; stops, limits, cancellation and a full queue behave."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from test_engine import GREEDY, cacheless, letters, tiny

from fidan.errors import BadInput
from fidan.inference import Engine, Sampling
from fidan.inference.batcher import Batcher, Job, QueueFull


class Collector:
    def __init__(self):
        self.events, self.done = [], threading.Event()

    def __call__(self, event):
        self.events.append(event)
        if event.done:
            self.done.set()

    def tokens(self):
        return [e.token for e in self.events if e.reason != "stop_id"]


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.002)
    return bool(condition())


def run_jobs(batcher: Batcher, jobs: list[tuple[list[int], int, Sampling, int | None]], stagger: float = 0.0):
    """Submit jobs (prompt, n, sampling, seed), ``stagger`` seconds apart; wait for all of them."""
    out = []
    for prompt, n, sampling, seed in jobs:
        c = Collector()
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        batcher.submit(Job(prompt, n, c, sampling, gen))
        out.append(c)
        time.sleep(stagger)
    for c in out:
        assert c.done.wait(30), "a job never finished"
    return out


@pytest.mark.parametrize("preset", ["ders", "hizli"])
def test_jobs_joining_mid_decode_equal_each_alone(preset):
    model = tiny(preset, block=48)
    engine = Engine(model)
    prompts = [[3, 14, 15, 92, 65], [7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [42, 43], [5, 5, 5]]
    samplings = [GREEDY, Sampling(0.9, top_k=20), GREEDY, Sampling(1.0, top_p=0.9), Sampling(0.0, repetition_penalty=1.4)]
    batcher = Batcher(model, decode=letters, max_batch=3)  # fewer rows than jobs: some wait, then join
    try:
        jobs = [(p, 20 + 3 * i, s, i) for i, (p, s) in enumerate(zip(prompts, samplings, strict=True))]
        got = run_jobs(batcher, jobs, stagger=0.002)
        for (prompt, n, sampling, seed), c in zip(jobs, got, strict=True):
            alone = engine.generate([prompt], n, sampling, torch.Generator().manual_seed(seed))[0]
            assert c.tokens() == alone.tokens
            assert "".join(e.piece for e in c.events) == c.events[-1].text
        assert batcher.steps < sum(n for _, n, _, _ in jobs)  # rows really shared steps
    finally:
        batcher.close()


def test_stops_and_limits_end_rows_and_free_them():
    model = tiny("ders", block=48)
    warm = Sampling(1.0)
    first = Engine(model).generate([[3, 14]], 10, warm, torch.Generator().manual_seed(0))[0].tokens
    cut = next(i for i in range(1, 10) if first[i] not in first[:i])  # the first new token id in the answer
    batcher = Batcher(model, decode=letters, max_batch=1)
    try:
        c = Collector()
        batcher.submit(Job([3, 14], 10, c, warm, torch.Generator().manual_seed(0), stop_ids={first[cut]}))
        assert c.done.wait(10)
        assert c.events[-1].reason == "stop_id" and c.tokens() == first[:cut]
        # the one row is free again: the next job runs
        (c2,) = run_jobs(batcher, [([3, 14], 5, warm, 0)])
        assert c2.tokens() == first[:5] and c2.events[-1].reason == "length"
    finally:
        batcher.close()


@pytest.mark.parametrize("preset", ["ders", "hizli"])
def test_jobs_past_the_window_slide_as_the_engine_does(preset):
    """One rule past the window, as in `fidan generate`: the window slides (a row runs its last 16 tokens
    again for each new token), whether the job decodes alone in the engine or among others here."""
    model = tiny(preset, block=16)
    engine = Engine(model)
    prompts = [[3, 14, 15], list(range(1, 25)), [7] * 12, [42, 43, 44, 45, 46, 47, 48, 49, 50, 51]]  # one > 16
    samplings = [GREEDY, Sampling(0.9, top_k=20), GREEDY, Sampling(0.0, repetition_penalty=1.3)]
    batcher = Batcher(model, decode=letters, max_batch=3)
    try:
        jobs = [(p, 30, s, i) for i, (p, s) in enumerate(zip(prompts, samplings, strict=True))]
        got = run_jobs(batcher, jobs, stagger=0.002)
        for (prompt, n, sampling, seed), c in zip(jobs, got, strict=True):
            alone = engine.generate([prompt], n, sampling, torch.Generator().manual_seed(seed))[0]
            assert c.tokens() == alone.tokens and len(alone.tokens) == 30
            if sampling == GREEDY:
                assert alone.tokens == cacheless(model, prompt, n)
    finally:
        batcher.close()


def test_hf_jobs_past_the_window_slide_as_the_engine_does(hf_llama):
    engine = Engine(hf_llama)  # the model's window: 64 positions
    prompts = [list(range(1, 51)), [1, 77], list(range(3, 70))]
    batcher = Batcher(hf_llama, decode=letters, max_batch=2)
    try:
        got = run_jobs(batcher, [(p, 20, GREEDY, None) for p in prompts], stagger=0.003)
        for prompt, c in zip(prompts, got, strict=True):
            assert c.tokens() == engine.generate([prompt], 20, GREEDY)[0].tokens
    finally:
        batcher.close()


def test_bad_jobs_are_refused():
    batcher = Batcher(tiny("ders", block=16), decode=letters)
    try:
        with pytest.raises(BadInput, match="at least one token"):
            batcher.submit(Job([], 3, Collector()))
        with pytest.raises(BadInput, match="max_new_tokens"):
            batcher.submit(Job([1], 0, Collector()))
    finally:
        batcher.close()


def test_a_full_queue_is_refused_and_cancelled_jobs_free_their_rows():
    model = tiny("ders", block=2048)
    batcher = Batcher(model, decode=letters, max_batch=1, max_waiting=1)
    try:
        long = Collector()
        job = batcher.submit(Job([1], 2000, long, GREEDY))
        assert wait_for(lambda: long.events)  # it has started
        waiting = Collector()
        batcher.submit(Job([2], 3, waiting, GREEDY))  # waits for the row
        with pytest.raises(QueueFull):
            batcher.submit(Job([3], 3, Collector(), GREEDY))
        job.cancel()
        assert waiting.done.wait(10)  # the cancelled job's row went to the waiting one
        (c,) = run_jobs(batcher, [([4], 3, GREEDY, None)])
        assert c.events[-1].done and not long.done.is_set()  # the cancelled job got no last event
    finally:
        batcher.close()


def test_hf_model_jobs_joining_mid_decode_equal_each_alone(hf_llama):
    engine = Engine(hf_llama)
    prompts = [[1, 5, 9, 23, 42], [1, 77], [1, 3, 4, 5, 6, 7, 8, 9, 10, 11], [1, 60, 61]]
    batcher = Batcher(hf_llama, decode=letters, max_batch=2)
    try:
        jobs = [(p, 8 + 2 * i, GREEDY if i % 2 == 0 else Sampling(0.8, top_k=10), i) for i, p in enumerate(prompts)]
        got = run_jobs(batcher, jobs, stagger=0.003)
        for (prompt, n, sampling, seed), c in zip(jobs, got, strict=True):
            alone = engine.generate([prompt], n, sampling, torch.Generator().manual_seed(seed))[0]
            assert c.tokens() == alone.tokens
    finally:
        batcher.close()


@pytest.mark.parametrize("preset", ["ders", "hizli"])
def test_jobs_joining_together_are_prefilled_in_one_call_and_equal_each_alone(preset):
    model = tiny(preset, block=48)
    engine = Engine(model)
    prompts = [[3, 14, 15, 92, 65], [7], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [42, 43]]
    batcher = Batcher(model, decode=letters, max_batch=4)
    calls = []
    real = batcher.runner.backend.prefill
    batcher.runner.backend.prefill = lambda rows, prompts: calls.append(len(rows)) or real(rows, prompts)
    try:
        out = []
        with batcher.lock:  # the batcher's thread cannot take any job until all four wait
            for i, p in enumerate(prompts):
                c = Collector()
                batcher.submit(Job(p, 12, c, Sampling(0.9), torch.Generator().manual_seed(i)))
                out.append(c)
        assert all(c.done.wait(10) for c in out)
        assert calls == [4]  # right-padded into one prefill
        for i, (p, c) in enumerate(zip(prompts, out, strict=True)):
            assert c.tokens() == engine.generate([p], 12, Sampling(0.9), torch.Generator().manual_seed(i))[0].tokens
    finally:
        batcher.close()


def test_a_job_that_fails_to_start_ends_alone_and_frees_its_row_once():
    model = tiny("ders", block=48)
    batcher = Batcher(model, decode=letters, max_batch=2)
    try:
        good, bad = Collector(), Collector()
        with batcher.lock:  # both join in one step, on consecutive rows, in one prefill
            batcher.submit(Job([1, 2], 4, good, Sampling(0.9), torch.Generator().manual_seed(0)))
            batcher.submit(Job([3], 4, bad, Sampling(0.9), generator="not a generator"))  # type: ignore[arg-type]
        assert good.done.wait(10) and bad.done.wait(10)
        assert bad.events[-1].reason == "error" and "Error" in bad.events[-1].text
        assert good.events[-1].reason == "length" and len(good.tokens()) == 4  # its neighbour did not end it
        assert wait_for(lambda: sorted(batcher.free) == [0, 1])  # each row freed once, none twice
        (c,) = run_jobs(batcher, [([5], 3, GREEDY, None)])
        assert c.events[-1].reason == "length" and batcher.error is None
    finally:
        batcher.close()
