"""Labelled Turkish text: reading (CSV, TSV, JSONL, JSON, Parquet, hf:NAME, the bundled sets), the
stratified seeded split, the label set and its checks, and `fidan classify data`.

Built-in sets: ``builtin:treebank`` (Turkish Web Treebank sentences labelled by source, ``wiki`` or
``web``) and ``builtin:speeches`` (the speeches' texts labelled by kind: konusma, demec, telgraf,
mektup; imbalanced). Labels are always strings; unlabelled input (for prediction) may also be a .txt
file or ``-`` (standard input), one text per line.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import math
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
LABELLED_KINDS = ".csv, .tsv, .jsonl, .jsonl.gz, .json, .parquet"
BOM = "\ufeff"  # Excel and Notepad start "UTF-8" files with it

Row = tuple[int, object]  # (line or record number, the record)


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]  # empty for unlabelled input
    skipped: int = 0  # rows with an empty text
    source: str = ""  # what and where, for messages: "val data v.csv"

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items()))


# --- readers: each yields (line, record) ---

def _builtin(spec: str) -> Iterator[Row]:
    if spec == "builtin:treebank":
        rows = ({"text": r["text"], "label": r["section"]} for r in treebank_sentences())
    elif spec == "builtin:speeches":  # some speeches have no Turkish body: read_labelled counts them as skipped
        rows = ({"text": r["text"], "label": r["kind"]} for r in speeches())
    else:
        raise BadInput(f"unknown data set {spec}; the built-in ones are {', '.join(BUILTIN)}")
    return enumerate(rows, 1)


def _json_rows(path: Path) -> Iterator[Row]:
    lines = path.name.lower().endswith((".jsonl", ".jsonl.gz"))
    with open_text(path) as f:
        if not lines:  # .json: one list of objects
            try:
                rows = json.loads(f.read().removeprefix(BOM))
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix the file") from None
            if not isinstance(rows, list):
                raise BadInput(f"{path} holds a JSON {type(rows).__name__}, not a list of objects; "
                               "give a list of objects, or one object per line (.jsonl)")
            yield from enumerate(rows, 1)
            return
        for n, line in enumerate(f, 1):
            if n == 1:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None


def _csv_rows(path: Path) -> Iterator[Row]:
    csv.field_size_limit(2**31 - 1)  # the default 128 KiB would refuse one long text
    with open_text(path) as f:
        first = f.readline().removeprefix(BOM)
        delimiter = "\t" if ".tsv" in path.suffixes else ","
        if delimiter == "," and ";" in first and "," not in first:
            delimiter = ";"  # a Turkish-locale Excel export
        reader = csv.reader(itertools.chain([first], f), delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        start = reader.line_num + 1
        for fields in reader:
            if fields:
                if len(fields) != len(header):
                    raise BadInput(f"{path}:{start}: {len(fields)} fields where the header has {len(header)}; "
                                   f"quote texts that hold a {delimiter!r} or a line break")
                yield start, dict(zip(header, fields, strict=True))
            start = reader.line_num + 1


def _parquet_rows(path: Path, columns: list[str]) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra("Parquet files need pyarrow; install it with: pip install 'fidan[datasets]'") from None
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        # Read only the columns asked for; a missing one is reported by read_labelled, with all the names.
        table = pf.read(columns=columns) if set(columns) <= set(names) else None
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for damaged files
        raise BadInput(f"{path} is not a readable Parquet file ({type(e).__name__}: {str(e)[:160]}); "
                       "re-export it") from None
    if table is None:
        yield 1, dict.fromkeys(names)
        return
    yield from enumerate(table.to_pylist(), 1)


def _hf_rows(spec: str) -> Iterator[Row]:
    name, _, split = spec[3:].partition(":")
    if not name:
        raise BadInput(f"{spec}: name a data set, e.g. hf:NAME or hf:NAME:SPLIT")
    try:
        import datasets
    except ImportError:
        raise MissingExtra("hf: data sets need `datasets`; install it with: pip install 'fidan[datasets]'") from None
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # noqa: BLE001 - the hub raises many types; no hub reachable is the usual one
        lines = str(e).strip().splitlines()
        why = f"{type(e).__name__}: {lines[0][:160]}" if lines else type(e).__name__
        raise BadInput(f"cannot load {spec} ({why}); check the name and split and that the Hugging Face hub "
                       "is reachable, or export the data to a local CSV/JSONL file") from None
    yield from enumerate(ds, 1)


def _text_lines(path: Path) -> Iterator[Row]:
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            line = line.removeprefix(BOM) if n == 1 else line
            if line.strip():
                yield n, {"text": line.rstrip("\r\n")}


def _stdin_lines() -> Iterator[Row]:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a replaced stdin (tests, notebooks) is text already
        text = sys.stdin.read()
    else:
        raw = buffer.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[:e.start].count(b"\n") + 1
            raise BadInput(f"standard input, line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); "
                           "send UTF-8") from None
    for n, line in enumerate(text.removeprefix(BOM).splitlines(), 1):
        if line.strip():
            yield n, {"text": line}


def _rows(spec: str, columns: list[str], what: str) -> Iterator[Row]:
    unlabelled = len(columns) == 1
    if spec.startswith("builtin:"):
        return _builtin(spec)
    if spec.startswith("hf:"):
        return _hf_rows(spec)
    if spec == "-" and unlabelled:
        return _stdin_lines()
    path = Path(spec)
    if path.is_dir():
        if not (path / "train.jsonl").is_file():
            raise BadInput(f"{spec} is a folder without train.jsonl; pass a file, or a folder written by "
                           "`fidan classify data`")
        path = path / "train.jsonl"
    if not path.exists():
        raise BadInput(f"{what} not found: {spec}; check the path")
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return _json_rows(path)
    if name.endswith((".csv", ".tsv", ".csv.gz", ".tsv.gz")):
        return _csv_rows(path)
    if name.endswith(".parquet"):
        return _parquet_rows(path, columns)
    if name.endswith((".txt", ".txt.gz")):
        if unlabelled:
            return _text_lines(path)
        raise BadInput(f"{spec}: a .txt file holds texts without labels; give a {LABELLED_KINDS} file "
                       "with a text and a label column")
    kinds = LABELLED_KINDS + (", .txt or -" if unlabelled else "")
    raise BadInput(f"{spec}: unknown file type; use {kinds}, builtin:treebank, builtin:speeches or hf:NAME")


def _first_bad_line(path: Path) -> str:
    """Where a file stops being UTF-8: the decoder's own offset counts from its last buffer, not the file."""
    path = path / "train.jsonl" if path.is_dir() else path
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for n, line in enumerate(f, 1):  # a UTF-8 sequence never holds the byte \n, so lines split cleanly
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"{path}:{n}: not UTF-8 text (byte 0x{line[e.start]:02x})"
    return f"{path}: not UTF-8 text"


