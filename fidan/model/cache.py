"""The KV cache: keys and values of every layer, preallocated, written in place as tokens arrive."""

from __future__ import annotations

import torch

from fidan.errors import FidanError
from fidan.model.gpt import GPTConfig


class KVCache:
    """Keys and values of every layer for ``batch`` rows of up to ``length`` positions, preallocated.

    Slot i of a row holds the token at position i, so a row's slots are also its positions. Before each
    forward with the cache, ``plan`` says where the new tokens of each row go; the model reads their
    positions and attention mask from here, every layer writes its keys and values there and reads back
    all slots up to the furthest one written, and the logits are read after each row's last new token.
    """

    def __init__(self, cfg: GPTConfig, batch: int, length: int | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.length = length or cfg.block_size
        shape = (cfg.n_layer, batch, cfg.n_head, self.length, cfg.n_embd // cfg.n_head)
        # zeros, not empty: masked slots still meet the values in a matmul, and 0 * NaN would be NaN
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self._reset_views()

    def _reset_views(self) -> None:
        self.layers = list(zip(self.k.unbind(0), self.v.unbind(0), strict=True))  # views, made once
        self.start: list[int] = []
        self.n_new = self.end = 0
        self.uniform = True
        self.positions = self.mask = self.last = None

    def rows(self, lo: int, hi: int) -> KVCache:
        """Rows ``lo`` .. ``hi - 1`` as a cache of their own that shares this one's memory: what a model
        writes through it lands here. The decoding runner prefills new jobs into their rows this way while
        the other rows keep their keys, and steps only the rows up to the last one in use."""
        view = object.__new__(KVCache)
        view.length, view.k, view.v = self.length, self.k[:, lo:hi], self.v[:, lo:hi]
        view._reset_views()
        return view

    def plan(self, start: list[int], lengths: list[int] | int) -> KVCache:
        """Row b's next ``lengths[b]`` tokens (or ``lengths`` each) go to slots ``start[b]`` onward; the cache
        itself is returned.

        Rows shorter than the longest are right-padded: the padding lands in slots past the row's end, which
        no query of the row reads before a later token overwrites them.
        """
        if isinstance(lengths, int):
            lengths = [lengths] * len(start)
        device, n_new = self.k.device, max(lengths)
        self.start, self.n_new, self.end = start, n_new, max(start) + n_new
        if self.end > self.length:
            raise FidanError(f"KV cache of {self.length} positions cannot take tokens up to position {self.end}")
        self.uniform = len(set(start)) == 1
        steps = torch.arange(n_new, device=device)
        self.positions = (steps + start[0]).expand(len(start), n_new) if self.uniform else \
            torch.tensor(start, device=device)[:, None] + steps  # (B, T)
        self.last = torch.tensor(lengths, device=device) - 1
        # From position 0: plain causal. One token per row at a shared position: every filled slot. Otherwise
        # each token sees the slots up to its own position.
        self.mask = None
        if any(start) and not (n_new == 1 and self.uniform):
            self.mask = (torch.arange(self.end, device=device) <= self.positions[:, :, None])[:, None]  # (B, 1, T, end)
        if not self.uniform:  # rows at different positions: scatter, row by row
            self.row_ids = torch.arange(len(start), device=device)[:, None]  # not `rows`: that is the method
            self.slots = self.positions
        return self

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store one layer's new keys and values (B, heads, T, head_dim); return the filled slots."""
        ck, cv = self.layers[layer]
        if self.uniform:  # one decoding step of a batch in step: plain copies (the common case, kept cheap)
            ck.narrow(2, self.start[0], self.n_new).copy_(k)
            cv.narrow(2, self.start[0], self.n_new).copy_(v)
        else:  # advanced indices on dims 0 and 2 put those dims first: (B, T, heads, head_dim)
            ck[self.row_ids, :, self.slots] = k.transpose(1, 2)
            cv[self.row_ids, :, self.slots] = v.transpose(1, 2)
        return ck.narrow(2, 0, self.end), cv.narrow(2, 0, self.end)
