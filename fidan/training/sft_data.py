"""Instruction data for tuning: conversations → (inputs, targets) examples → packed rows → batches.

- The loss covers only what the assistant says (its tokens and each closing </RESP>); prompt positions
  are -100. In a multi-turn chat every assistant turn is supervised and every user turn is not.
- Short examples are packed into full sequences; ``doc_ids`` give attention a block-diagonal causal
  mask and restart positions at 0 per example, so packed examples never see each other.
- The epoch order is a function of the seed, and (epoch, cursor) is the whole data state: exact resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import FidanError
from fidan.text.chat_template import ChatFormat, encode_chat
from fidan.training.settings import Group, option

Example = tuple[list[int], list[int]]  # (input ids, target ids with -100 where not supervised)


@dataclass
class TuneArgs(Group, key="tune", title="instruction data and tuning"):
    val_data: str | None = option(None, "held-out conversations (default: the folder's val.jsonl, else a hashed "
                                        "share of --data).")
    val_fraction: float = option(0.05, "share of --data held out when there is no separate validation data (0 "
                                       "disables).")
    dropout: float | None = option(None, "dropout rate while tuning (default: 0).")
    pack: bool = option(True, "pack several short examples into each sequence (attention never crosses examples).")
    eval_examples: int = option(500, "held-out conversations used per evaluation, at most.")
    chat_template: Literal["auto", "fidan", "base"] = option(
        "auto", "auto (a transformers base's own chat template when it has one, as Qwen and Llama do; else fidan's "
                "<INST>…</INST><RESP>…</RESP>), fidan, or base (the base's own, required).")
    block_size: int | None = option(
        None, "sequence length for tuning (default: the base's). Longer than a fidan base's grows its context: "
              "learned position rows past the base's start as copies (row p = row p mod the base's length), rotary "
              "positions need nothing; a transformers base reads up to its own maximum.")

    def check(self) -> None:
        if self.eval_examples <= 0:
            raise FidanError(f"--eval-examples must be positive, got {self.eval_examples}")
        if self.chat_template not in ("auto", "fidan", "base"):
            raise FidanError(f"--chat-template must be auto, fidan or base, got {self.chat_template!r}")
        if not 0 <= self.val_fraction < 1:
            raise FidanError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")


def tokenize_conversations(tok: TokenizerBundle, conversations: list[list[dict]], block_size: int,
                           chat_format: ChatFormat | None = None) -> tuple[list[Example], int, int]:
    """Next-token examples in the tokenizer's chat format (fidan's markers unless ``chat_format`` says
    otherwise); returns (examples, truncated, dropped).

    An example longer than the block is cut to its first ``block_size`` positions; one left with no
    supervised target (the answer fell past the cut) is dropped.
    """
    encode = chat_format.encode if chat_format is not None else (lambda m: encode_chat(tok, m))
    examples, truncated, dropped = [], 0, 0
    for messages in conversations:
        ids, labels = encode(messages)
        x, y = ids[:-1], labels[1:]
        if len(x) > block_size:
            x, y = x[:block_size], y[:block_size]
            truncated += 1
        if all(t == -100 for t in y):
            dropped += 1
            continue
        examples.append((x, y))
    return examples, truncated, dropped


def pack_rows(lengths: list[int], order: list[int], block_size: int, pack: bool = True) -> list[list[int]]:
    """Group example indices into rows of at most ``block_size`` tokens, greedily in ``order``.

    Without packing every example gets a row of its own.
    """
    rows: list[list[int]] = []
    row: list[int] = []
    used = 0
    for i in order:
        if row and (not pack or used + lengths[i] > block_size):
            rows.append(row)
            row, used = [], 0
        row.append(i)
        used += lengths[i]
    if row:
        rows.append(row)
    return rows


def make_batch(examples: list[Example], rows: list[list[int]], pad_id: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets and document ids (B, T) for a list of rows; T is the longest row.

    Example j of a row has document id j; padding is one more document whose targets are all -100.
    """
    T = max(sum(len(examples[i][0]) for i in row) for row in rows)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -100, dtype=torch.long)
    doc = torch.full((len(rows), T), len(max(rows, key=len)), dtype=torch.long)
    for b, row in enumerate(rows):
        at = 0
        for j, i in enumerate(row):
            ids, targets = examples[i]
            x[b, at:at + len(ids)] = torch.tensor(ids)
            y[b, at:at + len(ids)] = torch.tensor(targets)
            doc[b, at:at + len(ids)] = j
            at += len(ids)
    return x, y, doc


class EpochBatches:
    """Rows in a seeded order per epoch, served batch by batch; (epoch, cursor) is the whole state."""

    def __init__(self, examples: list[Example], block_size: int, pack: bool, seed: int):
        self.examples, self.block_size, self.pack, self.seed = examples, block_size, pack, seed
        self.lengths = [len(x) for x, _ in examples]
        self.epoch, self.cursor = 0, 0
        self._rows_epoch, self._rows = -1, []

    def rows(self) -> list[list[int]]:
        if self._rows_epoch != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            order = torch.randperm(len(self.examples), generator=g).tolist()
            self._rows, self._rows_epoch = pack_rows(self.lengths, order, self.block_size, self.pack), self.epoch
        return self._rows

    def next(self, batch_size: int) -> list[list[int]]:
        out: list[list[int]] = []
        while len(out) < batch_size:
            rows = self.rows()
            take = rows[self.cursor:self.cursor + batch_size - len(out)]
            out += take
            self.cursor += len(take)
            if self.cursor >= len(rows):
                self.epoch, self.cursor = self.epoch + 1, 0
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
