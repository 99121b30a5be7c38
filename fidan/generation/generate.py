"""`fidan generate`: sample text from a trained fidan model."""

from __future__ import annotations

import sys

import torch

from fidan.core.checkpoint import load_model
from fidan.core.gpt import check_sampling
from fidan.core.runtime import pick_device


def generate(
    model: str,
    prompt: str = "",
    max_new_tokens: int = 100,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = 0.95,
    num_samples: int = 1,
    seed: int = 0,
    tokenizer: str | None = None,
    device: str = "auto",
    stream: bool = True,
) -> list[str]:
    """Sample text from a trained model.

    Args:
        model: a run folder made by `fidan pretrain` (or one of its checkpoint folders).
        prompt: the text to continue.
        max_new_tokens: how many tokens to generate at most.
        temperature: 0 is greedy; higher is more random.
        top_k: sample only among the k most likely tokens (0 disables).
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches p (1 disables).
        num_samples: how many continuations to draw.
        seed: random seed; the same seed gives the same text.
        tokenizer: a tokenizer folder (default: the run's own copy).
        device: auto, cpu or cuda.
        stream: print tokens as they are generated.
    """
    check_sampling(max_new_tokens, temperature, top_p)
    device = pick_device(device)
    net, tok = load_model(model, tokenizer, device)
    ids = tok.encode(prompt) if prompt else [tok.eos_id]
    outputs = []
    for i in range(num_samples):
        gen = torch.Generator(device=device).manual_seed(seed + i)
        context = torch.tensor([ids], device=device)
        new: list[int] = []
        printed = ""
        if stream:
            sys.stdout.write(prompt)
        for token in net.generate(context, max_new_tokens, temperature, top_k, top_p, gen, stop_ids={tok.eos_id}):
            if token == tok.eos_id:
                break
            new.append(token)
            if stream:
                # Decode the whole continuation so multi-byte characters print only when complete.
                text = tok.decode(new)
                if not text.endswith("\ufffd"):
                    sys.stdout.write(text[len(printed):])
                    sys.stdout.flush()
                    printed = text
        text = prompt + tok.decode(new)
        if stream:
            sys.stdout.write(text[len(prompt) + len(printed):] + "\n")
            if i + 1 < num_samples:
                sys.stdout.write("---\n")
        outputs.append(text)
    return outputs
