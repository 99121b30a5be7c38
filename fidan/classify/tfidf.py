"""The TF-IDF baseline: word and character n-grams, logistic regression (scikit-learn).

Texts are lowercased with Turkish rules (``I`` → ``ı``, ``İ`` → ``i``; ``str.lower`` would give ``i`` and
``i̇``) before either vectorizer sees them. A fitted model is saved without pickle (loading a pickle runs code): ``tfidf.json`` holds the
settings, labels, vocabularies and idf weights, ``tfidf.npz`` the regression's coefficients, and
``load`` rebuilds the estimators from them.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fidan.errors import BadInput, FidanError, MissingExtra
from fidan.runtime.io import atomic_write_bytes, atomic_write_json
from fidan.text.turkish import lower_tr

JSON_FILE, ARRAYS_FILE = "tfidf.json", "tfidf.npz"


@dataclass
class TfidfSettings:
    word_ngrams: tuple[int, int] | None = (1, 2)  # None: no word features
    char_ngrams: tuple[int, int] | None = (2, 5)  # within word boundaries (char_wb); None: none
    max_features: int = 200_000  # per vectorizer
    min_df: int = 1
    c: float = 10.0  # inverse regularisation strength of the logistic regression
    class_weight: str | None = None  # None or "balanced"
    sublinear_tf: bool = True
    lowercase: bool = True  # with Turkish rules


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingExtra("the TF-IDF model needs scikit-learn: pip install 'fidan[classify]'") from None


def _vectorizers(s: TfidfSettings, vocabularies: list[dict] | None = None) -> list:
    from sklearn.feature_extraction.text import TfidfVectorizer

    kinds = [("word", s.word_ngrams), ("char_wb", s.char_ngrams)]
    out = []
    for analyzer, ngrams in kinds:
        if ngrams is None:
            continue
        vocab = vocabularies[len(out)] if vocabularies is not None else None
        # sklearn's own lowercasing is str.lower, so it stays off and lower_tr is the preprocessor.
        out.append(TfidfVectorizer(analyzer=analyzer, ngram_range=tuple(ngrams), lowercase=False,
                                   preprocessor=lower_tr if s.lowercase else None, min_df=s.min_df,
                                   token_pattern=r"(?u)\b\w+\b" if analyzer == "word" else None,
                                   max_features=s.max_features, sublinear_tf=s.sublinear_tf, dtype=np.float64,
                                   vocabulary=vocab))
    return out


class TfidfClassifier:
    """Word + character TF-IDF features and a logistic regression; ``y`` are indices into ``labels``."""

    def __init__(self, labels: list[str], settings: TfidfSettings | None = None):
        _sklearn()
        self.labels, self.settings = list(labels), settings or TfidfSettings()
        if self.settings.word_ngrams is None and self.settings.char_ngrams is None:
            raise BadInput("the TF-IDF model needs word or character n-grams (or both)")
        self.vectorizers: list = []
        self.model = None

    def _features(self, texts: list[str], fit: bool = False):
        from scipy.sparse import hstack

        parts = [v.fit_transform(texts) if fit else v.transform(texts) for v in self.vectorizers]
        return hstack(parts).tocsr()

    def fit(self, texts: list[str], y: list[int], seed: int = 0) -> TfidfClassifier:
        from sklearn.linear_model import LogisticRegression

        if len(texts) != len(y):
            raise BadInput(f"TF-IDF fit got {len(texts)} texts but {len(y)} labels; give one label per text")
        if any(not 0 <= i < len(self.labels) for i in y):
            raise BadInput(f"TF-IDF fit: label indices must be in 0..{len(self.labels) - 1} (one per label name)")
        if len(set(y)) < 2:
            raise BadInput(f"TF-IDF fit needs texts of at least two labels, got {len(set(y))}; add texts of "
                           "another label")
        self.vectorizers = _vectorizers(self.settings)
        try:
            x = self._features(texts, fit=True)
        except ValueError as e:  # every text empty or punctuation, or min_df above every count
            raise BadInput(f"TF-IDF fit found no features in {len(texts)} texts ({e}); give texts with words "
                           "or lower min_df") from None
        self.model = LogisticRegression(C=self.settings.c, class_weight=self.settings.class_weight, max_iter=2000,
                                        random_state=seed)
        self.model.fit(x, y)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n, number of labels), columns in ``labels`` order (0 for a label the training data lacked)."""
        if self.model is None:
            raise FidanError("this TF-IDF classifier is not fitted; call fit() or load() first")
        out = np.zeros((len(texts), len(self.labels)))
        if len(texts):
            out[:, self.model.classes_] = self.model.predict_proba(self._features(texts))
        return out

    def save(self, folder: Path) -> None:
        import sklearn

        if self.model is None:
            raise FidanError("this TF-IDF classifier is not fitted; call fit() before save()")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"settings": asdict(self.settings), "labels": self.labels, "sklearn": sklearn.__version__,
                "vectorizers": [{"vocabulary": {t: int(i) for t, i in v.vocabulary_.items()},
                                 "idf": v.idf_.tolist()} for v in self.vectorizers]}
        atomic_write_json(folder / JSON_FILE, meta)
        buf = _npz(coef=self.model.coef_, intercept=self.model.intercept_, classes=self.model.classes_)
        atomic_write_bytes(folder / ARRAYS_FILE, buf)

    @classmethod
    def load(cls, folder: Path) -> TfidfClassifier:
        from sklearn.linear_model import LogisticRegression

        folder = Path(folder)
        try:
            meta = json.loads((folder / JSON_FILE).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:  # object arrays are refused
                arrays = {k: npz[k] for k in ("coef", "intercept", "classes")}
            s = meta["settings"]
            settings = TfidfSettings(**{**s, "word_ngrams": tuple(s["word_ngrams"]) if s["word_ngrams"] else None,
                                        "char_ngrams": tuple(s["char_ngrams"]) if s["char_ngrams"] else None})
            clf = cls(meta["labels"], settings)
            clf.vectorizers = _vectorizers(settings, [v["vocabulary"] for v in meta["vectorizers"]])
            for v, saved in zip(clf.vectorizers, meta["vectorizers"], strict=True):
                v.idf_ = np.asarray(saved["idf"], dtype=np.float64)
            _check_arrays(arrays, sum(len(v.vocabulary_) for v in clf.vectorizers), len(clf.labels))
            # What predict_proba reads; a fresh estimator with these set predicts exactly as the fitted one.
            model = LogisticRegression(C=settings.c)
            model.coef_, model.intercept_ = arrays["coef"], arrays["intercept"]
            model.classes_ = arrays["classes"]
            model.n_features_in_ = model.coef_.shape[1]
            clf.model = model
        except (OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile, BadInput) as e:
            why = (str(e).splitlines() or [type(e).__name__])[0][:160]
            raise BadInput(f"{folder} holds no readable TF-IDF model ({why}); "
                           "train it again with `fidan classify train --model tfidf`") from None
        return clf


def _check_arrays(arrays: dict, n_features: int, n_labels: int) -> None:
    coef, intercept, classes = arrays["coef"], arrays["intercept"], arrays["classes"]
    rows = 1 if len(classes) == 2 else len(classes)  # a binary regression keeps one row
    if classes.dtype.kind not in "iu" or len(classes) < 2 or classes.min() < 0 or classes.max() >= n_labels:
        raise ValueError(f"classes {classes.tolist()[:8]} do not index the {n_labels} labels")
    if coef.shape != (rows, n_features) or intercept.shape != (rows,):
        raise ValueError(f"coefficients {coef.shape} and intercept {intercept.shape} do not fit "
                         f"{len(classes)} classes x {n_features} features")


def _npz(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
