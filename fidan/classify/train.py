"""`fidan classify train`: fine-tune a classifier on labelled Turkish text through the one training loop, or
fit the TF-IDF baseline; evaluate both on the same held-out split.

A run folder holds ``classifier.json`` + ``model.safetensors`` (for a TF-IDF model ``tfidf.json`` +
``tfidf.npz``), ``tokenizer/``, ``split/`` (the train/val/test texts it used, so the run can be
re-evaluated and resumed on exactly the same split), ``eval/`` (metrics, confusion matrices and
predictions with probabilities per split, and the TF-IDF baseline's beside a neural model's),
``metrics.jsonl``, ``plots/``, ``checkpoints/`` and ``config.yaml`` (replayable with ``--config``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from fidan import __version__
from fidan.artifacts.classifier_results import ClassifierSummary
from fidan.artifacts.loader import load as load_model
from fidan.artifacts.runs import clear_run
from fidan.classify.build import TOKENIZER_DIR, codec_for, model_kind, new_classifier
from fidan.classify.data import Labelled, label_names, load_splits, read_labelled, write_splits
from fidan.classify.models import ClassifierSpec, PooledClassifier, empty_classifier
from fidan.classify.options import ClassifierArgs, ScratchArgs, SplitArgs, TfidfArgs
from fidan.classify.results import print_metrics, score_split
from fidan.classify.task import ClassifyTask, class_weights, predict_logits, probabilities
from fidan.classify.tfidf import TfidfClassifier, TfidfSettings
from fidan.errors import BadInput, BadRunState
from fidan.model.lora import one_four_bit_kernel
from fidan.runtime import distributed as dist_util
from fidan.runtime.device import pick_device
from fidan.runtime.perf import autocast
from fidan.training.args import CheckpointArgs, EvalArgs, LoadArgs, LogArgs, LoraArgs, RunArgs, TrainArgs
from fidan.training.loop import fit
from fidan.training.run_folder import open_run, start_fresh, write_config
from fidan.training.settings import record, stage_settings, to_flat, with_flat
from fidan.training.starting_point import lora_request, master_weights_fp32, stored_dtype, train_precision

SPLIT_DIR = "split"
EVAL_DIR = "eval"
# Peak learning rates by kind of model (AdamW): a pretrained encoder is tuned gently, a small model
# trained from nothing learns fast, a fidan backbone sits between; LoRA adapters take 10x.
DEFAULT_LR = {"encoder": 3e-5, "fidan": 3e-4, "scratch": 1e-3}
LORA_LR_SCALE = 10.0


@stage_settings(batch_size=16, warmup_steps=30, weight_decay=0.01, eval_every=50, checkpoint_every=100,
                keep_checkpoints=2, max_steps=300, patience=4, min_lr_ratio=0.0, schedule="linear")
def classify_train(data: str, out: str, model: str = "tfidf", search: int = 0, *, split: SplitArgs,
                   classifier: ClassifierArgs, scratch: ScratchArgs, tfidf: TfidfArgs, lora: LoraArgs,
                   train: TrainArgs, eval: EvalArgs, checkpoint: CheckpointArgs, load: LoadArgs, log: LogArgs,
                   run: RunArgs) -> dict:
    """Train a text classifier and evaluate it on held-out data (with the TF-IDF baseline beside it).

    Args:
        data: labelled texts: a CSV, TSV, JSONL or Parquet file, builtin:treebank, builtin:speeches, or
            hf:NAME[:SPLIT]; a folder written by `fidan classify data` (train/val/test.jsonl) also works.
        out: the new run folder.
        model: tfidf (word and character n-grams + logistic regression), scratch (a small transformer
            trained on this task only), a fidan run (pooled head on its hidden states), a local
            transformers folder (an encoder such as BERTurk, or a causal LM), or a hub name.
        lora_r: train LoRA adapters of this rank (and the head) instead of the whole backbone (0: off).
        lora_alpha: LoRA scale: updates are multiplied by alpha / r.
        lora_targets: comma-separated linear layers that get adapters (default: attention and MLP layers).
        qlora: a transformers causal-LM backbone loaded with its block linear layers in 4-bit NF4 (bitsandbytes,
            CPU or CUDA), LoRA adapters and the head trained over it (needs --lora-r); saved merged.
        search: first try this many settings with Optuna (TPE, pruning), scored on validation macro-F1,
            then train with the best (written to OUT/search/best.yaml).
        batch_size: texts per micro-batch.
        lr: peak learning rate (default by model: encoders 3e-5, fidan backbones 3e-4, scratch 1e-3; x10 for LoRA).
        eval_every: evaluate held-out macro-F1 every N steps.
        patience: stop after this many evaluations without a better held-out --select figure and keep the
            best weights (0: train to the end).
        seed: seed for the split, initialization, batches and dropout.
    """
    own = {"data": data, "out": out, "model": model, "search": search}
    groups = [split, classifier, scratch, tfidf, lora, train, eval, checkpoint, load, log, run]
    for group in (split, classifier, tfidf, scratch):
        group.check()
    if search < 0:
        raise BadInput(f"--search must be >= 0, got {search}")
    opts, run = run, Path(out)
    kind = model_kind(model)
    if opts.resume and kind == "tfidf":
        raise BadRunState("--resume: a TF-IDF model trains in seconds and has no checkpoints; run it again with --force")
    ckpt = open_run(run, opts.resume, opts.force)
    # --- data: the saved split on resume, else read and split (stratified, seeded) ---
    if ckpt is not None:
        splits = {s: read_labelled(run / SPLIT_DIR / f"{s}.jsonl") for s in ("train", "val", "test")
                  if (run / SPLIT_DIR / f"{s}.jsonl").exists()}
    else:
        splits, _ = load_splits(data, split.val_data, split.test_data, split.text_column, split.label_column,
                                split.val_fraction, split.test_fraction, train.seed)
    labels = label_names(splits["train"], [s for n, s in splits.items() if n != "train"])
    quiet = log.quiet
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

        rate = DEFAULT_LR.get(kind, 0.0) * (LORA_LR_SCALE if lora.lora_r else 1.0)
        flat = {**own, **{k: v for g in groups for k, v in to_flat(g).items()}}
        found = run_search(classify_train, flat, kind, train.lr or rate, search, run, quiet)
        split, classifier, scratch, tfidf, lora, train, eval, checkpoint, load, log, opts = groups = [
            with_flat(g, found["best_params"]) for g in groups]
    command_args = record(own, *groups)
    if kind == "tfidf":
        summary = _train_tfidf(splits, labels, run, tfidf, classifier, split, train.seed, quiet)
        write_config(run, command_args, {"fidan_version": __version__, "stage": "classify", "kind": "tfidf",
                                         "labels": labels, "train_texts": len(splits["train"]),
                                         "val_texts": len(splits.get("val", []))})
    else:
        summary = _train_neural(model, kind, splits, labels, run, ckpt, command_args, split=split, head=classifier,
                                scratch=scratch, lora=lora, train=train, evals=eval, ckpts=checkpoint, load=load,
                                log=log, device=opts.device)
        if tfidf.baseline:
            summary["baseline"] = _baseline(splits, labels, run, tfidf, classifier.class_weight, train.seed, quiet)
    if found:
        summary["search"] = found
    summary["seconds"] = round(time.time() - t0, 1)
    summary = ClassifierSummary.from_dict(summary).write(run)
    if not quiet:
        print(f"done → {run}")
    return summary


def _ids(labelled: Labelled, labels: list[str]) -> list[int]:
    index = {n: i for i, n in enumerate(labels)}
    return [index[x] for x in labelled.labels]


def _fit_tfidf(splits: dict, labels: list[str], tfidf: TfidfArgs, class_weight: str, seed: int) -> TfidfClassifier:
    settings = TfidfSettings(c=tfidf.tfidf_c, class_weight="balanced" if class_weight != "none" else None,
                             word_ngrams=(1, tfidf.tfidf_word_ngrams) if tfidf.tfidf_word_ngrams else None,
                             char_ngrams=(2, tfidf.tfidf_char_ngrams) if tfidf.tfidf_char_ngrams else None)
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


def _train_tfidf(splits, labels, run: Path, tfidf: TfidfArgs, head: ClassifierArgs, split: SplitArgs, seed: int,
                 quiet: bool) -> dict:
    t0 = time.time()
    clf = _fit_tfidf(splits, labels, tfidf, head.class_weight, seed)
    fit_s = time.time() - t0
    clf.save(run)
    ClassifierSpec(kind="tfidf", labels=labels, backbone={"type": "tfidf"}, text_column=split.text_column,
                   label_column=split.label_column).write(run)
    figures = _evaluate_all(clf.predict_proba, splits, labels, run / EVAL_DIR, "", quiet, "TF-IDF")
    return {"kind": "tfidf", "labels": labels, "fit_seconds": round(fit_s, 2), **_flat(figures)}


def _baseline(splits, labels, run: Path, tfidf: TfidfArgs, class_weight: str, seed: int, quiet: bool) -> dict:
    clf = _fit_tfidf(splits, labels, tfidf, class_weight, seed)
    return _flat(_evaluate_all(clf.predict_proba, splits, labels, run / EVAL_DIR, "baseline-", quiet,
                               "TF-IDF baseline"))


def _flat(figures: dict) -> dict:
    return {f"{split}_{k}": m[k] for split, m in figures.items() for k in ("macro_f1", "accuracy", "weighted_f1")}


def _train_neural(model: str, kind: str, splits: dict, labels: list[str], run: Path, ckpt, command_args: dict, *,
                  split: SplitArgs, head: ClassifierArgs, scratch: ScratchArgs, lora: LoraArgs, train: TrainArgs,
                  evals: EvalArgs, ckpts: CheckpointArgs, load: LoadArgs, log: LogArgs, device: str) -> dict:
    device, quiet, four_bit = pick_device(device), log.quiet, lora.qlora
    lora = lora_request(lora)
    if four_bit and kind != "fidan":
        raise BadInput("--qlora loads a transformers causal LM in 4 bits under the adapters; --model is a "
                       f"{kind} model: use --lora-r alone")
    base_dtype = stored_dtype(model, load.load_dtype) if kind == "fidan" else "fp32"
    rate = DEFAULT_LR["fidan" if kind == "fidan" else kind] * (LORA_LR_SCALE if lora else 1.0)
    train_set = splits["train"]
    if head.epochs is not None:
        per_step = train.batch_size * train.grad_accum
        train = dataclasses.replace(train, max_steps=max(1, math.ceil(head.epochs * len(train_set) / per_step)))
    # (a --lr or --muon-lr of 0 takes the default too)
    args = dataclasses.replace(train, lr=train.lr or rate, muon_lr=train.muon_lr or 0.02).settled(
        evals, ckpts, lr=rate, optimizer="adamw", muon_lr=0.02,
        precision=train_precision(train.precision, device, base_dtype, four_bit))
    if ckpt is not None:
        spec = ClassifierSpec.read(run)
        if spec.labels != labels:
            raise BadRunState(f"--resume: the run in {run} was trained on the labels {', '.join(spec.labels)}, "
                              f"not {', '.join(labels)}; start a new run (--force or another --out)")
        if ClassifierSpec.read(ckpt).four_bit:  # the 4-bit base is loaded again; the checkpoint holds what trains
            spec.four_bit = True
            net = PooledClassifier(load_model(spec.base, dtype=load.load_dtype, four_bit=True).model, spec)
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
                              else "fidan", labels=labels, max_length=head.max_length, truncation=head.truncation,
                              pooling=head.pooling, head_dropout=head.head_dropout,
                              base=None if kind == "scratch" else str(model), four_bit=four_bit,
                              text_column=split.text_column, label_column=split.label_column)
        torch.manual_seed(args.seed)  # the head's (and a new model's) starting weights
        try:
            net, codec = new_classifier(model, kind, spec, run, train_set.texts, tokenizer=scratch.tokenizer,
                                        vocab_size=scratch.vocab_size, layers=scratch.layers, width=scratch.width,
                                        dropout=head.dropout, load_dtype=load.load_dtype, four_bit=four_bit)
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
              f"lr {args.lr:g}; {cut} of {len(rows['train'])} training texts reach --max-length {length}")
    counts = [train_set.labels.count(x) for x in labels]
    weights = class_weights(counts, head.class_weight)
    dist = dist_util.init_distributed(device)
    eval_ctx = autocast(device, args.precision) if args.precision != "fp32" else None
    task = ClassifyTask(net.to(dist.device), (rows["train"], _ids(train_set, labels)),
                        (rows.get("val", []), _ids(splits["val"], labels) if "val" in splits else []), labels,
                        codec.pad_id, args, dist, dist.device, weights, head.label_smoothing, head.focal_gamma,
                        eval_ctx, monitor=f"val_{head.select}")
    config = {"fidan_version": __version__, "stage": "classify", "kind": spec.kind, "base_model": spec.base,
              "labels": labels, "classifier": spec.to_dict(), "class_weights": weights,
              "train_texts": len(train_set), "val_texts": len(splits.get("val", []))}
    try:
        summary = fit(task, run, args, evals, ckpts, dist=dist, device=dist.device, resume_from=ckpt,
                      config=config, command_args=command_args, logger=log.logger, quiet=quiet,
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
        return probabilities(predict_logits(net, encoded, codec.pad_id, args.batch_size * 2, dist.device))

    figures = _evaluate_all(predict, splits, labels, run / EVAL_DIR, "", quiet, spec.kind)
    return {"kind": spec.kind, "labels": labels, "step": summary["step"], "best_step": summary["best_step"],
            "stopped": summary["stopped"], "train_seconds": summary["train_seconds"], **_flat(figures)}


def _lora(net, lora) -> None:
    """Adapters on the backbone; the classification head (new, small) trains in full."""
    from fidan.model.lora import apply_lora

    names = {n.rsplit(".", 1)[-1] for n, _ in net.named_modules()}
    apply_lora(net, lora, train_also=tuple(h for h in ("head", "classifier", "score") if h in names)[:1])
