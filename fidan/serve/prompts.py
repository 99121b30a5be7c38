"""Request text → prompt ids and the ids that end an answer, for the model's own chat format.

A model tuned by ``fidan sft`` has the ``<INST>…</INST><RESP>…</RESP>`` tokens and answers until ``</RESP>``.
A transformers folder that brings its own Jinja ``chat_template`` (Qwen, Llama, ...) is rendered with it.
A model with neither can still complete text, but has no chat format: ``/v1/chat/completions`` says so.
(The formats themselves: fidan.text.chat_template.ChatFormat.)
"""

from __future__ import annotations

from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput, FidanError
from fidan.text.chat_template import ChatFormat, check_messages


class Prompter:
    def __init__(self, tok: TokenizerBundle):
        self.tok = tok
        self.format = ChatFormat(tok)

    @property
    def can_chat(self) -> bool:
        return self.format.kind is not None

    def chat(self, messages: list[dict]) -> tuple[list[int], set[int]]:
        if self.format.kind == "fidan":
            why = check_messages(messages)
            if why:
                raise BadInput(why)
            if messages[-1]["role"] != "user":
                raise BadInput("the last message must be the user's: the model answers it")
        elif any(not m["content"].strip() for m in messages):
            raise BadInput("a message has empty content")
        try:
            ids, _ = self.format.encode(messages, add_generation_prompt=True)
        except FidanError as e:
            raise BadInput(str(e)) from None
        return ids, self.format.stop_ids

    def complete(self, text: str) -> tuple[list[int], set[int]]:
        """A text prompt; an empty one starts from the end-of-text token, as `fidan generate` does."""
        return (self.tok.encode(text) if text else [self.tok.eos_id]), {self.tok.eos_id}
