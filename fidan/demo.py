"""`fidan demo`: the whole path on the bundled Turkish corpus, offline, in a few minutes of CPU."""

from __future__ import annotations

import time

from fidan.core.gpt import config_from_preset
from fidan.core.io import prepare_out_dir
from fidan.core.runtime import pick_device
from fidan.core.tokenizer_io import load_tokenizer
from fidan.corpus.prepare import prepare_data
from fidan.generation.generate import generate
from fidan.tokenizer.train import train_tokenizer
from fidan.training.pretrain import estimate_step_seconds, pretrain

DEMO_PROMPTS = ["Türkiye'nin başkenti", "Cumhuriyet", "Efendiler, bugün", "Bilim ve sanat"]


def demo(
    out: str = "runs/demo",
    minutes: float = 5.0,
    vocab_size: int = 8000,
    preset: str = "ders",
    batch_size: int = 32,
    seed: int = 1337,
    device: str = "auto",
    force: bool = False,
) -> dict:
    """Run the whole pipeline offline: bundled corpus → tokenizer → pretraining → samples.

    Args:
        out: the folder for everything the demo makes (data/, tokenizer/, the run itself).
        minutes: CPU minutes for pretraining.
        vocab_size: tokenizer vocabulary size.
        preset: model preset.
        batch_size: sequences per step.
        seed: random seed.
        device: auto, cpu or cuda.
        force: replace an existing demo folder.
    """
    timings: dict[str, float] = {}
    root = prepare_out_dir(out, force=force, what="demo")
    device = pick_device(device)

    t = time.time()
    print("== 1/4 corpus: Turkish speeches 1906-1938 + Turkish Web Treebank (offline packages)")
    prepare_data(source=["tr-speeches", "tr-treebank"], out=str(root / "data"), val_fraction=0.05)
    timings["corpus"] = time.time() - t

    t = time.time()
    print(f"== 2/4 tokenizer: byte-level BPE, vocab {vocab_size}")
    train_tokenizer(data=str(root / "data"), out=str(root / "tokenizer"), vocab_size=vocab_size)
    timings["tokenizer"] = time.time() - t

    t = time.time()
    tok = load_tokenizer(root / "tokenizer")
    cfg = config_from_preset(preset, tok.vocab_size)
    step_s = estimate_step_seconds(cfg, batch_size, device=device)
    # Size the schedule to the time budget (evaluation takes a few percent of it).
    max_steps = max(50, int(minutes * 60 * 0.93 / step_s))
    print(f"== 3/4 pretraining `{preset}` for ~{minutes:g} min: {max_steps} steps at ~{step_s:.2f} s/step")
    summary = pretrain(
        data=str(root / "data"),
        tokenizer=str(root / "tokenizer"),
        out=str(root),
        preset=preset,
        max_steps=max_steps,
        max_minutes=minutes * 1.15,
        batch_size=batch_size,
        warmup_steps=min(100, max_steps // 10),
        eval_every=max(25, max_steps // 8),
        checkpoint_every=max(50, max_steps // 4),
        seed=seed,
        device=device,
    )
    timings["pretrain"] = time.time() - t

    t = time.time()
    print("== 4/4 samples")
    samples = []
    for i, prompt in enumerate(DEMO_PROMPTS):
        text = generate(model=str(root), prompt=prompt, max_new_tokens=40, temperature=0.8, top_k=50,
                        seed=seed + i, device=device, stream=False)[0]
        samples.append(text)
        print(f"  » {text!r}")
    timings["samples"] = time.time() - t

    print(f"\nval bits per byte: {summary['val_bpb']:.3f} (val loss {summary['val_loss']:.3f} nats/token, "
          f"{summary['step']} steps, peak RSS {summary['peak_rss_mb']:.0f} MiB)")
    print(f"everything is in {root}/: metrics.jsonl, plots/loss.png, model.safetensors, checkpoints/")
    return {**summary, "samples": samples, "timings": {k: round(v, 1) for k, v in timings.items()}}


