"""`fidan data prepare`: stream sources → clean → drop short and duplicate documents → quality filters →
split → shards, in passes over units of work (fidan/corpus/passes.py) that run in worker processes here
or as tasks of a datatrove executor on a cluster (fidan/corpus/cluster.py)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np

from fidan import __version__
from fidan.artifacts.schema import stamp
from fidan.corpus import pool
from fidan.corpus.hub import parse as parse_hub
from fidan.corpus.neardup import BANDS, DEFAULT_THRESHOLD, NUM_PERM, SHINGLE, NearDuplicates
from fidan.corpus.passes import SPLIT_RULE, Settings, filter_unit, plan, scan_unit, split_of  # noqa: F401
from fidan.corpus.quality import QualityFilter, not_run, resolve
from fidan.corpus.sources import BUILTIN, builtin_sample
from fidan.corpus.units import list_units
from fidan.errors import BadInput
from fidan.runtime.console import speaks
from fidan.runtime.io import as_list, atomic_dir, atomic_write_json, prepare_out_dir
from fidan.runtime.lock import locks_out

SHARD_CHARS = 50_000_000
REMOVED_SAMPLE = "removed.jsonl"  # a sample of what each quality filter removed, for `fidan data inspect`
SKIPPED = "skipped.json"  # in a unit's scan folder: the unit could not be read and --skip-bad-files was given


class _ShardWriter:
    """Writes JSONL shards (one {"text": ..., "source": ...} per line, as the filter pass serialized them),
    rolling over at a size limit; each shard's sha256 is taken as it is written."""

    def __init__(self, folder: Path, split: str):
        self.folder, self.split = folder, split
        self.index, self.chars, self.file, self.hash = 0, 0, None, None
        self.files: list[dict] = []
        self.docs = self.total_chars = self.bytes = 0

    def write(self, line: bytes, chars: int, nbytes: int) -> None:
        if self.file is None or self.chars >= SHARD_CHARS:
            self._open_next()
        self.file.write(line)
        self.hash.update(line)
        self.chars += chars
        self.docs += 1
        self.total_chars += chars
        self.bytes += nbytes

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}-{self.index:05d}.jsonl"
        self.files.append({"name": name})
        self.file, self.hash = open(self.folder / name, "wb"), hashlib.sha256()
        self.index += 1
        self.chars = 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.files[-1]["sha256"] = self.hash.hexdigest()
            self.file = None


