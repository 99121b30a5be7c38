"""`fidan demo`: the whole path on the built-in Turkish sources, offline, in a few minutes of CPU."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from fidan.artifacts.conversations import read_conversations
from fidan.artifacts.loader import load_model
from fidan.artifacts.results import save_timings
from fidan.artifacts.runs import read_model_config, resolve_model_dir
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.conversation.repl import ChatSession
from fidan.corpus.instructions import build_instructions
from fidan.corpus.prepare import prepare_data
from fidan.errors import BadInput, MissingExtra
from fidan.evaluation.bpb import eval_bpb
from fidan.evaluation.mc import eval_mc
from fidan.evaluation.samples import eval_samples
from fidan.model.gpt import config_from_preset
from fidan.reporting.report import report
from fidan.runtime.device import pick_device
from fidan.runtime.io import prepare_out_dir
from fidan.tokenizer.train import train_tokenizer
from fidan.training.pretrain import estimate_step_seconds, pretrain
from fidan.training.sft import estimate_sft_step_seconds, sft

DEMO_PROMPTS = ["Türkiye'nin başkenti", "Cumhuriyet", "Efendiler, bugün", "Bilim ve sanat"]
# Speeches 1906-1938, web sentences, dictionary definitions, manual pages, news. A quarter of KeNet (1.1 of its
# 4.2 M characters): whole, it is half the corpus, and a model trained for minutes then writes dictionary lines.
DEMO_SOURCES = ["tr-speeches", "tr-treebank", "tr-kenet?every=4", "tr-manpages", "tr-news"]


def available_sources() -> list[str]:
    """The demo's sources whose package is installed; a missing one is left out with a note."""
    from fidan.corpus.sources import iter_source

    found = []
    for name in DEMO_SOURCES:
        try:
            next(iter(iter_source(name)), None)
            found.append(name)
        except MissingExtra as e:
            print(f"note: source {name} left out ({e})", file=sys.stderr)
    if not found:
        raise BadInput("no built-in corpus source is installed; install fidan[tr-data] (see README)")
    return found


