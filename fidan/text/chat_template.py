"""The chat format of the Turkish lesson: ``<INST>…</INST><RESP>…</RESP>``, plus a system role.

A conversation is rendered as::

    <SYS>system</SYS><INST>user 1</INST><RESP>assistant 1</RESP><INST>user 2</INST><RESP>…

The six markers are special tokens, so the text between them is tokenized exactly as it would be on
its own, and encoding the rendered string equals encoding piece by piece. That is why the Jinja
template below (stored as ``chat_template`` in ``tokenizer_config.json``) makes
``AutoTokenizer.apply_chat_template`` give exactly the ids of :func:`encode_chat`.

Training supervises only what the assistant says: its content tokens and the ``</RESP>`` that ends
each answer (so the model learns when to stop). Everything else is labelled -100.

A tokenizer that brings its own Jinja template instead (Qwen's ChatML, Llama's headers...) is rendered
with it (:class:`ChatFormat`): then the supervised tokens are those of each assistant answer, found in the
rendered text by their character offsets, and the end-of-turn token that follows it.
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


# Ends of a turn in common chat templates, besides the tokenizer's end-of-text token.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


def _token_text(value) -> str:
    if isinstance(value, dict):
        return value.get("content", "")
    return value or ""


def _refuse(message: str):
    raise FidanError(f"the chat template refused the messages: {message}")


class ChatFormat:
    """A tokenizer's chat format: fidan's markers (``kind == "fidan"``), its own Jinja template
    (``"template"``), or none (``None``: the model completes text but cannot chat)."""

    def __init__(self, tok: TokenizerBundle, prefer: str = "auto"):
        self.tok = tok
        has_markers = all(tok.tokenizer.token_to_id(t) is not None for t in CHAT_TOKENS)
        self.source = template_source(tok)
        self.kind = "fidan" if has_markers and prefer != "template" else "template" if self.source else None
        if prefer == "template" and self.source is None:
            raise FidanError(f"tokenizer {tok.path} has no chat template of its own; use fidan's chat format")
        self._template = None
        if self.kind == "template":
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _refuse
            self._template = env.from_string(self.source)

    @property
    def stop_ids(self) -> set[int]:
        """Tokens that end an answer."""
        if self.kind == "fidan":
            return {ChatTokens.of(self.tok).end_of_response, self.tok.eos_id}
        ends = {self.tok.tokenizer.token_to_id(t) for t in END_OF_TURN} | {self.tok.eos_id}
        return {i for i in ends if i is not None}

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        from jinja2 import TemplateError

        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         bos_token=_token_text(self.tok.config.get("bos_token")),
                                         eos_token=_token_text(self.tok.config.get("eos_token")))
        except TemplateError as e:
            raise FidanError(f"the model's chat template failed on these messages: {e}") from None

    def encode(self, messages: list[dict], add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
        """Ids and labels (the id where supervised, else -100), aligned as :func:`encode_chat` gives them."""
        if self.kind == "fidan":
            return encode_chat(self.tok, messages, add_generation_prompt)
        if self.kind is None:
            raise FidanError(f"the model's tokenizer ({self.tok.path}) has no chat format: tune it with `fidan sft`, "
                             "or complete plain text")
        text = self.render(messages, add_generation_prompt)
        enc = self.tok.tokenizer.encode(text, add_special_tokens=False)
        ids, labels = list(enc.ids), [-100] * len(enc.ids)
        ends, cursor = self.stop_ids, 0
        for m in messages:
            at = text.find(m["content"], cursor)
            if at < 0:
                if m["role"] == "assistant":
                    raise FidanError("the chat template does not show an assistant answer as it is, so its tokens "
                                     "cannot be found for the loss; tune with fidan's chat format (--chat-template fidan)")
                continue
            cursor = at + len(m["content"])
            if m["role"] != "assistant":
                continue
            for i, (start, end) in enumerate(enc.offsets):
                if end > at and start < cursor:
                    labels[i] = ids[i]
                elif start >= cursor:
                    if ids[i] in ends:  # the end of the turn right after the answer: the model learns to stop
                        labels[i] = ids[i]
                    break
        return ids, labels


def template_source(tok: TokenizerBundle) -> str | None:
    """The tokenizer's own Jinja chat template (tokenizer_config.json or chat_template.jinja), if any."""
    source = tok.config.get("chat_template")
    file = tok.path / "chat_template.jinja"
    if source is None and file.exists():
        source = file.read_text(encoding="utf-8")
    if isinstance(source, list):  # several named templates: the default one
        source = next((t.get("template") for t in source if t.get("name") == "default"), None)
    return source if isinstance(source, str) and source.strip() else None
