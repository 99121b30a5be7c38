"""`fidan classify train`'s own settings groups (the shared ones are fidan.training.args'), each declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fidan.classify.models import POOLINGS, TRUNCATIONS
from fidan.classify.task import CLASS_WEIGHTS
from fidan.errors import BadInput
from fidan.training.settings import Group, option


def _fraction(flag: str, value: float) -> None:
    if not 0 <= value < 1:
        raise BadInput(f"--{flag} must be in [0, 1), got {value}")


@dataclass
class SplitArgs(Group, key="split", title="labelled data and its split"):
    val_data: str | None = option(None, "held-out labelled texts for model selection (default: a stratified share "
                                        "of --data).")
    test_data: str | None = option(None, "labelled texts for the final figures (default: a stratified share of "
                                         "--data).")
    text_column: str = option("text", "the column (or JSON field) holding the text.")
    label_column: str = option("label", "the column (or JSON field) holding the label.")
    val_fraction: float = option(0.1, "share of --data held out for validation when --val-data is not given.")
    test_fraction: float = option(0.1, "share of --data held out for testing when --test-data is not given.")

    def check(self) -> None:
        _fraction("val-fraction", self.val_fraction)
        _fraction("test-fraction", self.test_fraction)


@dataclass
class ClassifierArgs(Group, key="classifier", title="the classifier: text length, pooling, loss, selection"):
    epochs: float | None = option(None, "train for this many passes over the training texts (sets --max-steps).")
    max_length: int = option(128, "tokens per text at most (special tokens included); longer texts are truncated.")
    truncation: Literal["head", "tail"] = option("head", "keep the head (start) or the tail (end) of a text longer "
                                                         "than --max-length.")
    pooling: Literal["mean", "last"] = option("mean", "how a causal backbone's hidden states become one vector: "
                                                      "mean, or the last token.")
    class_weight: Literal["none", "balanced", "sqrt"] = option(
        "none", "loss weights per class: none, balanced (n / (k * n_class)) or sqrt (milder).")
    focal_gamma: float = option(0.0, "focal loss exponent (0: plain cross-entropy; 2 is usual).")
    label_smoothing: float = option(0.0, "share of the target spread over all classes (0 to 0.3 is usual).")
    head_dropout: float = option(0.1, "dropout before the classification head.")
    dropout: float | None = option(None, "dropout inside a fidan backbone (default: the backbone's own; 0.1 for "
                                         "--model scratch).")
    select: Literal["macro_f1", "accuracy", "weighted_f1"] = option(
        "macro_f1", "the held-out figure that picks the best weights and drives --patience: macro_f1 (classes weigh "
                    "alike), accuracy (texts weigh alike, as the lyrics guide picks) or weighted_f1.")

    def check(self) -> None:
        _fraction("label-smoothing", self.label_smoothing)
        _fraction("head-dropout", self.head_dropout)
        if self.max_length < 4:
            raise BadInput(f"--max-length must be at least 4, got {self.max_length}")
        if self.epochs is not None and self.epochs <= 0:
            raise BadInput(f"--epochs must be positive, got {self.epochs}")
        if self.focal_gamma < 0:
            raise BadInput(f"--focal-gamma must be >= 0, got {self.focal_gamma}")
        if self.select not in ("macro_f1", "accuracy", "weighted_f1"):
            raise BadInput(f"--select must be macro_f1, accuracy or weighted_f1, got {self.select!r}")
        if self.class_weight not in CLASS_WEIGHTS:
            raise BadInput(f"--class-weight must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weight}")
        if self.truncation not in TRUNCATIONS or self.pooling not in POOLINGS:
            raise BadInput(f"--truncation must be head or tail and --pooling mean or last, got {self.truncation}, "
                           f"{self.pooling}")


@dataclass
class ScratchArgs(Group, key="scratch", title="a model trained from nothing (--model scratch)"):
    tokenizer: str | None = option(None, "--model scratch: a tokenizer folder to use (default: a BPE learned on the "
                                         "training texts).")
    vocab_size: int = option(4000, "--model scratch: vocabulary of the BPE learned on the training texts.")
    layers: int = option(2, "--model scratch: transformer layers.")
    width: int = option(128, "--model scratch: hidden size (heads of 32 dimensions).")

    def check(self) -> None:
        if self.vocab_size < 300 or self.layers < 1 or self.width < 32:
            raise BadInput("--vocab-size must be >= 300, --layers >= 1 and --width >= 32")


@dataclass
class TfidfArgs(Group, key="tfidf", title="the TF-IDF model and baseline"):
    tfidf_c: float = option(10.0, "inverse regularisation strength of the TF-IDF model's logistic regression.")
    tfidf_word_ngrams: int = option(2, "the TF-IDF model uses word n-grams up to this n (0: none).")
    tfidf_char_ngrams: int = option(5, "the TF-IDF model uses character n-grams from 2 up to this n (0: none).")
    baseline: bool = option(True, "also fit the TF-IDF baseline on the same split and report it beside a neural "
                                  "model.")

    def check(self) -> None:
        if self.tfidf_c <= 0:
            raise BadInput(f"--tfidf-c must be positive, got {self.tfidf_c}")
        if not (0 <= self.tfidf_word_ngrams <= 4 and self.tfidf_char_ngrams in (0, 2, 3, 4, 5, 6, 7, 8)) or \
                not (self.tfidf_word_ngrams or self.tfidf_char_ngrams):
            raise BadInput("--tfidf-word-ngrams must be 0-4 and --tfidf-char-ngrams 0 or 2-8, not both 0")
