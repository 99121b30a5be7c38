"""The TF-IDF baseline: word and character n-grams, logistic regression (scikit-learn).

Texts are lowercased with Turkish rules (``I`` → ``ı``, ``İ`` → ``i``) before either vectorizer sees
them. A fitted model is saved without pickle (loading a pickle runs code): ``tfidf.json`` holds the
settings, labels, vocabularies and idf weights, ``tfidf.npz`` the regression's coefficients, and
``load`` rebuilds the estimators from them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fidan.errors import BadInput, MissingExtra
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
        out.append(TfidfVectorizer(analyzer=analyzer, ngram_range=tuple(ngrams), lowercase=False,
                                   preprocessor=lower_tr, min_df=s.min_df,
                                   token_pattern=r"(?u)\b\w+\b" if analyzer == "word" else None,
                                   max_features=s.max_features, sublinear_tf=s.sublinear_tf, dtype=np.float64,
                                   vocabulary=vocab))
    return out


class TfidfClassifier:
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

        self.vectorizers = _vectorizers(self.settings)
        x = self._features(texts, fit=True)
        self.model = LogisticRegression(C=self.settings.c, class_weight=self.settings.class_weight, max_iter=2000,
                                        random_state=seed)
        self.model.fit(x, y)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """(n, number of labels), columns in ``labels`` order (0 for a label the training data lacked)."""
        out = np.zeros((len(texts), len(self.labels)))
        if texts:
            out[:, self.model.classes_] = self.model.predict_proba(self._features(texts))
        return out

    def save(self, folder: Path) -> None:
        import sklearn

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
            arrays = np.load(folder / ARRAYS_FILE, allow_pickle=False)
            s = meta["settings"]
            settings = TfidfSettings(**{**s, "word_ngrams": tuple(s["word_ngrams"]) if s["word_ngrams"] else None,
                                        "char_ngrams": tuple(s["char_ngrams"]) if s["char_ngrams"] else None})
            clf = cls(meta["labels"], settings)
            clf.vectorizers = _vectorizers(settings, [v["vocabulary"] for v in meta["vectorizers"]])
            for v, saved in zip(clf.vectorizers, meta["vectorizers"], strict=True):
                v.idf_ = np.asarray(saved["idf"], dtype=np.float64)
            model = LogisticRegression(C=settings.c)
            model.coef_, model.intercept_ = arrays["coef"], arrays["intercept"]
            model.classes_ = arrays["classes"]
            model.n_features_in_ = model.coef_.shape[1]
            clf.model = model
        except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
            raise BadInput(f"{folder} holds no readable TF-IDF model ({str(e).splitlines()[0][:160]}); "
                           "train it again with `fidan classify train --model tfidf`") from None
        return clf


def _npz(**arrays: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()