def _label(value: object, spec: str, n: int) -> str:
    if isinstance(value, bool):
        return json.dumps(value)  # true / false, as a CSV would spell them
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))  # 1.0 from a Parquet file with gaps is the label 1
    if isinstance(value, float) and math.isnan(value):
        value = None
    if isinstance(value, dict | list):
        raise BadInput(f"{spec}:{n}: the label is a {type(value).__name__}, not a string or a number; "
                       "give one label per text")
    label = "" if value is None else str(value).strip()
    if not label:
        raise BadInput(f"{spec}:{n}: empty label; give every text a label or remove the row")
    return label


def read_labelled(spec: str | Path, text_column: str = "text", label_column: str | None = "label",
                  what: str = "data") -> Labelled:
    """Texts and labels (``label_column=None``: texts only) of a file or data set; one line per problem."""
    spec = str(spec)
    columns = [text_column] + ([label_column] if label_column is not None else [])
    texts, labels, skipped = [], [], 0
    try:
        for i, (n, row) in enumerate(_rows(spec, columns, what)):
            if not isinstance(row, dict):
                raise BadInput(f"{spec}:{n}: a {type(row).__name__}, not an object with a {text_column!r} field")
            for column, kind, option in ((text_column, "text", "--text-column"),
                                         (label_column, "label", "--label-column")):
                if column is not None and column not in row:
                    cols = ", ".join(str(c) for c in row) or "none"
                    where = spec if i == 0 else f"{spec}:{n}"  # a later row lacking it: say which
                    raise BadInput(f"{where} has no {kind} column {column!r}; its columns are: {cols} (pass {option})")
            text = row[text_column]
            if isinstance(text, dict | list):
                raise BadInput(f"{spec}:{n}: the text is a {type(text).__name__}, not a string; "
                               f"point --text-column at a column of texts")
            if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
                skipped += 1
                continue
            if label_column is not None:
                labels.append(_label(row[label_column], spec, n))
            texts.append(str(text))
    except UnicodeDecodeError:
        raise BadInput(f"{_first_bad_line(Path(spec))}; re-save the file as UTF-8") from None
    except csv.Error as e:
        raise BadInput(f"{spec}: malformed CSV ({e}); fix the file") from None
    except (EOFError, gzip.BadGzipFile) as e:
        raise BadInput(f"{spec} is a damaged gzip file ({e}); download or compress it again") from None
    except (IsADirectoryError, PermissionError) as e:
        raise BadInput(f"cannot read {spec} ({e.strerror}); check the path and its permissions") from None
    if not texts:
        empty = f" ({skipped} rows with an empty text skipped)" if skipped else ""
        raise BadInput(f"{what} {spec} holds no texts{empty}; give a header row and rows with a {text_column!r} text")
    return Labelled(texts, labels, skipped, f"{what} {spec}")


# --- splits and labels ---

