"""`fidan classify train`: fine-tune a classifier on labelled Turkish text through the one training loop, or
fit the TF-IDF baseline; evaluate both on the same held-out split.

A run folder holds ``classifier.json`` + ``model.safetensors`` (for a TF-IDF model ``tfidf.json`` +
``tfidf.npz``), ``tokenizer/``, ``split/`` (the train/val/test texts it used, so the run can be
re-evaluated and resumed on exactly the same split), ``eval/`` (metrics, confusion matrices and
predictions with probabilities per split, and the TF-IDF baseline's beside a neural model's),
``metrics.jsonl``, ``plots/``, ``checkpoints/`` and ``config.yaml`` (replayable with ``--config``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fidan import __version__
from fidan.artifacts.classifier_results import ClassifierSummary
from fidan.artifacts.loader import load
from fidan.artifacts.runs import clear_run
from fidan.classify.build import TOKENIZER_DIR, codec_for, model_kind, new_classifier
from fidan.classify.data import Labelled, label_names, load_splits, read_labelled, write_splits
from fidan.classify.models import POOLINGS, TRUNCATIONS, ClassifierSpec, PooledClassifier, empty_classifier
from fidan.classify.results import print_metrics, score_split
from fidan.classify.task import CLASS_WEIGHTS, ClassifyTask, class_weights, predict_logits, probabilities
from fidan.classify.tfidf import TfidfClassifier, TfidfSettings
from fidan.errors import BadInput, BadRunState
from fidan.model.lora import one_four_bit_kernel
from fidan.runtime import distributed as dist_util
from fidan.runtime.device import pick_device
from fidan.runtime.perf import autocast
from fidan.training.args import group, training_command
from fidan.training.loop import fit
from fidan.training.runs import open_run, start_fresh, write_config
from fidan.training.start import lora_request, master_weights_fp32, stored_dtype, train_precision

SPLIT_DIR = "split"
EVAL_DIR = "eval"
# Peak learning rates by kind of model (AdamW): a pretrained encoder is tuned gently, a small model
# trained from nothing learns fast, a fidan backbone sits between; LoRA adapters take 10x.
DEFAULT_LR = {"encoder": 3e-5, "fidan": 3e-4, "scratch": 1e-3}
LORA_LR_SCALE = 10.0


@training_command(batch_size=16, warmup_steps=30, weight_decay=0.01, eval_every=50, checkpoint_every=100,
                  keep_checkpoints=2, max_steps=300, patience=4, min_lr_ratio=0.0, schedule="linear")
def classify_train(
    data: str,
    out: str,
    model: str = "tfidf",
    val_data: str | None = None,
    test_data: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    epochs: float | None = None,
    max_length: int = 128,
    truncation: Literal["head", "tail"] = "head",
    pooling: Literal["mean", "last"] = "mean",
    class_weight: Literal["none", "balanced", "sqrt"] = "none",
    focal_gamma: float = 0.0,
    label_smoothing: float = 0.0,
    head_dropout: float = 0.1,
    dropout: float | None = None,
    tokenizer: str | None = None,
    vocab_size: int = 4000,
    layers: int = 2,
    width: int = 128,
    lora_r: int = 0,
    lora_alpha: float = 32.0,
    lora_targets: str | None = None,
    qlora: bool = False,
    tfidf_c: float = 10.0,
    tfidf_word_ngrams: int = 2,
    tfidf_char_ngrams: int = 5,
    baseline: bool = True,
    search: int = 0,
    select: Literal["macro_f1", "accuracy", "weighted_f1"] = "macro_f1",
    **training,
) -> dict:
    """Train a text classifier and evaluate it on held-out data (with the TF-IDF baseline beside it).

    Args:
        data: labelled texts: a CSV, TSV, JSONL or Parquet file, builtin:treebank, builtin:speeches, or
            hf:NAME[:SPLIT]; a folder written by `fidan classify data` (train/val/test.jsonl) also works.
        out: the new run folder.
        model: tfidf (word and character n-grams + logistic regression), scratch (a small transformer
            trained on this task only), a fidan run (pooled head on its hidden states), a local
            transformers folder (an encoder such as BERTurk, or a causal LM), or a hub name.
        val_data: held-out labelled texts for model selection (default: a stratified share of --data).
        test_data: labelled texts for the final figures (default: a stratified share of --data).
        text_column: the column (or JSON field) holding the text.
        label_column: the column (or JSON field) holding the label.
        val_fraction: share of --data held out for validation when --val-data is not given.
        test_fraction: share of --data held out for testing when --test-data is not given.
        epochs: train for this many passes over the training texts (sets --max-steps).
        max_length: tokens per text at most (special tokens included); longer texts are truncated.
        truncation: keep the head (start) or the tail (end) of a text longer than --max-length.
        pooling: how a causal backbone's hidden states become one vector: mean, or the last token.
        class_weight: loss weights per class: none, balanced (n / (k * n_class)) or sqrt (milder).
        focal_gamma: focal loss exponent (0: plain cross-entropy; 2 is usual).
        label_smoothing: share of the target spread over all classes (0 to 0.3 is usual).
        head_dropout: dropout before the classification head.
        dropout: dropout inside a fidan backbone (default: the backbone's own; 0.1 for --model scratch).
        tokenizer: --model scratch: a tokenizer folder to use (default: a BPE learned on the training texts).
        vocab_size: --model scratch: vocabulary of the BPE learned on the training texts.
        layers: --model scratch: transformer layers.
        width: --model scratch: hidden size (heads of 32 dimensions).
        lora_r: train LoRA adapters of this rank (and the head) instead of the whole backbone (0: off).
        lora_alpha: LoRA scale: updates are multiplied by alpha / r.
        lora_targets: comma-separated linear layers that get adapters (default: attention and MLP layers).
        qlora: a transformers causal-LM backbone loaded with its block linear layers in 4-bit NF4 (bitsandbytes,
            CPU or CUDA), LoRA adapters and the head trained over it (needs --lora-r); saved merged.
        tfidf_c: inverse regularisation strength of the TF-IDF model's logistic regression.
        tfidf_word_ngrams: the TF-IDF model uses word n-grams up to this n (0: none).
        tfidf_char_ngrams: the TF-IDF model uses character n-grams from 2 up to this n (0: none).
        baseline: also fit the TF-IDF baseline on the same split and report it beside a neural model.
        search: first try this many settings with Optuna (TPE, pruning), scored on validation macro-F1,
            then train with the best (written to OUT/search/best.yaml).
        select: the held-out figure that picks the best weights and drives --patience: macro_f1 (classes
            weigh alike), accuracy (texts weigh alike, as the lyrics guide picks) or weighted_f1.
        batch_size: texts per micro-batch.
        lr: peak learning rate (default by model: encoders 3e-5, fidan backbones 3e-4, scratch 1e-3; x10 for LoRA).
        eval_every: evaluate held-out macro-F1 every N steps.
        patience: stop after this many evaluations without a better held-out --select figure and keep the
            best weights (0: train to the end).
        seed: seed for the split, initialization, batches and dropout.
    """
    command_args = {k: v for k, v in locals().items() if k not in ("training",)} | training
    _check(locals())
    run = Path(out)
    kind = model_kind(model)
    if training["resume"] and kind == "tfidf":
        raise BadRunState("--resume: a TF-IDF model trains in seconds and has no checkpoints; run it again with --force")
    ckpt = open_run(run, training["resume"], training["force"])
    # --- data: the saved split on resume, else read and split (stratified, seeded) ---
    if ckpt is not None:
        splits = {s: read_labelled(run / SPLIT_DIR / f"{s}.jsonl") for s in ("train", "val", "test")
                  if (run / SPLIT_DIR / f"{s}.jsonl").exists()}
    else:
        splits, _ = load_splits(data, val_data, test_data, text_column, label_column, val_fraction, test_fraction,
                                training["seed"])
    labels = label_names(splits["train"], [s for n, s in splits.items() if n != "train"])
    quiet = training["quiet"]
    if not quiet:
        counts = splits["train"].counts()
        print(f"data: {', '.join(f'{n} {len(s):,}' for n, s in splits.items())} texts; {len(labels)} labels "
              f"(train: {', '.join(f'{k} {v}' for k, v in counts.items())})")
    if ckpt is None:
        start_fresh(run)
        write_splits(run / SPLIT_DIR, splits)
    t0 = time.time()
    found = None
    if search and ckpt is None:
        if not len(splits.get("val", [])):
            raise BadInput("--search scores trials on validation data: give --val-data or a --val-fraction above 0")
        from fidan.classify.search import search as run_search

        rate = DEFAULT_LR.get(kind, 0.0) * (LORA_LR_SCALE if lora_r else 1.0)
        found = run_search(classify_train, command_args, kind, training["lr"] or rate, search, run, quiet)
        command_args = {**command_args, **found["best_params"]}
        training = {k: command_args[k] for k in training}
    a = command_args
    if kind == "tfidf":
        summary = _train_tfidf(splits, labels, run, a, training["seed"], quiet)
        write_config(run, a, {"fidan_version": __version__, "stage": "classify", "kind": "tfidf", "labels": labels,
                              "train_texts": len(splits["train"]), "val_texts": len(splits.get("val", []))})
    else:
        summary = _train_neural(model, kind, splits, labels, run, ckpt, command_args, training, quiet)
        if baseline:
            summary["baseline"] = _baseline(splits, labels, run, a, training["seed"], quiet)
    if found:
        summary["search"] = found
    summary["seconds"] = round(time.time() - t0, 1)
    summary = ClassifierSummary.from_dict(summary).write(run)
    if not quiet:
        print(f"done → {run}")
    return summary


def _check(a: dict) -> None:
    for name in ("val_fraction", "test_fraction", "label_smoothing", "head_dropout"):
        if not 0 <= a[name] < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be in [0, 1), got {a[name]}")
    if a["max_length"] < 4:
        raise BadInput(f"--max-length must be at least 4, got {a['max_length']}")
    if a["epochs"] is not None and a["epochs"] <= 0:
        raise BadInput(f"--epochs must be positive, got {a['epochs']}")
    if a["focal_gamma"] < 0:
        raise BadInput(f"--focal-gamma must be >= 0, got {a['focal_gamma']}")
    if a["tfidf_c"] <= 0:
        raise BadInput(f"--tfidf-c must be positive, got {a['tfidf_c']}")
    if not (0 <= a["tfidf_word_ngrams"] <= 4 and a["tfidf_char_ngrams"] in (0, 2, 3, 4, 5, 6, 7, 8)) or \
            not (a["tfidf_word_ngrams"] or a["tfidf_char_ngrams"]):
        raise BadInput("--tfidf-word-ngrams must be 0-4 and --tfidf-char-ngrams 0 or 2-8, not both 0")
    if a["search"] < 0:
        raise BadInput(f"--search must be >= 0, got {a['search']}")
    if a["select"] not in ("macro_f1", "accuracy", "weighted_f1"):
        raise BadInput(f"--select must be macro_f1, accuracy or weighted_f1, got {a['select']!r}")
    if a["class_weight"] not in CLASS_WEIGHTS:
        raise BadInput(f"--class-weight must be one of {', '.join(CLASS_WEIGHTS)}, got {a['class_weight']}")
    if a["truncation"] not in TRUNCATIONS or a["pooling"] not in POOLINGS:
        raise BadInput(f"--truncation must be head or tail and --pooling mean or last, got {a['truncation']}, "
                       f"{a['pooling']}")
    if a["vocab_size"] < 300 or a["layers"] < 1 or a["width"] < 32:
        raise BadInput("--vocab-size must be >= 300, --layers >= 1 and --width >= 32")


def _ids(labelled: Labelled, labels: list[str]) -> list[int]:
    index = {n: i for i, n in enumerate(labels)}
    return [index[x] for x in labelled.labels]


def _fit_tfidf(splits: dict, labels: list[str], a: dict, seed: int) -> TfidfClassifier:
    settings = TfidfSettings(c=a["tfidf_c"], class_weight="balanced" if a["class_weight"] != "none" else None,
                             word_ngrams=(1, a["tfidf_word_ngrams"]) if a["tfidf_word_ngrams"] else None,
                             char_ngrams=(2, a["tfidf_char_ngrams"]) if a["tfidf_char_ngrams"] else None)
    return TfidfClassifier(labels, settings).fit(splits["train"].texts, _ids(splits["train"], labels), seed=seed)


def _evaluate_all(predict, splits: dict, labels: list[str], out: Path, prefix: str, quiet: bool, title: str) -> dict:
    figures = {}
    for name in ("val", "test"):
        if name in splits and len(splits[name]):
            probs = predict(splits[name].texts)
            m = score_split(probs, _ids(splits[name], labels), labels, splits[name].texts, out, prefix + name,
                            f"{title} · {name}")
            figures[name] = m
            if not quiet:
                print_metrics(m, labels, f"{title}, {name}")
    return figures


def _train_tfidf(splits, labels, run: Path, a: dict, seed: int, quiet: bool) -> dict:
    t0 = time.time()
    clf = _fit_tfidf(splits, labels, a, seed)
    fit_s = time.time() - t0
    clf.save(run)
    ClassifierSpec(kind="tfidf", labels=labels, backbone={"type": "tfidf"}, text_column=a["text_column"],
                   label_column=a["label_column"]).write(run)
    figures = _evaluate_all(clf.predict_proba, splits, labels, run / EVAL_DIR, "", quiet, "TF-IDF")
    return {"kind": "tfidf", "labels": labels, "fit_seconds": round(fit_s, 2), **_flat(figures)}


def _baseline(splits, labels, run: Path, a: dict, seed: int, quiet: bool) -> dict:
    clf = _fit_tfidf(splits, labels, a, seed)
    return _flat(_evaluate_all(clf.predict_proba, splits, labels, run / EVAL_DIR, "baseline-", quiet,
                               "TF-IDF baseline"))


def _flat(figures: dict) -> dict:
    return {f"{split}_{k}": m[k] for split, m in figures.items() for k in ("macro_f1", "accuracy", "weighted_f1")}


def _train_neural(model: str, kind: str, splits: dict, labels: list[str], run: Path, ckpt, command_args: dict,
                  training: dict, quiet: bool) -> dict:
    a = command_args
    device = pick_device(training["device"])
    lora = lora_request(a["lora_r"], a["lora_alpha"], a["lora_targets"], a["qlora"])
    if a["qlora"] and kind != "fidan":
        raise BadInput("--qlora loads a transformers causal LM in 4 bits under the adapters; --model is a "
                       f"{kind} model: use --lora-r alone")
    base_dtype = stored_dtype(model, training["load_dtype"]) if kind == "fidan" else "fp32"
    rate = DEFAULT_LR["fidan" if kind == "fidan" else kind] * (LORA_LR_SCALE if lora else 1.0)
    train_set = splits["train"]
    if a["epochs"] is not None:
        per_step = training["batch_size"] * training["grad_accum"]
        training = {**training, "max_steps": max(1, math.ceil(a["epochs"] * len(train_set) / per_step))}
    t = group(training, lr=training["lr"] or rate, optimizer="adamw" if training["optimizer"] == "auto" else
              training["optimizer"], muon_lr=training["muon_lr"] or 0.02,
              precision=train_precision(training["precision"], device, base_dtype, a["qlora"]), device=device)
    if ckpt is not None:
        spec = ClassifierSpec.read(run)
        if spec.labels != labels:
            raise BadRunState(f"--resume: the run in {run} was trained on the labels {', '.join(spec.labels)}, "
                              f"not {', '.join(labels)}; start a new run (--force or another --out)")
        if ClassifierSpec.read(ckpt).four_bit:  # the 4-bit base is loaded again; the checkpoint holds what trains
            spec.four_bit = True
            net = PooledClassifier(load(spec.base, dtype=training["load_dtype"], four_bit=True).model, spec)
        else:
            net = empty_classifier(spec, ckpt)
        if lora is not None:
            _lora(net, lora)
        master_weights_fp32(net)
        one_four_bit_kernel(net)
        net.load_folder(ckpt)
        codec = codec_for(spec, run / TOKENIZER_DIR)
    else:
        spec = ClassifierSpec(kind="scratch" if kind == "scratch" else "encoder" if kind == "encoder"
                              else "fidan", labels=labels, max_length=a["max_length"], truncation=a["truncation"],
                              pooling=a["pooling"], head_dropout=a["head_dropout"],
                              base=None if kind == "scratch" else str(model), four_bit=a["qlora"],
                              text_column=a["text_column"], label_column=a["label_column"])
        torch.manual_seed(training["seed"])  # the head's (and a new model's) starting weights
        try:
            net, codec = new_classifier(model, kind, spec, run, train_set.texts, tokenizer=a["tokenizer"],
                                        vocab_size=a["vocab_size"], layers=a["layers"], width=a["width"],
                                        dropout=a["dropout"], load_dtype=training["load_dtype"],
                                        four_bit=a["qlora"])
        except Exception:
            clear_run(run)  # nothing half-made is left behind
            raise
        spec.write(run)
        if lora is not None:
            _lora(net, lora)
        master_weights_fp32(net)  # trained weights in fp32 over a half-precision or 4-bit base
        one_four_bit_kernel(net)
    length = min(spec.max_length, net.config.block_size)
    rows = {n: codec.encode(s.texts, length, spec.truncation) for n, s in splits.items()}
    if not quiet:
        cut = sum(len(r) >= length for r in rows["train"])
        trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
        print(f"model: {spec.kind} ({model}), {net.num_params():,} weights, {trained:,} trained; "
              f"lr {t.train.lr:g}; {cut} of {len(rows['train'])} training texts reach --max-length {length}")
    counts = [train_set.labels.count(x) for x in labels]
    weights = class_weights(counts, a["class_weight"])
    dist = dist_util.init_distributed(device)
    eval_ctx = autocast(device, t.train.precision) if t.train.precision != "fp32" else None
    task = ClassifyTask(net.to(dist.device), (rows["train"], _ids(train_set, labels)),
                        (rows.get("val", []), _ids(splits["val"], labels) if "val" in splits else []), labels,
                        codec.pad_id, t.train, dist, dist.device, weights, a["label_smoothing"], a["focal_gamma"],
                        eval_ctx, monitor=f"val_{a['select']}")
    config = {"fidan_version": __version__, "stage": "classify", "kind": spec.kind, "base_model": spec.base,
              "labels": labels, "classifier": spec.to_dict(), "class_weights": weights,
              "train_texts": len(train_set), "val_texts": len(splits.get("val", []))}
    try:
        summary = fit(task, run, t.train, t.evals, t.checkpoints, dist=dist, device=dist.device, resume_from=ckpt,
                      config=config, command_args=command_args, logger=t.logger, quiet=quiet,
                      title=f"classify · {spec.kind}")
    finally:
        dist_util.shutdown(dist)
    if lora is not None:
        from fidan.model.lora import merge_lora

        merge_lora(net, dtype=torch.bfloat16 if spec.four_bit else torch.float32)
        spec.four_bit = False  # the saved classifier is an ordinary one
        spec.write(run)
        net.save_folder(run)

    def predict(texts: list[str]) -> np.ndarray:
        encoded = codec.encode(texts, length, spec.truncation)
        # in fp32, as `fidan classify predict` runs: the saved predictions are the ones users get
        return probabilities(predict_logits(net, encoded, codec.pad_id, t.train.batch_size * 2, dist.device))

    figures = _evaluate_all(predict, splits, labels, run / EVAL_DIR, "", quiet, spec.kind)
    return {"kind": spec.kind, "labels": labels, "step": summary["step"], "best_step": summary["best_step"],
            "stopped": summary["stopped"], "train_seconds": summary["train_seconds"], **_flat(figures)}


def _lora(net, lora) -> None:
    """Adapters on the backbone; the classification head (new, small) trains in full."""
    from fidan.model.lora import apply_lora

    names = {n.rsplit(".", 1)[-1] for n, _ in net.named_modules()}
    apply_lora(net, lora, train_also=tuple(h for h in ("head", "classifier", "score") if h in names)[:1])
