"""Request text → prompt ids and the ids that end an answer, for the model's own chat format.

A model tuned by ``fidan sft`` has the ``<INST>…</INST><RESP>…</RESP>`` tokens and answers until ``</RESP>``.
A transformers folder that brings its own Jinja ``chat_template`` (Qwen, Llama, ...) is rendered with it.
A model with neither can still complete text, but has no chat format: ``/v1/chat/completions`` says so.
"""

from __future__ import annotations

from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput
from fidan.text.chat_template import CHAT_TOKENS, ChatTokens, check_messages, encode_chat

# Ends of a turn in common chat templates, besides the tokenizer's end-of-text token.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


class Prompter:
    def __init__(self, tok: TokenizerBundle):
        self.tok = tok
        self.fidan_chat = all(tok.tokenizer.token_to_id(t) is not None for t in CHAT_TOKENS)
        self.template = None
        if not self.fidan_chat:
            source = tok.config.get("chat_template")
            file = tok.path / "chat_template.jinja"
            if source is None and file.exists():
                source = file.read_text(encoding="utf-8")
            if isinstance(source, str):
                from jinja2.sandbox import ImmutableSandboxedEnvironment

                env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
                env.globals["raise_exception"] = _raise
                self.template = env.from_string(source)

    @property
    def can_chat(self) -> bool:
        return self.fidan_chat or self.template is not None

    def chat(self, messages: list[dict]) -> tuple[list[int], set[int]]:
        if self.fidan_chat:
            why = check_messages(messages)
            if why:
                raise BadInput(why)
            if messages[-1]["role"] != "user":
                raise BadInput("the last message must be the user's: the model answers it")
            ids, _ = encode_chat(self.tok, messages, add_generation_prompt=True)
            return ids, {ChatTokens.of(self.tok).end_of_response, self.tok.eos_id}
        if self.template is None:
            raise BadInput(f"the model's tokenizer ({self.tok.path}) has no chat format: tune it with `fidan sft`, "
                           "or use /v1/completions for plain text")
        if any(not m["content"].strip() for m in messages):
            raise BadInput("a message has empty content")
        from jinja2 import TemplateError

        try:
            text = self.template.render(messages=messages, add_generation_prompt=True,
                                        bos_token=_token(self.tok.config.get("bos_token")),
                                        eos_token=_token(self.tok.config.get("eos_token")))
        except TemplateError as e:
            raise BadInput(f"the model's chat template failed on these messages: {e}") from None
        ends = {self.tok.eos_id} | {i for t in END_OF_TURN if (i := self.tok.tokenizer.token_to_id(t)) is not None}
        return self.tok.encode(text), ends

    def complete(self, text: str) -> tuple[list[int], set[int]]:
        """A text prompt; an empty one starts from the end-of-text token, as `fidan generate` does."""
        return (self.tok.encode(text) if text else [self.tok.eos_id]), {self.tok.eos_id}


def _token(value) -> str:
    if isinstance(value, dict):
        return value.get("content", "")
    return value or ""


def _raise(message: str):
    raise BadInput(f"the chat template refused the messages: {message}")