def split_labelled(data: Labelled, val_fraction: float, test_fraction: float, seed: int) -> dict[str, Labelled]:
    """Stratified and seeded: each class is shuffled and cut in the same proportions; every class keeps at
    least one example for training. Rows keep their original order within each split."""
    for name, f in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= f < 1:
            raise BadInput(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1:
        raise BadInput(f"--val-fraction + --test-fraction must be below 1, got {val_fraction + test_fraction:g}")
    if len(data.labels) != len(data.texts):
        raise BadInput(f"{data.source or 'the data'} has no labels to split by; give a label column")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(data.labels):
        by_label.setdefault(label, []).append(i)
    for label in sorted(by_label):  # a fixed order, so the generator's draws do not depend on the file's order
        idx = by_label[label]
        idx = [idx[j] for j in rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        while n_test + n_val >= len(idx) and (n_test or n_val):  # a tiny class keeps one for training
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        parts["test"] += idx[:n_test]
        parts["val"] += idx[n_test:n_test + n_val]
        parts["train"] += idx[n_test + n_val:]
    where = f" of {data.source}" if data.source else ""
    return {s: Labelled([data.texts[i] for i in sorted(ix)], [data.labels[i] for i in sorted(ix)],
                        source=f"{s} split{where}") for s, ix in parts.items()}


def load_splits(data: str, val_data: str | None, test_data: str | None, text_column: str, label_column: str,
                val_fraction: float, test_fraction: float, seed: int) -> tuple[dict[str, Labelled], bool]:
    """train/val/test: given files where there are (a folder's val.jsonl and test.jsonl count), the rest cut
    from ``data``. Empty splits are left out. Returns the splits and whether any were cut here."""
    data = str(data)
    given: dict[str, Labelled] = {}
    folder = Path(data) if not data.startswith(("builtin:", "hf:")) and Path(data).is_dir() else None
    if folder is not None:  # a folder written by `fidan classify data`; an empty file is an empty split
        for s, p in (("val", val_data), ("test", test_data)):
            if p is None and (folder / f"{s}.jsonl").is_file() and (folder / f"{s}.jsonl").stat().st_size == 0:
                given[s] = Labelled([], [], source=f"{s} data {folder / f'{s}.jsonl'}")
        val_data = val_data or (str(folder / "val.jsonl") if (folder / "val.jsonl").is_file() else None)
        test_data = test_data or (str(folder / "test.jsonl") if (folder / "test.jsonl").is_file() else None)
    whole = read_labelled(data, text_column, label_column)
    for s, p in (("val", val_data), ("test", test_data)):
        if p and s not in given:
            given[s] = read_labelled(p, text_column, label_column, f"{s} data")
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
            raise BadInput(f"label {unseen[0]!r} appears in the {other.source or 'held-out data'} but never in the "
                           "training data (an empty class); add training examples of it or drop those rows")
    return names


def check_labels(labels: Iterable[str], known: list[str], where: str) -> None:
    unknown = sorted(set(labels) - set(known))
    if unknown:
        raise BadInput(f"label {unknown[0]!r} in {where} is not one the model knows ({', '.join(known)}); "
                       "evaluate on data with the model's labels, or train a model that has it")


def write_splits(folder: Path, splits: dict[str, Labelled]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        rows = zip(part.texts, part.labels, strict=True)
        atomic_write_text(folder / f"{name}.jsonl", "".join(
            json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows))


def _table(labels: list[str], counts: dict[str, dict[str, int]]) -> list[str]:
    width = max(len("label"), len("total"), *(len(x) for x in labels))
    cols = [max(6, len(f"{sum(counts[s].values()):,}")) for s in SPLITS]

    def line(name: str, values: list[str]) -> str:
        return "  " + " | ".join([name.ljust(width), *(v.rjust(w) for v, w in zip(values, cols, strict=True))])

    rows = [line("label", list(SPLITS))]
    rows += [line(x, [f"{counts[s].get(x, 0):,}" for s in SPLITS]) for x in labels]
    return rows + [line("total", [f"{sum(counts[s].values()):,}" for s in SPLITS])]


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
    # Read, split and check everything before the folder is touched: a bad source writes nothing.
    data = read_labelled(source, text_column, label_column)
    splits = split_labelled(data, val_fraction, test_fraction, seed)
    labels = label_names(splits["train"])
    folder = prepare_out_dir(out, force, "data")
    write_splits(folder, splits)
    summary = {"source": str(source), "labels": labels, "seed": seed,
               "fractions": {"val": val_fraction, "test": test_fraction},
               "counts": {s: part.counts() for s, part in splits.items()}, "skipped_empty": data.skipped}
    atomic_write_json(folder / "labels.json", summary)
    skipped = f"; {data.skipped:,} empty texts skipped" if data.skipped else ""
    print(f"{source}: {len(data):,} texts, {len(labels)} labels{skipped} → {folder}")
    print("\n".join(_table(labels, summary["counts"])))
    return summary