@locks_out("data")
def prepare_data(
    source: list[str] | str,
    out: str,
    val_fraction: float = 0.05,
    min_chars: int = 20,
    text_field: str = "text",
    near_dup: float = DEFAULT_THRESHOLD,
    quality: bool = True,
    skip_filter: list[str] | None = None,
    quality_set: list[str] | None = None,
    workers: int = 1,
    skip_bad_files: bool = False,
    resume: bool = True,
    executor: Literal["local", "datatrove", "slurm", "ray"] = "local",
    executor_option: list[str] | None = None,
    force: bool = False,
    quiet: bool | None = None,
) -> dict:
    """Load, clean, deduplicate and split a corpus into a data folder.

    Args:
        source: a built-in source (tr-speeches, tr-treebank), a .txt/.jsonl/.jsonl.gz/.csv/.parquet
            file or a folder of them, hf:NAME[:CONFIG][?split=&field=&max_docs=&max_bytes=] for a Hugging
            Face dataset, streamed (e.g. hf:uonlp/CulturaX:tr?max_docs=100000), or code:PATH for source code
            (a file or folder; each file one document, kept byte for byte: no cleaning, no quality or
            near-duplicate filters, exact duplicates still dropped); repeat for several.
        out: the data folder to write (manifest.json and text shards).
        val_fraction: share of documents held out for validation, chosen by a hash of their text; 0 holds
            none out (an empty val split, recorded in the manifest).
        min_chars: documents shorter than this after cleaning are dropped.
        text_field: the field or column holding the text in .jsonl, .csv, .parquet and HF sources.
        near_dup: drop near-duplicates: documents whose estimated Jaccard similarity (MinHash over
            character 5-grams) to a kept document is at least this; 0 turns it off. The default was chosen
            on planted copies with a tenth of their words edited (benchmarks/RESULTS.md).
        quality: run the quality filters (numeric_lines, repeated_lines, word_length, symbols, ellipsis_lines,
            repetition, stop_words, language, placeholder, code; see docs/data.md); --no-quality turns them all
            off. The language filter runs where lingua-language-detector is installed (the `quality` extra).
        skip_filter: a quality filter to turn off, by name; repeat for several.
        quality_set: a quality filter setting, NAME.SETTING=VALUE (e.g. stop_words.min_count=3,
            language.min_confidence=0.7); repeatable.
        workers: processes that read and filter in parallel (files, and pieces of about 64 MB of large
            .txt/.jsonl files, are the units of work); the data folder is the same for any number.
        skip_bad_files: go on without a file that cannot be read (corrupt, truncated, not UTF-8, malformed),
            listing it in the manifest; without this, such a file stops the run (exit 2).
        resume: reuse the units that a stopped run with the same sources and settings finished (kept in
            .OUT.work next to OUT until the run completes); --no-resume starts over.
        executor: local (worker processes on this machine), or the same passes as datatrove tasks:
            datatrove (its local executor), slurm or ray (a cluster; OUT and the sources on a shared
            filesystem; needs the `cluster` extra).
        executor_option: KEY=VALUE passed to the datatrove executor (e.g. partition=cpu, time=04:00:00,
            cpus_per_task=1, mem_per_cpu_gb=2 for slurm); repeatable.
        force: replace an existing non-empty output folder.
        quiet: print nothing (default: the command shows progress, warnings and a summary; a call from Python
            only returns the manifest, unless quiet=False).
    """
    talk = speaks(quiet)
    prep = Preparation(source, out, val_fraction, min_chars, text_field, near_dup, quality, skip_filter,
                       quality_set, workers, skip_bad_files, resume, force, talk)
    if executor != "local":
        from fidan.corpus.cluster import run_on

        return run_on(prep, executor, as_list(executor_option))
    pool.run_pass("scan", functools.partial(prep.run_unit, "scan"), prep.units, prep.scan_dirs, workers, talk)
    prep.run_plan()
    pool.run_pass("filter", functools.partial(prep.run_unit, "filter"), [prep.units[i] for i in prep.ok],
                  prep.filter_dirs, workers, talk)
    return prep.finish()


