"""`fidan data prepare`: stream sources → clean → drop short and duplicate documents → quality filters →
split → shards."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from fidan import __version__
from fidan.artifacts.schema import stamp
from fidan.corpus.hub import parse as parse_hub
from fidan.corpus.neardup import NearDuplicates
from fidan.corpus.quality import QualityFilter, not_run, resolve
from fidan.corpus.sources import iter_source
from fidan.errors import BadInput
from fidan.runtime.io import as_list, atomic_dir, atomic_write_json, prepare_out_dir, sha256_file
from fidan.runtime.lock import locks_out
from fidan.text.turkish import normalize_text

SPLIT_RULE = "blake2b-64(cleaned document text) mod 1,000,000 < val_fraction * 1,000,000 → val, else train"
SHARD_CHARS = 50_000_000
REMOVED_SAMPLE = "removed.jsonl"  # a sample of what each quality filter removed, for `fidan data inspect`


def split_of(text: str, val_fraction: float) -> str:
    """Stable, content-based split: the same document always lands in the same split (none in val at 0)."""
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return "val" if (h % 1_000_000) < val_fraction * 1_000_000 else "train"


class _ShardWriter:
    """Writes JSONL shards (one {"text": ...} per line), rolling over at a size limit."""

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split
        self.index, self.chars, self.file = 0, 0, None
        self.files: list[Path] = []
        self.docs = self.total_chars = self.bytes = 0

    def write(self, text: str) -> None:
        if self.file is None or self.chars >= SHARD_CHARS:
            self._open_next()
        self.file.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
        self.chars += len(text)
        self.docs += 1
        self.total_chars += len(text)
        self.bytes += len(text.encode("utf-8"))

    def _open_next(self) -> None:
        self.close()
        path = self.folder / f"{self.split}-{self.index:05d}.jsonl"
        self.files.append(path)
        self.file = open(path, "w", encoding="utf-8")
        self.index += 1
        self.chars = 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


@locks_out("data")
def prepare_data(
    source: list[str] | str,
    out: str,
    val_fraction: float = 0.05,
    min_chars: int = 20,
    text_field: str = "text",
    near_dup: float = 0.0,
    quality: bool = True,
    skip_filter: list[str] | None = None,
    quality_set: list[str] | None = None,
    force: bool = False,
) -> dict:
    """Load, clean, deduplicate and split a corpus into a data folder.

    Args:
        source: a built-in source (tr-speeches, tr-treebank), a .txt/.jsonl/.jsonl.gz/.csv/.parquet
            file or a folder of them, or hf:NAME[:CONFIG][?split=&field=&max_docs=&max_bytes=] for a Hugging
            Face dataset, streamed (e.g. hf:uonlp/CulturaX:tr?max_docs=100000); repeat for several.
        out: the data folder to write (manifest.json and text shards).
        val_fraction: share of documents held out for validation, chosen by a hash of their text; 0 holds
            none out (an empty val split, recorded in the manifest).
        min_chars: documents shorter than this after cleaning are dropped.
        text_field: the field or column holding the text in .jsonl, .csv, .parquet and HF sources.
        near_dup: also drop near-duplicates: documents whose estimated Jaccard similarity (MinHash over
            character 5-grams) to a kept document is at least this (0: off; 0.5 is a good start).
        quality: run the quality filters (numeric_lines, repeated_lines, word_length, symbols, ellipsis_lines,
            repetition, stop_words, language, placeholder, code; see docs/data.md); --no-quality turns them all
            off. The language filter runs where lingua-language-detector is installed (the `quality` extra).
        skip_filter: a quality filter to turn off, by name; repeat for several.
        quality_set: a quality filter setting, NAME.SETTING=VALUE (e.g. stop_words.min_count=3,
            language.min_confidence=0.7); repeatable.
        force: replace an existing non-empty output folder.
    """
    source = [str(s) for s in as_list(source)]
    if not source:
        raise BadInput("no --source given; e.g. --source tr-speeches --source my_texts/")
    if not 0.0 <= val_fraction < 1.0:
        raise BadInput(f"--val-fraction must be at least 0 and below 1, got {val_fraction}; 0 holds out nothing")
    out_path = Path(out)
    near = NearDuplicates(near_dup) if near_dup else None
    filters = QualityFilter(resolve(quality, as_list(skip_filter), as_list(quality_set)))
    skipped = not_run(quality, as_list(skip_filter))
    for name, why in skipped.items():
        print(f"data: quality filter {name} {why}; pass --skip-filter {name} to silence this")
    # Validate every source before touching the output folder.
    streams = [(spec, iter_source(spec, text_field)) for spec in source]
    if out_path.exists() and any(out_path.iterdir()) and not force:
        prepare_out_dir(out_path, force=False, what="data")
    start = time.time()
    seen: set[bytes] = set()  # 8-byte digests: ~60 bytes per document, not the text itself
    stats = {"read": 0, "too_short": 0, "duplicates": 0, "low_quality": 0}
    per_source: dict[str, dict] = {}
    if filters.needs_line_counts:  # a first pass counts lines across documents; the sources are read again
        _count_lines(filters, streams, min_chars)
        streams = [(spec, iter_source(spec, text_field)) for spec in source]
    with atomic_dir(out_path) as tmp:
        writers = {s: _ShardWriter(tmp, s) for s in ("train", "val")}
        bar = tqdm(desc="documents", unit="doc", dynamic_ncols=True)
        try:
            for spec, docs in streams:
                counts = per_source.setdefault(spec, {"read": 0, "kept": 0, **_hub_settings(spec)})
                for raw in docs:
                    stats["read"] += 1
                    counts["read"] += 1
                    bar.update()
                    text = normalize_text(raw)
                    if len(text) < min_chars:
                        stats["too_short"] += 1
                        continue
                    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
                    if digest in seen:
                        stats["duplicates"] += 1
                        continue
                    seen.add(digest)
                    filtered = filters.apply(text, min_chars)
                    if filtered is None:
                        stats["low_quality"] += 1
                        continue
                    if filtered != text:  # lines removed: the rest may now copy a kept document
                        digest = hashlib.blake2b(filtered.encode("utf-8"), digest_size=8).digest()
                        if digest in seen:
                            stats["duplicates"] += 1
                            continue
                        seen.add(digest)
                        text = filtered
                    if near is not None and near.seen(text):
                        stats["near_duplicates"] = stats.get("near_duplicates", 0) + 1
                        continue
                    counts["kept"] += 1
                    writers[split_of(text, val_fraction)].write(text)
        finally:
            bar.close()
            for w in writers.values():
                w.close()
        if writers["train"].docs == 0:
            raise BadInput(
                f"the corpus from {', '.join(source)} is empty after cleaning ({stats['read']} documents read, "
                f"{stats['too_short']} shorter than --min-chars {min_chars}, {stats['duplicates']} duplicates, "
                f"{stats['low_quality']} removed by quality filters{_by_filter(filters)}); check the sources, "
                "lower --min-chars, or turn filters off with --skip-filter NAME or --no-quality"
            )
        if writers["val"].docs == 0 and val_fraction > 0:
            raise BadInput(
                f"no document fell into the validation split ({writers['train'].docs} documents); "
                "add more documents, raise --val-fraction, or pass --val-fraction 0 to hold out nothing"
            )
        manifest = {
            "fidan_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "sources": [{"spec": s, **c} for s, c in per_source.items()],
            "cleaning": {
                "unicode": "NFC",
                "control_characters": "removed (newline and tab kept)",
                "whitespace": "runs collapsed, lines trimmed, at most one blank line",
                "min_chars": min_chars,
                "dedup": "exact, on cleaned text",
                **({"near_dup": {"method": "MinHash (128 permutations) over character 5-grams, LSH candidates, "
                                           "estimated Jaccard >= threshold; the first of a cluster is kept",
                                 "threshold": near_dup}} if near else {}),
            },
            "split_rule": SPLIT_RULE,
            "val_fraction": val_fraction,
            "quality": ({"enabled": True, "filters": filters.report(), "removed_sample": REMOVED_SAMPLE,
                         **({"not_run": skipped} if skipped else {})}
                        if filters.settings else {"enabled": False}),
            "dropped": {"too_short": stats["too_short"], "duplicates": stats["duplicates"],
                        **({"low_quality": stats["low_quality"]} if filters.settings else {}),
                        **({"near_duplicates": stats.get("near_duplicates", 0)} if near else {})},
            "documents_read": stats["read"],
            "splits": {
                s: {
                    "documents": w.docs,
                    "characters": w.total_chars,
                    "bytes": w.bytes,
                    "files": [{"name": p.name, "sha256": sha256_file(p)} for p in w.files],
                }
                for s, w in writers.items()
            },
            "seconds": round(time.time() - start, 2),
        }
        if filters.settings:
            _write_samples(tmp / REMOVED_SAMPLE, filters)
        manifest = stamp("data", manifest)
        atomic_write_json(tmp / "manifest.json", manifest)
    sp = manifest["splits"]
    print(
        f"data: {sp['train']['documents']} train / {sp['val']['documents']} val documents, "
        f"{sp['train']['characters'] + sp['val']['characters']:,} characters "
        f"({stats['too_short']} short and {stats['duplicates']} duplicate documents dropped"
        + (f", {stats['low_quality']} by quality filters{_by_filter(filters)}" if filters.settings else "")
        + (f", {stats.get('near_duplicates', 0)} near-duplicates" if near else "") + f") → {out_path}"
    )
    return manifest


def _hub_settings(spec: str) -> dict:
    """For an hf: source, its parsed name, config, split, field and caps, for the manifest."""
    return {"hf": parse_hub(spec).describe()} if spec.startswith("hf:") else {}


def _count_lines(filters: QualityFilter, streams: list, min_chars: int) -> None:
    """The first pass for repeated_lines: count each line over the distinct documents that will be kept."""
    seen: set[bytes] = set()
    with tqdm(desc="counting lines", unit="doc", dynamic_ncols=True) as bar:
        for _, docs in streams:
            for raw in docs:
                bar.update()
                text = normalize_text(raw)
                digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
                if len(text) >= min_chars and digest not in seen:
                    seen.add(digest)
                    filters.count_lines(text)
    filters.finish_counting()


def _by_filter(filters: QualityFilter) -> str:
    parts = [f"{n} {r.documents} documents/{r.lines} lines" for n, r in filters.removed.items() if r.documents or r.lines]
    return f": {', '.join(parts)}" if parts else ""


def _write_samples(path: Path, filters: QualityFilter) -> None:
    """Up to ``sample_size`` removed texts per filter, one {"filter", "text"} record a line."""
    with open(path, "w", encoding="utf-8") as f:
        for name, texts in filters.samples.items():
            for text in texts:
                f.write(json.dumps({"filter": name, "text": text}, ensure_ascii=False) + "\n")
