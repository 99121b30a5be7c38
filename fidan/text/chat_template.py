"""The chat format of the Turkish lesson: ``<INST>…</INST><RESP>…</RESP>``, plus a system role.

A conversation is rendered as::

    <SYS>system</SYS><INST>user 1</INST><RESP>assistant 1</RESP><INST>user 2</INST><RESP>…

The six markers are special tokens, so the text between them is tokenized exactly as it would be on
its own, and encoding the rendered string equals encoding piece by piece. That is why the Jinja
template below (stored as ``chat_template`` in ``tokenizer_config.json``) makes
``AutoTokenizer.apply_chat_template`` give exactly the ids of :func:`encode_chat`.

Training supervises only what the assistant says: its content tokens and the ``</RESP>`` that ends
each answer (so the model learns when to stop). Everything else is labelled -100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fidan.errors import FidanError

if TYPE_CHECKING:  # a tokenizer folder is an artifact, a floor up; the format only needs its methods
    from fidan.artifacts.tokenizer import TokenizerBundle

SYS, SYS_END = "<SYS>", "</SYS>"
INST, INST_END = "<INST>", "</INST>"
RESP, RESP_END = "<RESP>", "</RESP>"
CHAT_TOKENS = [SYS, SYS_END, INST, INST_END, RESP, RESP_END]
END_OF_RESPONSE = RESP_END
ROLES = ("system", "user", "assistant")
_WRAP = {"system": (SYS, SYS_END), "user": (INST, INST_END), "assistant": (RESP, RESP_END)}

# One line, no whitespace between tags: what it renders is byte-for-byte what render_chat() renders.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}" + SYS + "{{ message['content'] }}" + SYS_END +
    "{%- elif message['role'] == 'user' -%}" + INST + "{{ message['content'] }}" + INST_END +
    "{%- elif message['role'] == 'assistant' -%}" + RESP + "{{ message['content'] }}" + RESP_END +
    "{%- else -%}{{ raise_exception('unknown role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + RESP + "{%- endif -%}"
)


def check_messages(messages: object) -> str | None:
    """Why a list of messages is not a valid conversation, or None when it is.

    Valid: an optional first system message, then user and assistant turns alternating, starting with
    the user; every content a non-empty string.
    """
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    expected = "user"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return f"message {i} needs 'role' and 'content'"
        role, content = m["role"], m["content"]
        if role not in ROLES:
            return f"message {i} has unknown role {role!r} (use system, user or assistant)"
        if not isinstance(content, str) or not content.strip():
            return f"message {i} ({role}) has empty or non-text content"
        if role == "system":
            if i != 0:
                return f"message {i}: a system message may only come first"
            continue
        if role != expected:
            return f"message {i} is {role!r} but {expected!r} was expected (turns alternate, the user first)"
        expected = "assistant" if role == "user" else "user"
    return None


def render_chat(messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The conversation as one string, as the Jinja template renders it."""
    parts = []
    for m in messages:
        start, end = _WRAP[m["role"]]
        parts.append(start + m["content"] + end)
    if add_generation_prompt:
        parts.append(RESP)
    return "".join(parts)


@dataclass
class ChatTokens:
    """Ids of the chat markers in one tokenizer."""

    ids: dict[str, int]

    @classmethod
    def of(cls, tok: TokenizerBundle) -> ChatTokens:
        ids = {}
        for t in CHAT_TOKENS:
            tid = tok.tokenizer.token_to_id(t)
            if tid is None:
                raise FidanError(f"tokenizer {tok.path} has no chat token {t}; it was not prepared for chat "
                                 "(`fidan sft` adds the tokens; chat with a model made by `fidan sft`)")
            ids[t] = tid
        return cls(ids)

    @property
    def end_of_response(self) -> int:
        return self.ids[RESP_END]


def encode_chat(tok: TokenizerBundle, messages: list[dict], add_generation_prompt: bool = False
                ) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and its labels (the id where supervised, else -100).

    Labels are aligned with the ids (label i belongs to token i); training shifts them by one.
    Supervised: the assistant's content tokens and its closing ``</RESP>``.
    """
    marks = ChatTokens.of(tok).ids
    ids: list[int] = []
    labels: list[int] = []
    for m in messages:
        start, end = _WRAP[m["role"]]
        body = tok.encode(m["content"])
        ids += [marks[start], *body, marks[end]]
        if m["role"] == "assistant":
            labels += [-100, *body, marks[end]]
        else:
            labels += [-100] * (len(body) + 2)
    if add_generation_prompt:
        ids.append(marks[RESP])
        labels.append(-100)
    return ids, labels
