"""`fidan classify predict` (labels and probabilities for new texts) and `fidan classify eval` (metrics on a
labelled file), for any classifier `fidan classify train` made."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fidan.artifacts.classifier_results import write_predictions
from fidan.classify.build import load_classifier
from fidan.classify.data import check_labels, read_labelled
from fidan.classify.models import ClassifierSpec
from fidan.classify.results import print_metrics, score_split
from fidan.classify.task import predict_logits, probabilities
from fidan.errors import BadInput
from fidan.runtime.device import pick_device
from fidan.runtime.io import prepare_out_dir, require_path

TRAIN_SPLIT = "split/train.jsonl"  # written by `fidan classify train`: the texts it trained on


class Predictor:
    """A loaded classifier: ``probs(texts)`` → (n, k) probabilities in ``labels`` order."""

    def __init__(self, model: str | Path, device: str = "auto", batch_size: int = 32, threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.folder = require_path(model, "classifier", "pass a run folder made by `fidan classify train`")
        self.spec = ClassifierSpec.read(self.folder)
        self.labels, self.batch_size = self.spec.labels, batch_size
        if batch_size <= 0:
            raise BadInput(f"--batch-size must be positive, got {batch_size}")
        if self.spec.kind == "tfidf":
            from fidan.classify.tfidf import TfidfClassifier

            self.tfidf, self.device = TfidfClassifier.load(self.folder), "cpu"
        else:
            self.tfidf = None
            self.device = pick_device(device)
            self.net, self.codec, _ = load_classifier(self.folder, self.device)

    def probs(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)))
        if self.tfidf is not None:
            return self.tfidf.predict_proba(texts)
        length = min(self.spec.max_length, self.net.config.block_size)
        rows = self.codec.encode(texts, length, self.spec.truncation)
        return probabilities(predict_logits(self.net, rows, self.codec.pad_id, self.batch_size, self.device))


def classify_predict(model: str, input: str = "-", out: str | None = None, text_column: str | None = None,
                     batch_size: int = 32, device: str = "auto", threads: int | None = None) -> dict:
    """Label new texts with a trained classifier, with each label's probability.

    Args:
        model: a run folder made by `fidan classify train`.
        input: texts to label: a .txt file (one per line), a CSV/TSV/JSONL/Parquet file (see --text-column),
            or - for standard input (one per line).
        out: write predictions here as JSONL (text, label, probs); default: print them as JSON lines.
        text_column: the column (or JSON field) holding the text in a CSV/TSV/JSONL/Parquet input (default: the
            one the model was trained with).
        batch_size: texts per forward pass.
        device: auto, cpu, cuda or mps.
        threads: CPU threads for torch (default: torch's own choice).
    """
    predictor = Predictor(model, device, batch_size, threads)
    texts = read_labelled(input, text_column or predictor.spec.text_column, None, "input").texts
    t0 = time.time()
    probs = predictor.probs(texts)
    seconds = time.time() - t0
    if out:
        write_predictions(Path(out), texts, predictor.labels, probs)
        print(f"{len(texts):,} texts labelled in {seconds:.2f} s ({len(texts) / max(seconds, 1e-9):,.1f} texts/s) "
              f"→ {out}", file=sys.stderr)
    else:
        for text, p in zip(texts, probs, strict=True):
            best = int(p.argmax())
            print(json.dumps({"text": text, "label": predictor.labels[best],
                              "probs": {n: round(float(x), 6) for n, x in zip(predictor.labels, p, strict=True)}},
                             ensure_ascii=False))
    return {"texts": len(texts), "seconds": round(seconds, 4), "texts_per_s": len(texts) / max(seconds, 1e-9),
            "out": out}


def classify_eval(model: str, data: str, out: str | None = None, text_column: str | None = None,
                  label_column: str | None = None, batch_size: int = 32, device: str = "auto",
                  force: bool = False) -> dict:
    """Measure a trained classifier on labelled texts: accuracy, macro-F1, weighted F1, per-class figures.

    Args:
        model: a run folder made by `fidan classify train`.
        data: labelled texts: a CSV, TSV, JSONL or Parquet file, builtin:treebank, builtin:speeches or hf:NAME.
        out: folder for metrics JSON, predictions and the confusion matrix (default: MODEL/eval/NAME).
        text_column: the column (or JSON field) holding the text (default: the one the model was trained with).
        label_column: the column (or JSON field) holding the label (default: the one the model was trained with).
        batch_size: texts per forward pass.
        device: auto, cpu, cuda or mps.
        force: replace an existing --out folder.
    """
    predictor = Predictor(model, device, batch_size)
    spec = predictor.spec
    labelled = read_labelled(data, text_column or spec.text_column, label_column or spec.label_column, "data")
    check_labels(labelled.labels, predictor.labels, str(data))
    name = Path(str(data).replace(":", "-")).name.split(".")[0] or "data"
    folder = prepare_out_dir(out or Path(model) / "eval" / f"file-{name}", force, "evaluation")
    index = {n: i for i, n in enumerate(predictor.labels)}
    probs = predictor.probs(labelled.texts)
    seen = trained_on(predictor.folder, labelled.texts)
    m = score_split(probs, [index[x] for x in labelled.labels], predictor.labels, labelled.texts, folder, "eval",
                    f"{Path(model).name} · {name}", {"data": str(data), "seen_in_training": seen})
    print_metrics(m, predictor.labels, f"{Path(model).name} on {data}")
    if seen:
        print(f"warning: {seen:,} of {len(labelled.texts):,} texts ({seen / len(labelled.texts):.0%}) are in the "
              "model's training split: those figures measure memory, not generalization; evaluate on its "
              "held-out split (MODEL/split/test.jsonl) or on new texts", file=sys.stderr)
    return {**m, "seen_in_training": seen, "out": str(folder)}


def trained_on(folder: Path, texts: list[str]) -> int:
    """How many of ``texts`` the classifier in ``folder`` was trained on (by hash of the text, spaces
    normalized); 0 when its training split is not kept beside it."""
    root = folder if (folder / TRAIN_SPLIT).exists() else folder.parent.parent
    if not (root / TRAIN_SPLIT).exists():
        return 0
    train = {_key(t) for t in read_labelled(root / TRAIN_SPLIT, "text", None).texts}
    return sum(_key(t) in train for t in texts)


def _key(text: str) -> bytes:
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).digest()
