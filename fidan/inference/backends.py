"""The model side of decoding: rows of a KV cache, filled by a prefill and grown by one-token steps.

A backend holds up to ``rows`` sequences, each in a row of its cache, and answers three calls:

    prefill(rows, prompts)            each row's cache restarts with its prompt at position 0;
                                      next-token logits (len(rows), vocab)
    step(rows, tokens, positions)     one token per row at its position, over its cached ones; logits
    release(row)                      the row is free (a later prefill may take it)

``GPTBackend`` drives a fidan ``GPT`` over a preallocated ``KVCache``; ``HFBackend`` drives a transformers
causal LM over its own cache, with left padding and an attention mask. ``fidan.inference.runner`` decides
what to call when (sampling, stops, the window); nothing here knows about those.
"""

from __future__ import annotations

import torch

from fidan.errors import BadInput
from fidan.model.cache import KVCache
from fidan.model.gpt import GPT
from fidan.model.hf import forward_with_cache


def model_window(model: torch.nn.Module) -> int:
    """How many tokens of context the model takes at once."""
    if isinstance(model, GPT):
        return model.config.block_size
    cfg = getattr(model, "config", None)
    window = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if not window:
        raise BadInput(f"cannot tell the context length of {type(model).__name__}; pass window= to Engine")
    return int(window)


def check_window(model: torch.nn.Module, window: int | None) -> int:
    """``window`` (default: the model's own), or a BadInput when the model cannot take it."""
    window = window or model_window(model)
    if not 0 < window <= model_window(model):
        raise BadInput(f"window {window} is outside 1..{model_window(model)}, the model's context length")
    return window


def runs(rows: list[int]) -> list[list[int]]:
    """Row numbers (any order) grouped into runs of consecutive ones, ascending."""
    out: list[list[int]] = []
    for r in sorted(rows):
        if out and out[-1][-1] == r - 1:
            out[-1].append(r)
        else:
            out.append([r])
    return out


class GPTBackend:
    """A fidan ``GPT`` over one preallocated cache of ``rows`` rows of ``block_size`` positions."""

    def __init__(self, model: GPT, rows: int):
        p = next(model.parameters())
        self.model, self.device = model, p.device
        self.cache = KVCache(model.config, rows, device=p.device, dtype=p.dtype)
        self.views: dict[tuple[int, int], KVCache] = {}

    def _view(self, lo: int, hi: int) -> KVCache:
        if (lo, hi) not in self.views:
            self.views[lo, hi] = self.cache.rows(lo, hi)
        return self.views[lo, hi]

    def prefill(self, rows: list[int], prompts: list[list[int]]) -> torch.Tensor:
        """One model call per run of consecutive rows; shorter prompts of a run are right-padded."""
        by_row = dict(zip(rows, prompts, strict=True))
        out = {}
        for run in runs(rows):
            idx = torch.zeros(len(run), max(len(by_row[r]) for r in run), dtype=torch.long)
            for b, r in enumerate(run):
                idx[b, :len(by_row[r])] = torch.tensor(by_row[r])
            view = self._view(run[0], run[-1] + 1).plan([0] * len(run), [len(by_row[r]) for r in run])
            logits = self.model(idx.to(self.device), cache=view)[0]
            out.update(zip(run, logits, strict=True))
        return torch.stack([out[r] for r in rows])

    def step(self, rows: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Every row up to the highest one asked runs; the others are fed the first row's token and position,
        which writes only into slots that no query reads before they are written again (a free row is
        prefilled afresh; a busy row left out of a step is prefilled right after it)."""
        hi = max(rows) + 1
        tok, pos = [tokens[0]] * hi, [positions[0]] * hi
        for r, t, p in zip(rows, tokens, positions, strict=True):
            tok[r], pos[r] = t, p
        idx = torch.tensor(tok, device=self.device)[:, None]
        logits = self.model(idx, cache=self._view(0, hi).plan(pos, 1))[0]
        return logits if len(rows) == hi else logits[torch.tensor(rows, device=logits.device)]

    def release(self, row: int) -> None:
        pass  # the next prefill of this row overwrites its slots from position 0


class HFBackend:
    """A transformers causal LM: the rows in use are one batch, left-padded to one width, with an attention
    mask and explicit positions (a padded row counts its positions from its first real token). New rows are
    prefilled together, then their cache is padded and joined to the others'; a released row is dropped."""

    def __init__(self, model: torch.nn.Module, rows: int):
        self.model, self.device = model, next(model.parameters()).device
        self.order: list[int] = []  # batch index → row number
        self.cache = None
        self.mask = torch.zeros(0, 0, dtype=torch.long)

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, past) -> tuple[torch.Tensor, object]:
        from transformers import DynamicCache

        logits, cache = forward_with_cache(self.model, ids.to(self.device), mask.to(self.device),
                                           positions.to(self.device), past if past is not None else DynamicCache())
        return logits[:, -1].float(), cache

    def prefill(self, rows: list[int], prompts: list[list[int]]) -> torch.Tensor:
        for r in rows:
            if r in self.order:
                self.release(r)
        width = max(map(len, prompts))
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, width - len(p):] = torch.tensor(p)
            mask[b, width - len(p):] = 1
        logits, cache = self._run(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), None)
        if self.cache is None:
            self.cache, self.mask = cache, mask
        else:  # pad the narrower side on the left, then stack the new rows under the others
            width = max(self.mask.size(1), width)
            _pad(self.cache, width - self.mask.size(1))
            _pad(cache, width - mask.size(1))
            self.mask = torch.cat([_left_pad(self.mask, width), _left_pad(mask, width)])
            for mine, new in zip(self.cache.layers, cache.layers, strict=True):
                mine.keys, mine.values = torch.cat([mine.keys, new.keys]), torch.cat([mine.values, new.values])
        self.order += rows
        return logits

    def step(self, rows: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Every row in use must take a step (each one gains a column of the mask)."""
        by_row = dict(zip(rows, zip(tokens, positions, strict=True), strict=True))
        tok = torch.tensor([by_row[r][0] for r in self.order])[:, None]
        pos = torch.tensor([by_row[r][1] for r in self.order])[:, None]
        self.mask = torch.cat([self.mask, torch.ones(len(self.order), 1, dtype=torch.long)], dim=1)
        logits, self.cache = self._run(tok, self.mask, pos, self.cache)
        index = {r: i for i, r in enumerate(self.order)}
        return logits[torch.tensor([index[r] for r in rows])]

    def release(self, row: int) -> None:
        if row not in self.order:
            return
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
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, cut:], layer.values[:, :, cut:]


def _pad(cache, extra: int) -> None:
    if extra:
        for layer in cache.layers:
            layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, extra, 0))
            layer.values = torch.nn.functional.pad(layer.values, (0, 0, extra, 0))


def _left_pad(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(mask, (width - mask.size(1), 0))


def backend_for(model: torch.nn.Module, rows: int) -> GPTBackend | HFBackend:
    return (GPTBackend if isinstance(model, GPT) else HFBackend)(model, rows)
