"""`fidan generate`: sample text from a trained fidan model."""

from __future__ import annotations

import sys
from typing import Literal

import torch

from fidan.artifacts.loader import load_model
from fidan.errors import BadInput
from fidan.inference import Engine, Event, apply_precision, check_precision, check_sampling
from fidan.inference.precision import LOAD_DTYPE
from fidan.runtime.console import speaks
from fidan.runtime.device import pick_device, set_threads


def generate(
    model: str,
    prompt: str = "",
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = 0.95,
    repetition_penalty: float = 1.0,
    stop: list[str] | None = None,
    num_samples: int = 1,
    seed: int = 0,
    tokenizer: str | None = None,
    device: str = "auto",
    stream: bool = True,
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto",
    threads: int | None = None,
    quiet: bool | None = None,
) -> list[str]:
    """Sample text from a trained model; the texts are returned (and printed by the command, separated by ---).

    Args:
        model: a fidan run (or checkpoint) folder, a transformers causal-LM folder, a hub name from the local
            Hugging Face cache, or a LoRA adapter folder (used over its base, unmerged).
        prompt: the text to continue.
        max_new_tokens: how many tokens to generate at most.
        temperature: 0 is greedy; higher is more random.
        top_k: sample only among the k most likely tokens (0 disables).
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches p (1 disables).
        repetition_penalty: above 1, tokens already in the text become less likely (1 disables).
        stop: end a sample where this text appears (repeatable); the stop text is not printed.
        num_samples: how many continuations to draw, as one batch; sample i uses seed + i.
        seed: random seed; the same seed gives the same text.
        tokenizer: a tokenizer folder (default: the run's own copy).
        device: auto, cpu or cuda.
        stream: print the first sample as it is generated; otherwise each text is printed once complete.
        precision: auto (the checkpoint's own dtype), fp32, bf16 (weights loaded in bfloat16) or int8
            (Linear layers quantized to int8,
            CPU only); see docs/generation.md.
        threads: CPU threads for torch's operators (default: torch's own choice).
        quiet: print nothing (default: the command prints the texts; a call from Python only returns them,
            unless quiet=False).
    """
    sampling = check_sampling(max_new_tokens, temperature, top_p, top_k, repetition_penalty)
    if num_samples <= 0:
        raise BadInput(f"--num-samples must be positive, got {num_samples}")
    check_precision(precision)
    set_threads(threads)
    device = pick_device(device)
    net, tok = load_model(model, tokenizer, device, dtype=LOAD_DTYPE[precision])
    net = apply_precision(net, precision)
    ids = tok.encode(prompt) if prompt else [tok.eos_id]
    # One generator per sample: sample i draws exactly what it would draw alone with seed + i.
    generators = [torch.Generator(device=device).manual_seed(seed + i) for i in range(num_samples)]

    def show(event: Event) -> None:
        if event.row == 0 and event.piece:
            sys.stdout.write(event.piece)
            sys.stdout.flush()

    stream = stream and speaks(quiet)
    if stream:
        sys.stdout.write(prompt)
        sys.stdout.flush()
    done = Engine(net, decode=tok.decode).generate([ids] * num_samples, max_new_tokens, sampling, generators,
                                                   stop_ids={tok.eos_id}, stop_strings=stop or (),
                                                   on_event=show if stream else None)
    texts = [prompt + c.text for c in done]
    if not speaks(quiet):
        return texts
    for i, text in enumerate(texts):
        if i:
            sys.stdout.write("---\n")
        sys.stdout.write(("" if stream and i == 0 else text) + "\n")  # the streamed sample is already out
    sys.stdout.flush()
    return texts
