"""`fidan eval bpb`: bits per byte and perplexity of a model on any text, streamed, with a sliding window.

bits per byte = Σ nats over every token of the text / ln 2 / UTF-8 bytes of the text. Each document is
conditioned on the model's start token (end-of-text for fidan, BOS for most HF models), so its first
token is scored too and the byte count is exactly the text's. Long documents are scored with windows of
``block_size`` tokens that advance by ``stride``: after the first window, every token is predicted with
at least ``block_size - stride`` tokens of context, and every token is scored exactly once. The windows
and sums are those of fidan.model.scoring, the routine that also scores held-out text during training.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from fidan.artifacts.datadir import iter_split
from fidan.artifacts.documents import read_documents
from fidan.artifacts.results import save_result
from fidan.errors import FidanError
from fidan.evaluation.lm import LanguageModel, load_lm, result_path, text_hash
from fidan.inference.precision import LOAD_DTYPE, apply_precision, check_precision
from fidan.model.scoring import BitsPerByte, pad_windows, sliding_windows
from fidan.runtime.console import speaks
from fidan.runtime.device import pick_device, set_threads
from fidan.runtime.io import require_path


def iter_documents(text: str | Path, split: str = "val") -> Iterator[Iterator[str]]:
    """Documents as streams of text pieces: a data folder's split, or a local file read by the one
    document rule of fidan.artifacts.documents (a .txt file's documents are its paragraphs)."""
    path = require_path(text, "text", "pass a .txt/.jsonl file or a data folder made by `fidan data prepare`")
    if path.is_dir():
        for doc in iter_split(path, split):
            yield iter([doc])
        return
    for doc in read_documents(path):
        yield iter([doc])


def score_text(lm: LanguageModel, docs: Iterator[Iterator[str]], stride: int, batch_size: int,
               progress: bool = False) -> dict:
    """Summed nats, scored tokens and UTF-8 bytes over all documents."""
    meter = BitsPerByte()  # bytes are counted from the text itself, not from a token table
    nbytes, ndocs = 0, 0
    batch: list = []
    bar = None  # made at the first batch: a file refused while being read prints only its error

    def flush() -> None:
        nonlocal bar
        bar = bar if bar is not None else tqdm(desc="bpb", unit="tok", disable=(not progress) or None,
                                                      dynamic_ncols=True)
        x, y = pad_windows(batch)
        before = meter.tokens
        meter.add(lm.nll(x, y), y)
        bar.update(meter.tokens - before)
        batch.clear()

    for doc in docs:
        ndocs += 1
        first_piece = True

        def encoded(doc=doc):
            nonlocal nbytes, first_piece
            for piece in doc:
                nbytes += len(piece.encode("utf-8"))
                ids = lm.encode(piece)
                if first_piece and lm.start_id is None and ids:
                    # No start token: the first token is context only, so its bytes are not counted.
                    nbytes -= len(lm.decode(ids[:1]).encode("utf-8"))
                first_piece = first_piece and not ids
                yield ids

        for window in sliding_windows(encoded(), lm.start_id, lm.block_size, stride):
            batch.append(window)
            if len(batch) == batch_size:
                flush()
    if batch:
        flush()
    if bar is not None:
        bar.close()
    return {"nats": meter.nats, "tokens": meter.tokens, "bytes": nbytes, "documents": ndocs}


def eval_bpb(
    model: str,
    text: str,
    split: str = "val",
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    tokenizer: str | None = None,
    device: str = "auto",
    out: str | None = None,
    force: bool = False,
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto",
    threads: int | None = None,
    quiet: bool | None = None,
) -> dict:
    """Bits per byte and perplexity of a model on a text, with a sliding window for long documents.

    Args:
        model: a fidan run or checkpoint folder, a transformers causal-LM folder, a cached hub name or a LoRA
            adapter folder.
        text: a .txt file (one document per blank-line-separated paragraph), a .jsonl file (one document
            per "text" field), gzipped or not, or a data folder made by `fidan data prepare`.
        split: which split to read when --text is a data folder.
        block_size: window length in tokens (default: the model's context, at most 1024 for HF models).
        stride: how far each window advances (default: half the window); every token after the first
            window keeps at least block_size - stride tokens of context.
        batch_size: windows per forward pass.
        tokenizer: a tokenizer folder (default: the model's own).
        device: auto, cpu or cuda.
        out: where to write the result JSON (default: MODEL/eval/bpb-<text name>.json, or
            bpb-<folder>-<split>.json for a data folder).
        force: replace an existing result file.
        precision: auto (the checkpoint's own dtype), fp32, bf16 (weights loaded in bfloat16) or int8
            (Linear layers quantized to int8,
            CPU only): the precision the model is scored in; see docs/generation.md.
        threads: CPU threads for torch's operators (default: torch's own choice).
        quiet: print nothing (default: the command shows progress and the result; a call from Python only
            returns the result, unless quiet=False).
    """
    started = time.time()
    if batch_size <= 0:
        raise FidanError(f"--batch-size must be positive, got {batch_size}")
    check_precision(precision)
    set_threads(threads)
    name = Path(text).name.split(".")[0] or "text"
    path = result_path(model, "bpb", f"{name}-{split}" if Path(text).is_dir() else name, out, force)
    lm = load_lm(model, tokenizer, pick_device(device), block_size, dtype=LOAD_DTYPE[precision])
    lm.net = apply_precision(lm.net, precision)
    stride = stride or max(1, lm.block_size // 2)
    if not 1 <= stride <= lm.block_size:
        raise FidanError(f"--stride must be between 1 and the block size {lm.block_size}, got {stride}")
    s = score_text(lm, iter_documents(text, split), stride, batch_size, progress=speaks(quiet))
    if s["tokens"] == 0 or s["bytes"] <= 0:
        raise FidanError(f"{text} holds no text to score; pass a non-empty file")
    loss = s["nats"] / s["tokens"]
    result = {
        "task": "bpb", "model": str(model), "model_kind": lm.kind, "text": str(text),
        "split": split if Path(text).is_dir() else None,
        "text_hash": text_hash(iter_documents(text, split)),  # read again: the scored documents' identity
        "bpb": s["nats"] / math.log(2) / s["bytes"], "loss": loss, "perplexity": math.exp(min(loss, 50)),
        "tokens": s["tokens"], "bytes": s["bytes"], "documents": s["documents"],
        "bytes_per_token": s["bytes"] / s["tokens"], "block_size": lm.block_size, "stride": stride,
        "precision": precision,
    }
    result = save_result(path, result, started)
    if speaks(quiet):
        print(f"bits per byte {result['bpb']:.4f} | perplexity {result['perplexity']:.2f} per token "
              f"({result['tokens']:,} tokens, {result['bytes']:,} bytes, {result['documents']} documents) → {path}")
    return result