def demo(
    out: str = "runs/demo",
    minutes: float = 4.0,
    vocab_size: int = 8000,
    preset: str = "ders",
    batch_size: int = 32,
    seed: int = 1337,
    device: str = "auto",
    force: bool = False,
    sft_minutes: float = 1.5,
) -> dict:
    """Run the whole pipeline offline: built-in sources → tokenizer → pretraining → samples → chat tuning.

    Args:
        out: the folder for everything the demo makes (data/, tokenizer/, the run itself).
        minutes: CPU minutes for pretraining.
        vocab_size: tokenizer vocabulary size.
        preset: model preset.
        batch_size: sequences per step.
        seed: random seed.
        device: auto, cpu or cuda.
        force: replace an existing demo folder.
        sft_minutes: CPU minutes for instruction tuning (0 skips it).
    """
    if minutes <= 0 or sft_minutes < 0:
        raise BadInput(f"--minutes must be positive and --sft-minutes >= 0, got {minutes} and {sft_minutes}")
    timings: dict[str, float] = {}
    root = prepare_out_dir(out, force=force, what="demo")
    device = pick_device(device)

    t = time.time()
    print("== 1/5 corpus: the built-in Turkish sources (offline packages): " + ", ".join(DEMO_SOURCES))
    sources = available_sources()
    prepare_data(source=sources, out=str(root / "data"), val_fraction=0.05, workers=2)
    timings["corpus"] = time.time() - t

    t = time.time()
    print(f"== 2/5 tokenizer: byte-level BPE with the Turkish pre-tokenizer, vocab {vocab_size}")
    train_tokenizer(data=str(root / "data"), out=str(root / "tokenizer"), vocab_size=vocab_size)
    timings["tokenizer"] = time.time() - t

    t = time.time()
    tok = load_tokenizer(root / "tokenizer")
    cfg = config_from_preset(preset, tok.vocab_size)
    # The schedule fills the time budget: its length is re-planned from measured step times as it runs.
    # The first guess only places the evaluations and checkpoints on a grid.
    guess = max(50, int(minutes * 60 * 0.9 / estimate_step_seconds(cfg, batch_size, device=device)))
    print(f"== 3/5 pretraining `{preset}` for {minutes:g} min (about {guess} steps)")
    summary = pretrain(
        data=str(root / "data"),
        tokenizer=str(root / "tokenizer"),
        out=str(root),
        preset=preset,
        max_steps=guess,
        budget_minutes=minutes,
        batch_size=batch_size,
        warmup_steps=min(100, guess // 10),
        eval_every=max(25, guess // 8),
        checkpoint_every=max(50, guess // 4),
        seed=seed,
        device=device,
    )
    timings["pretrain"] = time.time() - t

    t = time.time()
    print("== 4/5 samples and evaluation (fixed prompts and seeds; held-out bits per byte; vowel-harmony choices)")
    result = eval_samples(model=str(root), prompt=DEMO_PROMPTS, max_new_tokens=40, temperature=0.8, top_k=50,
                          seed=seed, device=device)
    samples = [s["text"] for s in result["samples"]]
    eval_bpb(model=str(root), text=str(root / "data"), split="val", batch_size=32, device=device)
    eval_mc(model=str(root), data="tr-harmony", batch_size=64, device=device)
    timings["samples+eval"] = time.time() - t

    print(f"\nval bits per byte: {summary['val_bpb']:.3f} (val loss {summary['val_loss']:.3f} nats/token, "
          f"{summary['step']} steps, peak RSS {summary['peak_rss_mb']:.0f} MiB)")
    print(f"everything is in {root}/: metrics.jsonl, plots/loss.png, model.safetensors, checkpoints/")

    tuned = None
    if sft_minutes > 0:
        t = time.time()
        print("\n== 5/5 instruction tuning: KeNet definitions, Turkish dialogs, questions on the speeches")
        tuned = instruction_tuning(root, sft_minutes, seed, device)
        timings["sft"] = time.time() - t

    save_timings(root, timings)
    report_path = report(str(root))
    print(f"\nthe run's report card: {report_path}")
    return {**summary, "samples": samples, "sft": tuned, "timings": {k: round(v, 1) for k, v in timings.items()},
            "report": str(report_path)}


# Instruction tuning in ~90 s of CPU, with `fidan sft`'s defaults for the base (twice its pretraining
# rate, no dropout), and 1,000 KeNet definitions (not 3,000): definitions of unseen words are the
# slowest thing to learn, and the short run is better spent on many passes over a balanced set.
SFT_BATCH = 16
SFT_KENET = 1000
SHOWCASE = [  # one held-out question of each kind
    lambda q: q.endswith("hangi yıla aittir?"),
    lambda q: q.endswith("nerede yapılmıştır?"),
    lambda q: q.endswith(("ne demektir?", "anlamı nedir?", "ne demek?")),
    lambda q: not q.startswith('"'),
]


def instruction_tuning(root: Path, minutes: float, seed: int, device: str) -> dict:
    """Build the offline instruction set, tune the pretrained model in ``root``, show held-out exchanges."""
    data = root / "sft-data"
    build_instructions(out=str(data), kenet_max=SFT_KENET, skip_missing=True, force=True)
    cfg = read_model_config(resolve_model_dir(root))
    guess = max(50, int(minutes * 60 * 0.85 / estimate_sft_step_seconds(cfg, SFT_BATCH, device=device)))
    print(f"   tuning for {minutes:g} min (about {guess} steps)")
    summary = sft(model=str(root), data=str(data), out=str(root / "chat"), max_steps=guess,
                  budget_minutes=minutes, batch_size=SFT_BATCH, warmup_steps=max(5, guess // 20),
                  eval_every=max(10, guess // 12), patience=3, checkpoint_every=guess, seed=seed, device=device,
                  force=True)
    net, tok = load_model(root / "chat", device=device)
    val = read_conversations(data / "val.jsonl")
    exchanges = []
    for wanted in SHOWCASE:
        chat = next((c for c in val if wanted(c[0]["content"]) and c not in [e[0] for e in exchanges]), None)
        if chat is None:
            continue
        session = ChatSession(net, tok, temperature=0.0, max_new_tokens=48, device=device)
        answer = session.reply(chat[0]["content"])
        exchanges.append((chat, answer))
        print(f"  soru:   {chat[0]['content']}\n  model:  {answer}\n  kaynak: {chat[1]['content']}\n")
    before, after = summary["val_loss_before"], summary["val_loss"]
    print(f"held-out answer loss {before:.3f} → {after:.3f} nats/token ({after / before:.2f}x), "
          f"{summary['val_bpb_before']:.3f} → {summary['val_bpb']:.3f} bits/byte; chat with it: "
          f"fidan chat --model {root / 'chat'}")
    return {**summary, "exchanges": [{"question": c[0]["content"], "answer": a, "reference": c[1]["content"]}
                                     for c, a in exchanges]}