class Preparation:
    """One `data prepare` run: its units, settings and work folder, and the passes over them. Picklable,
    so that a cluster executor can run its passes elsewhere."""

    def __init__(self, source, out, val_fraction, min_chars, text_field, near_dup, quality, skip_filter,
                 quality_set, workers, skip_bad_files, resume, force, talk=True):
        self.talk = talk
        self.source = [str(s) for s in as_list(source)]
        if not self.source:
            raise BadInput("no --source given; e.g. --source tr-speeches --source my_texts/")
        if not 0.0 <= val_fraction < 1.0:
            raise BadInput(f"--val-fraction must be at least 0 and below 1, got {val_fraction}; 0 holds out nothing")
        if workers < 1:
            raise BadInput(f"--workers must be at least 1, got {workers}")
        if near_dup:
            NearDuplicates(near_dup)  # checks the threshold and the library before any work
        self.out = Path(out)
        filters = QualityFilter(resolve(quality, as_list(skip_filter), as_list(quality_set)))
        self.not_run = not_run(quality, as_list(skip_filter))
        for name, why in self.not_run.items():
            self.say(f"data: quality filter {name} {why}; pass --skip-filter {name} to silence this")
        self.units = list_units(self.source, text_field, say=self.say)  # every source checked before the output folder
        if self.out.exists() and any(self.out.iterdir()) and not force:
            prepare_out_dir(self.out, force=False, what="data")
        self.settings = Settings(text_field, min_chars, val_fraction, filters.settings, near_dup)
        self.workers, self.skip_bad_files, self.started = workers, skip_bad_files, time.time()
        self.work = self.out.parent / f".{self.out.name}.work"
        if not resume:
            shutil.rmtree(self.work, ignore_errors=True)
        # A unit's scan depends on the unit (file, range, size, mtime) and on the few settings it uses.
        lines = {"repeated_lines": filters.settings["repeated_lines"]} if self.settings.line_chars else {}
        scan_settings = Settings(text_field, min_chars, 0, lines, 0)
        self.scan_keys = [scan_settings.fingerprint(u.key(), str(skip_bad_files)) for u in self.units]
        self.scan_dirs = [self.work / "scan" / k for k in self.scan_keys]
        pool.clean(self.work / "scan", set(self.scan_keys))
        self.resumed = sum(d.exists() for d in self.scan_dirs)

    # After the scan pass: the units that could be read, the plan, the filter pass's folders.
    @functools.cached_property
    def skipped(self) -> dict[int, str]:
        return {i: json.loads((d / SKIPPED).read_text())["error"] for i, d in enumerate(self.scan_dirs)
                if (d / SKIPPED).exists()}

    @property
    def ok(self) -> list[int]:
        return [i for i in range(len(self.units)) if i not in self.skipped]

    @functools.cached_property
    def plan_dir(self) -> Path:
        return self.work / "plan" / self.settings.fingerprint(*(self.scan_keys[i] for i in self.ok))

    @functools.cached_property
    def metas(self) -> dict[int, dict]:
        return {i: json.loads((self.scan_dirs[i] / "meta.json").read_text()) for i in self.ok}

    @functools.cached_property
    def filter_dirs(self) -> list[Path]:
        keys = [self.settings.fingerprint(self.plan_dir.name, self.scan_keys[i]) for i in self.ok]
        return [self.work / "filter" / k for k in keys]

    def run_unit(self, name: str, i: int, folder: Path, count) -> None:
        """One unit of a pass: scan unit i, or filter the i-th readable unit; its results go to ``folder``."""
        if name == "scan":
            try:
                scan_unit(self.units[i], folder, count, self.settings)
            except BadInput as e:
                if not (self.skip_bad_files and self.units[i].path):
                    raise
                (folder / SKIPPED).write_text(json.dumps({"error": str(e)}, ensure_ascii=False))
            return
        unit, offset = self.units[self.ok[i]], 0
        for j in self.ok[:i]:
            offset += self.metas[j]["read"] - self.metas[j]["too_short"]
        filter_unit(unit, folder, count, self.settings, str(self.plan_dir), offset)

    def say(self, line: str) -> None:
        if self.talk:
            print(line)

    def run_plan(self) -> None:
        for i, error in self.skipped.items():
            self.say(f"data: skipping {self.units[i].name}: {error}")
        pool.clean(self.work / "plan", {self.plan_dir.name})
        if not (self.plan_dir / "done").exists():
            plan([self.scan_dirs[i] for i in self.ok], self.plan_dir, self.settings)
            (self.plan_dir / "done").touch()
        pool.clean(self.work / "filter", {d.name for d in self.filter_dirs})
        self.resumed += sum(d.exists() for d in self.filter_dirs)

    def finish(self) -> dict:
        """The merge: the data folder and its manifest from the filter pass's results; the work folder goes."""
        s, bad = self.settings, self.skipped
        near = NearDuplicates(s.near_dup) if s.near_dup else None
        filters = QualityFilter(s.quality)
        n = sum(m["read"] - m["too_short"] for m in self.metas.values())
        first_total = int(np.load(self.plan_dir / "first.npy", allow_pickle=False).sum())
        with atomic_dir(self.out) as tmp:
            prose = [not self.units[i].code for i in self.ok]
            writers, kept, dropped = _merge(self.filter_dirs, tmp, near, prose, self.plan_dir / "near_dup.npy")
            unit_stats = [json.loads((o / "stats.json").read_text()) for o in self.filter_dirs]
            for st in unit_stats:
                filters.absorb(st["filters"])
            stats = {"read": sum(m["read"] for m in self.metas.values()),
                     "too_short": sum(m["too_short"] for m in self.metas.values()),
                     "duplicates": (n - first_total) + dropped["duplicates"],
                     "low_quality": sum(st["low_quality"] for st in unit_stats)}
            if writers["train"].docs == 0:
                raise BadInput(_empty_message(self.source, stats, s.min_chars, filters, bad))
            if writers["val"].docs == 0 and s.val_fraction > 0:
                raise BadInput(
                    f"no document fell into the validation split ({writers['train'].docs} documents); "
                    "add more documents, raise --val-fraction, or pass --val-fraction 0 to hold out nothing"
                )
            per_source = {spec: {"read": 0, "kept": 0, **_hub_settings(spec)} for spec in self.source}
            for pos, i in enumerate(self.ok):
                per_source[self.units[i].source]["read"] += self.metas[i]["read"]
                per_source[self.units[i].source]["kept"] += kept[pos]
            manifest = {
                "fidan_version": __version__,
                "sources": [{"spec": spec, **c} for spec, c in per_source.items()],
                **({"skipped_files": [{"file": self.units[i].name, "error": e} for i, e in sorted(bad.items())]}
                   if bad else {}),
                "cleaning": {
                    "unicode": "NFC",
                    "control_characters": "removed (newline and tab kept)",
                    "whitespace": "runs collapsed, lines trimmed, at most one blank line",
                    "min_chars": s.min_chars,
                    "dedup": "exact, on cleaned text and again on the text the quality filters leave",
                    **({"code_sources": "kept byte for byte: no cleaning, no quality or near-duplicate "
                                        "filters; exact duplicates dropped"} if not all(prose) else {}),
                    **({"near_dup": {"method": f"MinHash ({NUM_PERM} permutations) over character {SHINGLE}-grams, "
                                               f"LSH candidates ({BANDS} bands), estimated Jaccard >= threshold; "
                                               "the first of a cluster is kept",
                                     "threshold": s.near_dup, "clusters": near.clusters,
                                     "removed": near.removed}} if near else {}),
                },
                "split_rule": SPLIT_RULE,
                "val_fraction": s.val_fraction,
                "quality": ({"enabled": True, "filters": filters.report(), "removed_sample": REMOVED_SAMPLE,
                             **({"not_run": self.not_run} if self.not_run else {})}
                            if filters.settings else {"enabled": False}),
                "dropped": {"too_short": stats["too_short"], "duplicates": stats["duplicates"],
                            **({"low_quality": stats["low_quality"]} if filters.settings else {}),
                            **({"near_duplicates": dropped["near_duplicates"]} if near else {})},
                "documents_read": stats["read"],
                "splits": {
                    split: {"documents": w.docs, "characters": w.total_chars, "bytes": w.bytes, "files": w.files}
                    for split, w in writers.items()
                },
                # How this run went; all above is the same for any number of workers and for a resumed run.
                "run": {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "seconds": round(time.time() - self.started, 2), "workers": self.workers,
                        "units": len(self.units), "units_resumed": self.resumed},
            }
            if filters.settings:
                _write_samples(tmp / REMOVED_SAMPLE, filters)
            manifest = stamp("data", manifest)
            atomic_write_json(tmp / "manifest.json", manifest)
        for part in ("scan", "plan", "filter"):  # a cluster executor's logs stay (fidan/corpus/cluster.py)
            shutil.rmtree(self.work / part, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.work.rmdir()
        sp = manifest["splits"]
        self.say(
            f"data: {sp['train']['documents']} train / {sp['val']['documents']} val documents, "
            f"{sp['train']['characters'] + sp['val']['characters']:,} characters "
            f"({stats['too_short']} short and {stats['duplicates']} duplicate documents dropped"
            + (f", {stats['low_quality']} by quality filters{_by_filter(filters)}" if filters.settings else "")
            + (f", {dropped['near_duplicates']} near-duplicates in {near.clusters} clusters" if near else "")
            + (f", {len(bad)} unreadable files skipped" if bad else "") + f") → {self.out}"
        )
        return manifest


def _merge(outs: list[Path], folder: Path, near: NearDuplicates | None, prose: list[bool],
           scratch: Path) -> tuple[dict, list[int], dict]:
    """Pass 4: the documents of every unit in order, less those that the filters made copies of an earlier
    one and near-duplicates (of prose units only), into train and val shards; (writers, documents kept per
    unit, drops)."""
    finals = [np.load(o / "final.npy", allow_pickle=False) for o in outs]
    sizes = [len(f) for f in finals]
    everything = np.concatenate(finals) if finals else np.zeros(0, np.uint64)
    keep = np.zeros(len(everything), bool)
    keep[np.unique(everything, return_index=True)[1]] = True
    dropped = {"duplicates": int(len(keep) - keep.sum()), "near_duplicates": 0}
    del everything, finals
    if near is not None:  # the prose units' documents left by exact deduplication, in corpus order
        starts = np.cumsum([0, *sizes])
        picked = [(i, np.flatnonzero(keep[starts[i]:starts[i + 1]])) for i in range(len(outs)) if prose[i]]
        # their signatures, gathered into one file: one memory map, whatever the number of units
        sigs = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.uint32,
                                         shape=(sum(len(r) for _, r in picked), NUM_PERM))
        at = 0
        for i, rows in picked:
            sigs[at:at + len(rows)] = np.load(outs[i] / "sig.npy", allow_pickle=False)[rows]
            at += len(rows)
        removed, at = near.find(sigs), 0
        for i, rows in picked:
            keep[starts[i] + rows[removed[at:at + len(rows)]]] = False
            at += len(rows)
        del sigs
        scratch.unlink()
        dropped["near_duplicates"] = near.removed
    writers = {s: _ShardWriter(folder, s) for s in ("train", "val")}
    kept: list[int] = []
    at = 0
    try:
        for o, size in zip(outs, sizes, strict=True):
            mask = keep[at:at + size]
            at += size
            val, chars, nbytes = (np.load(o / f"{n}.npy", allow_pickle=False) for n in ("val", "chars", "nbytes"))
            with open(o / "docs.jsonl", "rb") as f:
                for row, line in enumerate(f):
                    if mask[row]:
                        writers["val" if val[row] else "train"].write(line, int(chars[row]), int(nbytes[row]))
            kept.append(int(mask.sum()))
    finally:
        for w in writers.values():
            w.close()
    return writers, kept, dropped


