"""`fidan demo classify`: Turkish text classification offline, end to end, on real labels.

Two tasks from the bundled packages: Turkish Web Treebank sentences by source (wiki or web; balanced)
and the speeches by kind (konusma, demec, telgraf, mektup; imbalanced). On the first, TF-IDF, a small
transformer trained from scratch and a classifier on the pretrained fidan model of `fidan demo` side by
side; on the second, plain cross-entropy against class weights and focal loss. Every run keeps its
split, metrics, confusion matrix, predictions and report.
"""

from __future__ import annotations

import time

from fidan.artifacts.runs import resolve_model_dir
from fidan.classify.data import classify_data
from fidan.classify.train import classify_train
from fidan.errors import BadInput, FidanError
from fidan.reporting.report import report
from fidan.runtime.device import pick_device
from fidan.runtime.io import atomic_write_json, atomic_write_text, prepare_out_dir

# The treebank's sentences are short (median ~17 tokens); a speech's kind shows in its opening words.
TREEBANK_LENGTH, SPEECH_LENGTH = 64, 128


def demo_classify(
    out: str = "runs/demo-classify",
    backbone: str = "runs/demo",
    epochs: float = 3.0,
    speech_epochs: float = 12.0,
    seed: int = 1337,
    device: str = "auto",
    force: bool = False,
) -> dict:
    """Classify Turkish text offline: treebank sentences by source, speeches by kind; TF-IDF, a small
    transformer from scratch and a pretrained fidan backbone side by side.

    Args:
        out: the folder for everything the demo makes.
        backbone: the pretrained fidan run to classify with (made by `fidan demo`; skipped if absent).
        epochs: passes over the treebank's training sentences for each neural model.
        speech_epochs: passes over the speeches' training texts for each loss compared.
        seed: random seed (split, initialisation, batches).
        device: auto, cpu or cuda.
        force: replace an existing demo folder.
    """
    if epochs <= 0 or speech_epochs <= 0:
        raise BadInput(f"--epochs and --speech-epochs must be positive, got {epochs} and {speech_epochs}")
    root = prepare_out_dir(out, force=force, what="demo")
    device = pick_device(device)
    try:
        base = str(resolve_model_dir(backbone))
    except FidanError:
        base = None
        print(f"note: no pretrained run at {backbone}: run `fidan demo` (make demo) first to compare a pretrained "
              "backbone; the demo goes on without it")
    t0 = time.time()
    common = dict(seed=seed, device=device, quiet=True)

    print("== 1/3 data: treebank sentences by source, speeches by kind (stratified splits)")
    classify_data(source="builtin:treebank", out=str(root / "data" / "treebank"), seed=seed)
    classify_data(source="builtin:speeches", out=str(root / "data" / "speeches"), val_fraction=0.15,
                  test_fraction=0.25, seed=seed)

    print("\n== 2/3 treebank, wiki or web: TF-IDF, a transformer from scratch, the pretrained backbone")
    tb = str(root / "data" / "treebank")
    runs = {"tfidf": dict(model="tfidf"),
            "scratch": dict(model="scratch", epochs=epochs, max_length=TREEBANK_LENGTH)}
    if base:
        runs["backbone"] = dict(model=base, epochs=epochs, max_length=TREEBANK_LENGTH)
    treebank = {}
    for name, args in runs.items():
        t = time.time()
        s = classify_train(data=tb, out=str(root / "treebank" / name), baseline=False, **common, **args)
        treebank[name] = {**_figures(s), "seconds": round(time.time() - t, 1)}
        print(f"   {name:<9} test macro-F1 {s['test_macro_f1']:.3f}, accuracy {s['test_accuracy']:.3f} "
              f"({treebank[name]['seconds']:.0f} s)")

    print("\n== 3/3 speeches by kind (imbalanced): plain cross-entropy, class weights, focal loss")
    sp = str(root / "data" / "speeches")
    model = base or "scratch"
    losses = {"cross-entropy": {}, "class weights": dict(class_weight="balanced"), "focal loss": dict(focal_gamma=2.0)}
    speeches = {}
    for name, args in losses.items():
        t = time.time()
        s = classify_train(data=sp, out=str(root / "speeches" / name.replace(" ", "-")), model=model,
                           epochs=speech_epochs, max_length=SPEECH_LENGTH, baseline=name == "cross-entropy",
                           **common, **args)
        speeches[name] = {**_figures(s), "seconds": round(time.time() - t, 1)}
        print(f"   {name:<14} test macro-F1 {s['test_macro_f1']:.3f}, accuracy {s['test_accuracy']:.3f}")
        if s.get("baseline"):
            speeches["TF-IDF"] = {k: v for k, v in s["baseline"].items() if k.startswith("test_")}

    for folder in sorted((root / "treebank").iterdir()) + sorted((root / "speeches").iterdir()):
        report(str(folder))
    summary = {"backbone": base, "treebank": treebank, "speeches": speeches, "seconds": round(time.time() - t0, 1)}
    atomic_write_json(root / "summary.json", summary)
    atomic_write_text(root / "summary.md", _markdown(summary))
    print("\n" + _markdown(summary))
    print(f"everything is in {root}/ (each run has its report.md, eval/ and split/)")
    return summary


def _figures(s: dict) -> dict:
    return {k: s[k] for k in ("test_macro_f1", "test_accuracy", "test_weighted_f1", "val_macro_f1") if k in s}


def _markdown(summary: dict) -> str:
    L = ["# fidan demo classify", "", "Treebank sentences, wiki or web (test split):", "",
         "| model | macro-F1 | accuracy | time |", "|---|---:|---:|---:|"]
    for name, r in summary["treebank"].items():
        L.append(f"| {name} | {r['test_macro_f1']:.3f} | {r['test_accuracy']:.3f} | {r['seconds']:.0f} s |")
    tb = summary["treebank"]
    if "backbone" in tb:
        gap = tb["backbone"]["test_macro_f1"] - tb["tfidf"]["test_macro_f1"]
        L += ["", f"Pretrained backbone minus TF-IDF: {gap:+.3f} macro-F1."]
    L += ["", f"Speeches by kind, imbalanced (test split; model: {'the backbone' if summary['backbone'] else 'scratch'}):",
          "", "| loss | macro-F1 | accuracy | weighted F1 |", "|---|---:|---:|---:|"]
    for name, r in summary["speeches"].items():
        L.append(f"| {name} | {r['test_macro_f1']:.3f} | {r['test_accuracy']:.3f} | {r['test_weighted_f1']:.3f} |")
    return "\n".join(L) + "\n"

