"""Labelled Turkish text: reading (CSV, TSV, JSONL, JSON, Parquet, hf:NAME, the bundled sets), the
stratified seeded split, the label set and its checks, and `fidan classify data`.

Built-in sets: ``builtin:treebank`` (Turkish Web Treebank sentences labelled by source, ``wiki`` or
``web``) and ``builtin:speeches`` (the speeches' texts labelled by kind: konusma, demec, telgraf,
mektup; imbalanced). Labels are always strings; unlabelled input (for prediction) may also be a .txt
file or ``-`` (standard input), one text per line.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fidan.errors import BadInput, MissingExtra
from fidan.runtime.io import atomic_write_json, atomic_write_text, open_text, prepare_out_dir
from fidan.text.bundled import speeches, treebank_sentences

BUILTIN = {"builtin:treebank": "Turkish Web Treebank sentences by source (wiki / web)",
           "builtin:speeches": "Turkish speeches, letters and telegrams by kind (konusma / demec / telgraf / mektup)"}
SPLITS = ("train", "val", "test")


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]
    skipped: int = 0  # rows with an empty text

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))


def _builtin(spec: str) -> Iterator[dict]:
    if spec == "builtin:treebank":
        return ({"text": r["text"], "label": r["section"]} for r in treebank_sentences())
    if spec == "builtin:speeches":
        return ({"text": r["text"], "label": r["kind"]} for r in speeches() if r["text"] and r["text"].strip())
    raise BadInput(f"unknown data set {spec}; the built-in ones are {', '.join(BUILTIN)}")


def _json_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open_text(path) as f:
        if path.suffix == ".json":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix the file") from None
            if not isinstance(rows, list):
                raise BadInput(f"{path} holds a JSON {type(rows).__name__}, not a list of objects; use JSONL or a list")
            yield from enumerate(rows, 1)
            return
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    csv.field_size_limit(1 << 30)
    with open_text(path) as f:
        reader = csv.DictReader(f, delimiter="\t" if ".tsv" in path.suffixes else ",")
        for row in reader:
            yield reader.line_num, row


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("Parquet files need pyarrow: pip install 'fidan[datasets]'") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types
        raise BadInput(f"{path} is not a readable Parquet file ({str(e)[:160]})") from None
    yield from enumerate(table.to_pylist(), 1)


def _hf_rows(spec: str) -> Iterator[tuple[int, dict]]:
    try:
        import datasets
    except ImportError:
        raise MissingExtra("hf: data sets need `datasets`: pip install 'fidan[datasets]'") from None
    name, _, split = spec[3:].partition(":")
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # noqa: BLE001 - the hub raises many types; no hub reachable is the usual one
        raise BadInput(f"cannot load {spec} ({str(e).splitlines()[0][:160]}); is the hub reachable? "
                       "Otherwise export it to a local CSV/JSONL file") from None
    yield from enumerate(ds, 1)


def _lines(path: str) -> Iterator[tuple[int, dict]]:
    stream = sys.stdin if path == "-" else open_text(path)
    with stream if path != "-" else _nullcontext(stream) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, {"text": line.rstrip("\r\n")}


class _nullcontext:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc):
        return False


def _rows(spec: str, unlabelled: bool) -> Iterator[tuple[int, dict]]:
    if spec.startswith("builtin:"):
        return enumerate(_builtin(spec), 1)
    if spec.startswith("hf:"):
        return _hf_rows(spec)
    if spec == "-" and unlabelled:
        return _lines(spec)
    path = Path(spec)
    if path.is_dir() and (path / "train.jsonl").exists():
        path = path / "train.jsonl"
    if not path.exists():
        raise BadInput(f"data not found: {spec}; check the path")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return _json_rows(path)
    if name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        return _csv_rows(path)
    if name.endswith(".parquet"):
        return _parquet_rows(path)
    if name.endswith((".txt", ".txt.gz")) and unlabelled:
        return _lines(str(path))
    kinds = ".csv, .tsv, .jsonl(.gz), .json, .parquet" + (", .txt or -" if unlabelled else "")
    raise BadInput(f"{spec}: unknown file type; use {kinds}, builtin:treebank, builtin:speeches or hf:NAME")


def read_labelled(spec: str | Path, text_column: str = "text", label_column: str | None = "label",
                  what: str = "data") -> Labelled:
    """Texts and labels (``label_column=None``: texts only) of a file or data set; one line per problem."""
    spec = str(spec)
    texts, labels, skipped = [], [], 0
    try:
        for n, row in _rows(spec, label_column is None):
            if not isinstance(row, dict):
                raise BadInput(f"{spec}:{n}: a {type(row).__name__}, not an object with a {text_column!r} field")
            for column, option in ((text_column, "--text-column"), (label_column, "--label-column")):
                if column is not None and column not in row:
                    cols = ", ".join(str(c) for c in row) or "none"
                    kind = "text" if option == "--text-column" else "label"
                    raise BadInput(f"{spec} has no {kind} column {column!r}; its columns are: {cols} (pass {option})")
            text = row[text_column]
            if text is None or not str(text).strip():
                skipped += 1
                continue
            if label_column is not None:
                label = row[label_column]
                if label is None or str(label).strip() == "":
                    raise BadInput(f"{spec}:{n}: empty label; give every text a label or remove the row")
                labels.append(str(label).strip())
            texts.append(str(text))
    except UnicodeDecodeError as e:
        raise BadInput(f"{spec} is not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    except csv.Error as e:
        raise BadInput(f"{spec}: malformed CSV ({e}); fix the file") from None
    if not texts:
        raise BadInput(f"{what} {spec} holds no texts" + (f" ({skipped} empty rows skipped)" if skipped else ""))
    return Labelled(texts, labels, skipped)


def split_labelled(data: Labelled, val_fraction: float, test_fraction: float, seed: int) -> dict[str, Labelled]:
    """Stratified and seeded: each class is shuffled and cut in the same proportions."""
    for name, f in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= f < 1:
            raise BadInput(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1:
        raise BadInput(f"--val-fraction + --test-fraction must be below 1, got {val_fraction + test_fraction}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(data.labels):
        by_label.setdefault(label, []).append(i)
    for label in sorted(by_label):
        idx = by_label[label]
        idx = [idx[j] for j in rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        while n_test + n_val >= len(idx) and (n_test or n_val):  # a tiny class keeps at least one for training
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        parts["test"] += idx[:n_test]
        parts["val"] += idx[n_test:n_test + n_val]
        parts["train"] += idx[n_test + n_val:]
    return {s: Labelled([data.texts[i] for i in sorted(ix)], [data.labels[i] for i in sorted(ix)])
            for s, ix in parts.items()}


def load_splits(data: str, val_data: str | None, test_data: str | None, text_column: str, label_column: str,
                val_fraction: float, test_fraction: float, seed: int) -> tuple[dict[str, Labelled], bool]:
    """train/val/test: given files where there are (a folder's val.jsonl and test.jsonl count), the rest cut
    from ``data``. Returns the splits and whether any were cut here."""
    folder = Path(data) if not str(data).startswith(("builtin:", "hf:")) and Path(data).is_dir() else None
    if folder is not None:
        val_data = val_data or (str(folder / "val.jsonl") if (folder / "val.jsonl").exists() else None)
        test_data = test_data or (str(folder / "test.jsonl") if (folder / "test.jsonl").exists() else None)
    whole = read_labelled(data, text_column, label_column)
    given = {s: read_labelled(p, text_column, label_column, f"{s} data")
             for s, p in (("val", val_data), ("test", test_data)) if p}
    cut = split_labelled(whole, 0 if "val" in given else val_fraction, 0 if "test" in given else test_fraction, seed)
    splits = {"train": cut["train"], "val": given.get("val", cut["val"]), "test": given.get("test", cut["test"])}
    return {s: v for s, v in splits.items() if len(v) or s == "train"}, len(given) < 2


def label_names(train: Labelled, others: Iterable[Labelled] = ()) -> list[str]:
    """The sorted labels of the training data; a single class, or a label unseen in training, is refused."""
    names = sorted(set(train.labels))
    if len(names) < 2:
        only = f" ({names[0]!r})" if names else ""
        raise BadInput(f"only one label{only} in the training data; a classifier needs at least two")
    for other in others:
        unseen = sorted(set(other.labels) - set(names))
        if unseen:
            raise BadInput(f"label {unseen[0]!r} appears in the held-out data but never in the training data "
                           "(an empty class); add training examples of it or drop those rows")
    return names


def check_labels(labels: Iterable[str], known: list[str], where: str) -> None:
    unknown = sorted(set(labels) - set(known))
    if unknown:
        raise BadInput(f"label {unknown[0]!r} in {where} is not one the model knows ({', '.join(known)}); "
                       "evaluate on data with the model's labels, or train a model that has it")


def write_splits(folder: Path, splits: dict[str, Labelled]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        atomic_write_text(folder / f"{name}.jsonl", "".join(
            json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in zip(part.texts, part.labels,
                                                                                       strict=True)))


def classify_data(source: str, out: str, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 1337,
                  text_column: str = "text", label_column: str = "label", force: bool = False) -> dict:
    """Write labelled texts as train/val/test JSONL files with a stratified, seeded split.

    Args:
        source: builtin:treebank (treebank sentences by source, wiki or web), builtin:speeches (speeches by
            kind, imbalanced), a CSV/TSV/JSONL/JSON/Parquet file, or hf:NAME[:SPLIT].
        out: the folder for train.jsonl, val.jsonl, test.jsonl and labels.json.
        val_fraction: share of each label held out for validation.
        test_fraction: share of each label held out for testing.
        seed: seed of the split.
        text_column: the column (or JSON field) holding the text.
        label_column: the column (or JSON field) holding the label.
        force: replace an existing --out folder.
    """
    data = read_labelled(source, text_column, label_column)
    splits = split_labelled(data, val_fraction, test_fraction, seed)
    labels = label_names(splits["train"])
    folder = prepare_out_dir(out, force, "data")
    write_splits(folder, splits)
    summary = {"source": source, "labels": labels, "seed": seed, "fractions": {"val": val_fraction,
                                                                               "test": test_fraction},
               "counts": {s: part.counts() for s, part in splits.items()}, "skipped_empty": data.skipped}
    atomic_write_json(folder / "labels.json", summary)
    print(f"{source}: {len(data):,} texts, {len(labels)} labels → {folder}")
    print("  " + " | ".join(["label".ljust(12), *(s.rjust(6) for s in SPLITS)]))
    for label in labels:
        print("  " + " | ".join([label.ljust(12), *(str(summary["counts"][s].get(label, 0)).rjust(6) for s in SPLITS)]))
    return summary
