"""Encoding a data folder's splits into token files: in pieces, in parallel, resumable, in flat memory.

Each text shard is cut at line boundaries into pieces of about ``PIECE_BYTES``. A piece is encoded on its
own, by this process or by a worker process, into ``DATA/tokens/.<sha12>.work/``, written atomically and
named by its shard's sha256 and byte range. A rerun after a kill finds the pieces that are done and encodes
only the rest. When every piece is done they are concatenated in order (train then val, shards in manifest
order, pieces by offset) into ``train.bin`` and ``val.bin`` inside a temporary folder, ``meta.json`` is
written last and the folder is renamed into place; then the work folder goes. The bytes are those of
encoding each document in turn and appending the end-of-text token (fidan's own tokenizers are encoded
pre-token by pre-token, with the same ids: pretoken_cache.py).

Nothing here imports torch, so worker processes (spawned, not forked) start small and fast.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer
from tqdm.auto import tqdm

from fidan.artifacts.datadir import SPLITS, load_manifest
from fidan.artifacts.pretoken_cache import PretokenEncoder
from fidan.artifacts.schema import stamp
from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput, FidanError
from fidan.runtime.io import atomic_dir, atomic_write_bytes, atomic_write_json, sha256_file

# A piece is the unit of resume and of work sharing: small enough that a kill loses seconds and two
# workers finish together, large enough that its fixed costs (a task, a file) do not show.
PIECE_BYTES = 8_000_000
# Text per encode call in this process: the Rust thread pool needs a few MB to keep every core busy.
BATCH_BYTES = 4_000_000
# A worker process encodes on one thread, so smaller calls do as well there and hold less memory.
WORKER_BATCH_BYTES = 1_000_000
# Without --workers, processes are started only for at least this much text: each costs about a second.
AUTO_PARALLEL_BYTES = 2 * PIECE_BYTES


@dataclass(frozen=True)
class Piece:
    """Bytes ``[start, end)`` of one shard: whole lines, i.e. whole documents."""

    split: str
    shard: Path
    sha256: str
    start: int
    end: int

    @property
    def name(self) -> str:
        # Keyed by content, not by file name: a shard rewritten with other text never matches old pieces.
        return f"{self.sha256[:16]}-{self.start:012d}-{self.end:012d}.bin"

    @property
    def size(self) -> int:
        return self.end - self.start


def tokens_dir(data: str | Path, tok: TokenizerBundle) -> Path:
    return Path(data) / "tokens" / tok.sha256[:12]


def work_dir(data: str | Path, tok: TokenizerBundle) -> Path:
    """Where the pieces of an unfinished encoding wait (removed once the token files are in place)."""
    out = tokens_dir(data, tok)
    return out.parent / f".{out.name}.work"


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def _cuts(path: Path, piece_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``piece_bytes`` that end just after a newline (or at the end of the file)."""
    size = path.stat().st_size
    cuts, start = [], 0
    with open(path, "rb") as f:
        while start < size:
            f.seek(start + piece_bytes)
            f.readline()  # on to the end of the line the cut falls in
            end = min(f.tell(), size)
            cuts.append((start, end))
            start = end
    return cuts


def plan_pieces(data: str | Path, manifest: dict, piece_bytes: int = PIECE_BYTES) -> list[Piece]:
    """Every split's shards, checked against the manifest's sha256 and cut into pieces, in output order."""
    data = Path(data)
    pieces = []
    for split in SPLITS:
        for f in manifest["splits"][split]["files"]:
            path = data / f["name"]
            if not path.is_file():
                raise BadInput(f"data shard {path} is missing; re-run `fidan data prepare`")
            digest = sha256_file(path)
            if f.get("sha256") not in (None, digest):
                raise BadInput(f"data shard {path} does not match its sha256 in {data / 'manifest.json'} "
                               "(changed or damaged since it was written); re-run `fidan data prepare`")
            pieces += [Piece(split, path, digest, a, b) for a, b in _cuts(path, piece_bytes)]
    return pieces


