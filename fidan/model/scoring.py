"""Held-out loss and bits per byte: the one scoring routine of training, tuning and `fidan eval bpb`.

bits per byte = Σ nats of the scored tokens / ln 2 / Σ UTF-8 bytes of those tokens. Special tokens (no
bytes) are left out of both sums, so the figure means the same thing for every tokenizer.

Context rule, the same everywhere: a document is conditioned on a start token (end-of-text for fidan
models, BOS for most HF models) and scored with windows of ``block`` tokens that advance by ``stride``;
after the first window every token keeps at least ``block - stride`` tokens of context, and every token
is scored exactly once (:func:`sliding_windows`). Training scores the validation split this way, so
the last evaluation of a run equals `fidan eval bpb` on the same split.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

Window = tuple[list[int], list[int], int]  # inputs, targets, first position to score


def sliding_windows(pieces: Iterable[list[int]], start_id: int | None, block: int, stride: int) -> Iterator[Window]:
    """Windows over one document's token stream: yields (inputs, targets, first scored position).

    Token 0 of the stream is the start token (only context). The first window scores targets 1..block;
    each next one ends ``stride`` tokens later and scores only the targets not scored before.
    """
    buf: list[int] = [start_id] if start_id is not None else []
    offset = 0  # absolute index of buf[0]: the consumed head of the stream is dropped
    done = 1  # absolute index of the next target to score

    def window(end: int) -> Window:
        s = max(0, end - block - 1)
        w = buf[s - offset:end - offset]
        return w[:-1], w[1:], done - s - 1

    def next_end() -> int:
        return max(done + stride, block + 1)

    for piece in pieces:
        buf.extend(piece)
        while offset + len(buf) >= next_end():
            end = next_end()
            yield window(end)
            done = end
        keep_from = max(offset, done - block)  # the next window starts no earlier than this
        del buf[:keep_from - offset]
        offset = keep_from
    total = offset + len(buf)
    while done < total:
        end = min(next_end(), total)
        yield window(end)
        done = end


def pad_windows(rows: list[Window]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (inputs, targets) of a batch of windows; already-scored and padded targets are -100.
    Causal models never look right, so padding cannot change the scores of real positions."""
    width = max(len(x) for x, _, _ in rows)
    xs = torch.zeros(len(rows), width, dtype=torch.long)
    ys = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (x, y, first) in enumerate(rows):
        xs[i, :len(x)] = torch.tensor(x, dtype=torch.long)
        ys[i, :len(y)] = torch.tensor(y, dtype=torch.long)
        ys[i, :first] = -100
    return xs, ys


class BitsPerByte:
    """Running sums of nats, tokens and bytes; ``token_bytes[id]`` is the UTF-8 length of a token."""

    def __init__(self, token_bytes: np.ndarray | None = None):
        self.table = None if token_bytes is None else torch.from_numpy(np.asarray(token_bytes, dtype=np.int64))
        self.nats = self.text_nats = 0.0
        self.tokens = self.bytes = 0

    def add(self, nll: torch.Tensor, targets: torch.Tensor) -> None:
        """Per-token nats and their targets (same shape; targets of -100 are not scored)."""
        nll, targets = nll.float().cpu().reshape(-1), targets.cpu().reshape(-1)
        keep = targets != -100
        self.nats += float(nll[keep].sum())
        self.tokens += int(keep.sum())
        if self.table is not None:
            b = self.table[targets.clamp(min=0)] * keep
            self.text_nats += float(nll[b > 0].sum())
            self.bytes += int(b.sum())

    def result(self, prefix: str = "val_") -> dict:
        mean = self.nats / max(self.tokens, 1)
        return {f"{prefix}loss": mean, f"{prefix}bpb": self.text_nats / math.log(2) / max(self.bytes, 1),
                f"{prefix}ppl": math.exp(min(mean, 50)), f"{prefix}tokens": self.tokens}


def model_nll(model: torch.nn.Module, autocast=None) -> Callable[..., torch.Tensor]:
    """Per-token nats of a fidan GPT: ``nll(x, y, doc_ids=None)`` (targets of -100 give 0)."""

    @torch.no_grad()
    def nll(x: torch.Tensor, y: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        device = next(model.parameters()).device
        x, y = x.to(device), y.to(device)
        doc_ids = None if doc_ids is None else doc_ids.to(device)
        was_training = model.training
        model.eval()  # no dropout while scoring
        try:
            with autocast if autocast is not None else contextlib.nullcontext():
                _, loss = model(x, y, reduction="none", doc_ids=doc_ids, return_logits=False)
        finally:
            model.train(was_training)
        return loss.float().view(y.shape)

    return nll


def documents_in_tokens(tokens: np.ndarray, eos_id: int, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
    """The documents of a token file (each followed by the end-of-text token), without that token.
    The file is scanned in chunks, so a large memory-mapped split is never read whole."""
    start = 0
    for lo in range(0, len(tokens), chunk):
        for end in np.flatnonzero(np.asarray(tokens[lo:lo + chunk]) == eos_id) + lo:
            if end > start:
                yield tokens[start:end]
            start = end + 1
    if start < len(tokens):
        yield tokens[start:]


def count_windows(docs: Iterable[np.ndarray], start_id: int, block: int, stride: int) -> int:
    """How many windows :func:`score_token_documents` makes of these documents (no model involved)."""
    return sum(1 for doc in docs for _ in sliding_windows([doc.astype(np.int64).tolist()], start_id, block, stride))


@torch.no_grad()
def score_token_documents(nll: Callable[..., torch.Tensor], docs: Iterable[np.ndarray], start_id: int,
                          token_bytes: np.ndarray, block: int, stride: int, batch_size: int,
                          select: set[int] | None = None) -> dict:
    """Loss and bits per byte of already-tokenized documents, by the sliding-window rule above.

    ``select`` scores only the windows with these indices (in document order), e.g. a sample spread
    evenly over a split; None scores every window.
    """
    meter = BitsPerByte(token_bytes)
    batch: list[Window] = []
    n = scored = 0

    def flush() -> None:
        x, y = pad_windows(batch)
        meter.add(nll(x, y), y)
        batch.clear()

    for doc in docs:
        for window in sliding_windows([doc.astype(np.int64).tolist()], start_id, block, stride):
            if select is None or n in select:
                batch.append(window)
                scored += 1
                if len(batch) == batch_size:
                    flush()
            n += 1
        if select is not None and scored == len(select):
            break
    if batch:
        flush()
    return {**meter.result(), "val_windows": scored}
