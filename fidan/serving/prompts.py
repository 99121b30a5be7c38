"""Request text → prompt ids and the ids that end an answer, for the model's own chat format.

A model tuned by ``fidan sft`` has the ``<INST>…</INST><RESP>…</RESP>`` tokens and answers until ``</RESP>``.
A transformers folder that brings its own Jinja ``chat_template`` (Qwen, Llama, ...) is rendered with it.
A model with neither can still complete text, but has no chat format: ``/v1/chat/completions`` says so.
(The formats themselves: fidan.text.chat_template.ChatFormat.) A conversation longer than the model's window
loses its oldest turns first, as in `fidan chat` (fidan.text.chat_fit).
"""

from __future__ import annotations

from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput, FidanError
from fidan.text.chat_fit import fit_turns
from fidan.text.chat_template import ChatFormat, check_messages


class Prompter:
    def __init__(self, tok: TokenizerBundle):
        self.tok = tok
        self.format = ChatFormat(tok)

    @property
    def can_chat(self) -> bool:
        return self.format.kind is not None

    def chat(self, messages: list[dict], room: int | None = None) -> tuple[list[int], set[int], int]:
        """Prompt ids, the ids that end the answer, and how many of the oldest turns were dropped so that
        the prompt fits ``room`` tokens (None: none dropped). A conversation too long even with only its
        last turn comes back whole-turn-trimmed but longer than ``room``: the caller refuses it."""
        if self.format.kind == "fidan":
            why = check_messages(messages)
            if why:
                raise BadInput(why)
            if messages[-1]["role"] != "user":
                raise BadInput("the last message must be the user's: the model answers it")
        elif any(not m["content"].strip() for m in messages):
            raise BadInput("a message has empty content")
        def encode(kept: list[dict]) -> list[int]:
            try:
                return self.format.encode(kept, add_generation_prompt=True)[0]
            except FidanError as e:
                raise BadInput(str(e)) from None

        if room is None:
            return encode(messages), self.format.stop_ids, 0
        fitted = fit_turns(messages, encode, room)
        return fitted.ids, self.format.stop_ids, fitted.dropped

    def complete(self, text: str) -> tuple[list[int], set[int]]:
        """A text prompt; an empty one starts from the end-of-text token, as `fidan generate` does."""
        return (self.tok.encode(text) if text else [self.tok.eos_id]), {self.tok.eos_id}