def _documents(piece: Piece) -> list[str]:
    with open(piece.shard, "rb") as f:
        f.seek(piece.start)
        raw = f.read(piece.size)
    lines = raw.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the newline that ends the last line
    docs = []
    for i, line in enumerate(lines):
        try:
            docs.append(json.loads(line)["text"])
        except (ValueError, KeyError, TypeError):
            with open(piece.shard, "rb") as f:
                number = f.read(piece.start).count(b"\n") + i + 1
            raise BadInput(f"data shard {piece.shard}, line {number}: not a JSON record with a \"text\" string; "
                           "re-run `fidan data prepare`") from None
        if not isinstance(docs[-1], str):
            raise BadInput(f"data shard {piece.shard}: a \"text\" field that is not a string; "
                           "re-run `fidan data prepare`")
    return docs


Encoder = Callable[[list[str]], list[bytes]]


def make_encoder(tokenizer: Tokenizer, dtype: np.dtype) -> Encoder:
    """Documents → their ids as bytes of ``dtype``: by pre-token for fidan's own tokenizers (the same ids,
    about twice as fast; see pretoken_cache.py), else the tokenizer's batch encoding."""
    try:
        return PretokenEncoder(tokenizer, dtype)
    except ValueError:  # not one of fidan's Turkish tokenizers
        pass
    # Ids only: encode_batch_fast skips the offsets (tokenizers >= 0.20); the ids are the same.
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    return lambda docs: [np.asarray(e.ids, dtype=dtype).tobytes() for e in encode(docs, add_special_tokens=False)]


def encode_piece(piece: Piece, encoder: Encoder, eos: int, dtype: np.dtype, out: Path,
                 batch_bytes: int = BATCH_BYTES) -> int:
    """Encode one piece's documents (each followed by ``eos``) into ``out``, atomically; returns the tokens."""
    eos_row = np.array([eos], dtype=dtype).tobytes()
    parts: list[bytes] = []
    batch: list[str] = []
    size = 0
    docs = _documents(piece)
    for i, doc in enumerate(docs):
        batch.append(doc)
        size += len(doc)
        if size >= batch_bytes or i == len(docs) - 1:
            for ids in encoder(batch):
                parts += (ids, eos_row)
            batch, size = [], 0
    data = b"".join(parts)
    atomic_write_bytes(out, data)
    return len(data) // dtype.itemsize


# Worker processes: each loads the tokenizer once, then encodes whole pieces.
_worker: dict = {}


def _init_worker(tokenizer_json: str, eos: int, dtype: str) -> None:
    # The processes are the parallelism: a Rust thread pool in each would only contend with the others
    # (measured slower on 2 cores; see benchmarks/RESULTS.md).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    dtype = np.dtype(dtype)
    _worker.update(encoder=make_encoder(Tokenizer.from_str(tokenizer_json), dtype), eos=eos, dtype=dtype)


def _run_piece(piece: Piece, out: Path) -> int:
    return encode_piece(piece, _worker["encoder"], _worker["eos"], _worker["dtype"], out, WORKER_BATCH_BYTES)


