"""`fidan chat`: talk to an instruction-tuned model in the terminal, with the answer streamed as it is made.

Commands inside the REPL: ``/reset`` forgets the conversation, ``/system TEXT`` sets the system message
(``/system`` alone clears it), ``/temp X`` sets the temperature, ``/help``, ``/exit``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Literal

import torch

from fidan.artifacts.loader import load_model
from fidan.errors import FidanError
from fidan.inference import Engine, Event, Sampling, apply_precision, check_precision, check_sampling
from fidan.inference.precision import LOAD_DTYPE
from fidan.runtime.device import pick_device, set_threads
from fidan.text.chat_fit import fit_turns, prompt_room
from fidan.text.chat_template import ChatFormat, ChatTokens

HELP = ("commands: /reset (new conversation), /system TEXT (set the system message; /system alone clears it), "
        "/temp X (temperature), /help, /exit")


class ChatSession:
    """A conversation with a model: history, system message and sampling settings.

    Answers come from the inference engine (KV cache, UTF-8-safe streaming); an answer ends at
    ``</RESP>`` (or the end of turn of the model's own chat template), at the end-of-text token or at
    ``max_new_tokens``.
    """

    def __init__(self, model: torch.nn.Module, tok, system: str | None = None, temperature: float = 0.7,
                 top_k: int | None = 50, top_p: float | None = 0.95, max_new_tokens: int = 200, seed: int = 0,
                 device: str = "cpu", repetition_penalty: float = 1.0):
        check_sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty)
        self.model, self.tok, self.device = model, tok, device
        self.system = system
        self.temperature, self.top_k, self.top_p, self.max_new_tokens = temperature, top_k, top_p, max_new_tokens
        self.repetition_penalty = repetition_penalty
        self.format = ChatFormat(tok)  # fidan's markers, or the model's own chat template
        if self.format.kind is None:
            ChatTokens.of(tok)  # the one-line error: this model was not prepared for chat
        self.stop_ids = self.format.stop_ids
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.engine = Engine(model, decode=tok.decode)
        self.history: list[dict] = []

    def reset(self) -> None:
        self.history = []

    def messages(self, user: str) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history + [{"role": "user", "content": user}]

    def prompt_ids(self, user: str) -> list[int]:
        """The conversation so far plus the new question, ending in <RESP>; the oldest turns are dropped
        (and forgotten) when it would not leave room for an answer in the model's context, as `fidan serve`
        drops them (fidan.text.chat_fit). A question too long even alone keeps its last tokens."""
        room = prompt_room(self.model.config.block_size, self.max_new_tokens)
        fitted = fit_turns(self.messages(user), self._encode, room)
        self.history = fitted.messages[(1 if self.system else 0):-1]
        return fitted.ids[-room:]

    def _encode(self, messages: list[dict]) -> list[int]:
        return self.format.encode(messages, add_generation_prompt=True)[0]

    def reply(self, user: str, on_text: Callable[[str], None] | None = None) -> str:
        """Generate the answer to ``user`` (streamed to ``on_text`` piece by piece) and remember both."""
        # Settings are read at each turn (/temp changes them) and checked in the one place that checks them.
        sampling = check_sampling(self.max_new_tokens, self.temperature, self.top_p, self.top_k,
                                  self.repetition_penalty)

        def show(event: Event) -> None:
            if on_text and event.piece:
                on_text(event.piece)

        done = self.engine.generate([self.prompt_ids(user)], self.max_new_tokens, sampling, self.generator,
                                    stop_ids=self.stop_ids, on_event=show)
        answer = done[0].text
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        return answer


def run_repl(session: ChatSession, read: Callable[[str], str] | None = None,
             write: Callable[[str], None] | None = None) -> None:
    """The read-answer loop; ``read`` (default: input) raises EOFError at the end of input."""
    read = read or input
    if write is None:
        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()
    write(f"fidan chat: {HELP}\n")
    while True:
        try:
            line = read("> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, arg = line.partition(" ")
            arg = arg.strip()
            if cmd in ("/exit", "/quit"):
                return
            if cmd == "/reset":
                session.reset()
                write("(new conversation)\n")
            elif cmd == "/system":
                session.system = arg or None
                session.reset()
                write(f"(system message {'set' if arg else 'cleared'}; new conversation)\n")
            elif cmd == "/temp":
                try:
                    value = float(arg)
                    Sampling(temperature=value).check()
                except (ValueError, FidanError):
                    write(f"(/temp needs a number >= 0, got {arg!r})\n")
                    continue
                session.temperature = value
                write(f"(temperature {value:g})\n")
            elif cmd == "/help":
                write(HELP + "\n")
            else:
                write(f"(unknown command {cmd}; {HELP})\n")
            continue
        session.reply(line, on_text=write)
        write("\n")


def chat(
    model: str,
    system: str | None = None,
    temperature: float = 0.7,
    top_k: int | None = 50,
    top_p: float | None = 0.95,
    max_new_tokens: int = 200,
    repetition_penalty: float = 1.0,
    seed: int = 0,
    tokenizer: str | None = None,
    device: str = "auto",
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto",
    threads: int | None = None,
) -> None:
    """Chat with an instruction-tuned model in the terminal; answers stream as they are generated.

    Args:
        model: a run folder made by `fidan sft` (or one of its checkpoints), a transformers chat model (folder or
            cached hub name) with its own chat template, or a LoRA adapter folder (used over its base, unmerged).
        system: a system message for the conversation (change it with /system).
        temperature: 0 is greedy; higher is more varied (change it with /temp).
        top_k: sample only among the k most likely tokens (0 disables).
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches p (1 disables).
        max_new_tokens: the longest answer, in tokens; an answer ends earlier at </RESP>.
        repetition_penalty: above 1, tokens already in the conversation become less likely (1 disables).
        seed: random seed.
        tokenizer: a tokenizer folder (default: the run's own copy).
        device: auto, cpu or cuda.
        precision: auto (the checkpoint's own dtype), fp32, bf16 (weights loaded in bfloat16) or int8
            (Linear layers quantized to int8,
            CPU only); see docs/generation.md.
        threads: CPU threads for torch's operators (default: torch's own choice).
    """
    check_sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty)
    check_precision(precision)
    set_threads(threads)
    device = pick_device(device)
    net, tok = load_model(model, tokenizer, device, dtype=LOAD_DTYPE[precision])
    net = apply_precision(net, precision)
    session = ChatSession(net, tok, system, temperature, top_k, top_p, max_new_tokens, seed, device,
                          repetition_penalty)
    run_repl(session)
