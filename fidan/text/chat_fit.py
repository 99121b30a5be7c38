"""Fitting a growing conversation into a model's window: the oldest turns go first.

A conversation grows with every turn while the model reads a fixed number of tokens, and the answer needs
room too. `fidan chat` and `fidan serve` (and so the chat page) both answer with :func:`fit_turns`: the
system messages and the last user message (with anything after it) always stay; before it, whole turns (a
user message and the answers that follow it) are dropped, oldest first, until the prompt fits ``room``
tokens. ``room`` is the window less a reserve for the answer (:func:`prompt_room`), so a long history does
not squeeze the answer down to a few tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Fitted:
    """The conversation that fits: its prompt ids, the messages kept and how many turns were dropped.
    When even the shortest conversation is too long, ``ids`` is that shortest one's (longer than ``room``):
    the caller decides whether to refuse it or to cut it."""

    ids: list[int]
    messages: list[dict]
    dropped: int

    def fits(self, room: int) -> bool:
        return len(self.ids) <= room


def prompt_room(window: int, answer_tokens: int) -> int:
    """Prompt tokens that leave ``answer_tokens`` for the answer, up to half the window (a long answer
    request must not push out the whole conversation)."""
    return max(1, window - min(answer_tokens, window // 2))


def turns(messages: list[dict]) -> list[list[int]]:
    """The droppable turns, oldest first, as lists of message indices: everything before the last user
    message except system messages, a new turn starting at each user message."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    found: list[list[int]] = []
    for i, m in enumerate(messages[:max(last_user, 0)]):
        if m["role"] == "system":
            continue
        if m["role"] == "user" or not found:
            found.append([])
        found[-1].append(i)
    return found


def fit_turns(messages: list[dict], encode: Callable[[list[dict]], list[int]], room: int) -> Fitted:
    """The conversation with the fewest oldest turns dropped whose prompt (``encode(messages)``) is at most
    ``room`` tokens. Encodes O(log turns) times (a bisection: fewer turns never make a longer prompt), so
    a request with thousands of turns costs a dozen encodings, not thousands."""
    units = turns(messages)

    def without(k: int) -> Fitted:
        gone = {i for unit in units[:k] for i in unit}
        kept = [m for i, m in enumerate(messages) if i not in gone]
        return Fitted(encode(kept), kept, k)

    best = without(0)
    if best.fits(room) or not units:
        return best
    best = without(len(units))
    if not best.fits(room):
        return best  # even the last turn alone is too long
    lo, hi = 0, len(units)  # without(lo) is too long, without(hi) fits
    while hi - lo > 1:
        mid = (lo + hi) // 2
        trial = without(mid)
        if trial.fits(room):
            hi, best = mid, trial
        else:
            lo = mid
    return best