def _encode_all(todo: list[Piece], work: Path, tok: TokenizerBundle, dtype: np.dtype, workers: int,
                bar: tqdm, done: int, total: int) -> None:
    def finished(piece: Piece) -> None:
        nonlocal done
        done += 1
        bar.update(piece.size)
        bar.set_postfix_str(f"{done}/{total} pieces")

    if workers == 1:
        encoder = make_encoder(tok.tokenizer, dtype)
        for piece in todo:
            encode_piece(piece, encoder, tok.eos_id, dtype, work / piece.name)
            finished(piece)
        return
    args = (tok.tokenizer.to_str(), tok.eos_id, dtype.str)
    # spawn: a forked child would inherit torch's and tokenizers' thread pools mid-state.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=args)
    try:
        futures = {pool.submit(_run_piece, p, work / p.name): p for p in todo}
        pending = set(futures)
        while pending:
            ready, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in ready:
                if future.exception() is not None:
                    raise future.exception()
                finished(futures[future])
    except BaseException:
        # An error or Ctrl-C stops the workers now: the pieces they were on are lost (as in a kill), the
        # finished ones stay for the next run. (The executor has no public way to stop its processes.)
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _assemble(pieces: list[Piece], work: Path, tmp: Path) -> dict[str, int]:
    """Concatenate the pieces into ``tmp/<split>.bin``; bytes written per split."""
    written = {}
    for split in SPLITS:
        with open(tmp / f"{split}.bin", "wb") as f:
            for piece in (p for p in pieces if p.split == split):
                with open(work / piece.name, "rb") as src:
                    shutil.copyfileobj(src, f, 1 << 22)
            f.flush()
            os.fsync(f.fileno())  # before meta.json says the files are complete
            written[split] = f.tell()
    return written


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def encode_splits(data: str | Path, tok: TokenizerBundle, force: bool = False, workers: int | None = None,
                  piece_bytes: int = PIECE_BYTES) -> Path:
    """Encode every split of a data folder with the tokenizer (once; reused until the tokenizer changes).

    ``workers`` > 1 encodes pieces in that many processes (never more than there are pieces to do);
    None takes one per CPU core when there is enough text to pay for starting them, else encodes here.
    An interrupted run leaves its finished pieces in the work folder; the next call with the same data
    and tokenizer continues from them (``force`` starts over).
    """
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise BadInput(f"--workers must be a whole number of at least 1 (got {workers!r})")
    manifest = load_manifest(data)
    if not isinstance(manifest.get("splits"), dict) or any(s not in manifest["splits"] for s in SPLITS):
        raise FidanError(f"{data} is not a text corpus with train and val splits (an instruction set?); "
                         "pass a data folder made by `fidan data prepare`")
    out, work = tokens_dir(data, tok), work_dir(data, tok)
    if (out / "meta.json").exists() and not force:
        return out
    if force:
        shutil.rmtree(work, ignore_errors=True)
    start = time.time()
    pieces = plan_pieces(data, manifest, piece_bytes)
    work.mkdir(parents=True, exist_ok=True)
    finished = {p.name for p in pieces if (work / p.name).is_file()}
    todo = [p for p in pieces if p.name not in finished]
    done = len(pieces) - len(todo)
    if done:
        print(f"resuming: {done} of {len(pieces)} pieces done")
    dtype = dtype_for(tok.vocab_size)
    with tqdm(total=sum(p.size for p in pieces), initial=sum(p.size for p in pieces if p.name in finished),
              desc="encode", unit="B", unit_scale=True, disable=None) as bar:  # None: no bar in a log file
        bar.set_postfix_str(f"{done}/{len(pieces)} pieces")
        if todo:
            if workers is None:
                workers = cpu_cores() if sum(p.size for p in todo) >= AUTO_PARALLEL_BYTES else 1
            _encode_all(todo, work, tok, dtype, min(workers, len(todo)), bar, done, len(pieces))
    meta = {"tokenizer": str(tok.path), "tokenizer_sha256": tok.sha256, "vocab_size": tok.vocab_size,
            "eos_id": tok.eos_id, "dtype": dtype.name, "splits": {}}
    with atomic_dir(out) as tmp:
        written = _assemble(pieces, work, tmp)
        for split in SPLITS:
            sp = manifest["splits"][split]
            meta["splits"][split] = {"tokens": written[split] // dtype.itemsize, "bytes": sp["bytes"],
                                     "documents": sp["documents"]}
        meta["seconds"] = round(time.time() - start, 2)
        atomic_write_json(tmp / "meta.json", stamp("tokens", meta))
    shutil.rmtree(work, ignore_errors=True)
    tr = meta["splits"]["train"]
    print(f"tokens: {tr['tokens']:,} train ({tr['bytes'] / max(tr['tokens'], 1):.2f} bytes/token), "
          f"{meta['splits']['val']['tokens']:,} val → {out}")
    return out
