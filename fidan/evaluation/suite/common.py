"""What every set of the suite shares: seeded planning, item records, the answer's place."""

from __future__ import annotations

import random
from collections.abc import Sequence

from fidan.errors import FidanError

SEED = 2027  # every set's sampling and answer positions come from random.Random(f"{SEED}:{set name}")


def rng(name: str) -> random.Random:
    return random.Random(f"{SEED}:{name}")


def item(context: str, right: str, wrong: Sequence[str], k: int, item_id: str) -> dict:
    """An item with the right choice at index ``k`` among the wrong ones, each choice after a space.

    Two choices that read the same would make the item unanswerable: that is a bug in a word list.
    """
    choices = [*wrong[:k], right, *wrong[k:]]
    if len(set(choices)) != len(choices):
        raise FidanError(f"suite item {item_id}: two choices read the same ({choices}); fix the set's word lists")
    return {"context": context, "choices": [" " + c for c in choices], "answer": k, "id": item_id}


def sample(rows: list, n: int, r: random.Random) -> list:
    """``n`` rows in a seeded random order (all of them, shuffled, when there are fewer)."""
    rows = list(rows)
    r.shuffle(rows)
    return rows[:n]