def _empty_message(source: list[str], stats: dict, min_chars: int, filters: QualityFilter, bad: dict) -> str:
    language = filters.removed.get("language")
    lead = (f"no Turkish text left in {', '.join(source)} after the language filter"
            if language and language.documents and language.documents >= stats["low_quality"] > 0
            else f"the corpus from {', '.join(source)} is empty after cleaning")
    by_lang = (" (by language: " + ", ".join(f"{c} {k}" for c, k in filters.by_language.most_common(5)) + ")"
               if filters.by_language else "")
    return (f"{lead} ({stats['read']} documents read, {stats['too_short']} shorter than --min-chars {min_chars}, "
            f"{stats['duplicates']} duplicates, {stats['low_quality']} removed by quality filters"
            f"{_by_filter(filters)}{by_lang}"
            + (f", {len(bad)} unreadable files skipped" if bad else "")
            + "); no data folder written. Check the sources, lower --min-chars, or turn filters off with "
            "--skip-filter NAME or --no-quality")


def _hub_settings(spec: str) -> dict:
    """For an hf: source, its parsed name, config, split, field and caps; for a built-in one, what it is
    and its licence: for the manifest."""
    sample = builtin_sample(spec)
    if sample is not None:
        name, every, max_docs = sample
        return {"description": BUILTIN[name].description, "licence": BUILTIN[name].licence,
                **({"every": every} if every > 1 else {}), **({"max_docs": max_docs} if max_docs else {})}
    return {"hf": parse_hub(spec).describe()} if spec.startswith("hf:") else {}


def _by_filter(filters: QualityFilter) -> str:
    parts = [f"{n} {r.documents} documents/{r.lines} lines" for n, r in filters.removed.items() if r.documents or r.lines]
    return f": {', '.join(parts)}" if parts else ""


def _write_samples(path: Path, filters: QualityFilter) -> None:
    """Up to ``sample_size`` removed texts per filter, one {"filter", "text"} record a line."""
    with open(path, "w", encoding="utf-8") as f:
        for name, texts in filters.samples.items():
            for text in texts:
                f.write(json.dumps({"filter": name, "text": text}, ensure_ascii=False) + "\n")
