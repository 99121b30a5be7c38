"""`fidan vocab extend`: add Turkish tokens to a transformers model and start their embeddings well.

The new tokens are BPE merges learned on the data over the base tokenizer's own segmentation
(fidan.adapt.vocab). Each new embedding row starts from the rows of the base tokens it replaces:
``subtoken-mean`` (their mean: the model reads the new token roughly as it read its pieces), ``mean``
(the mean of all rows, what ``resize_token_embeddings(mean_resizing=True)`` aims at) or ``random``
(normal with the model's ``initializer_range``, what transformers gives new rows otherwise).
The output head, when not tied, gets the same rule. Held-out figures are measured right after the
extension, before any training, for every initialisation, beside the base model's.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fidan.adapt.vocab import extend_tokenizer, learn_extension
from fidan.adapt.vocab_select import SELECT, sample_by_source, sampled, select_extension
from fidan.artifacts.datadir import iter_split, iter_split_sources, load_manifest
from fidan.artifacts.extension import Extension
from fidan.artifacts.loader import load, locate
from fidan.artifacts.tokenizer import TokenizerBundle, load_tokenizer
from fidan.errors import FidanError
from fidan.model.hf import HFCausalLM
from fidan.model.scoring import model_nll, score_token_documents
from fidan.runtime.io import atomic_dir
from fidan.training.starting_point import HF_TOKENIZER_FILES

INITS = ("subtoken-mean", "mean", "random")


def extend_vocab(base: str, data: str, add: int, out: str, init: Literal["subtoken-mean", "mean", "random"] = "subtoken-mean", min_frequency: int = 2,
                 select: Literal["balanced", "frequency"] = "balanced", sample_chars: int = 4_000_000,
                 compare: bool = True, eval_docs: int = 400, block_size: int = 256, seed: int = 0,
                 force: bool = False, quiet: bool = False) -> dict:
    """Add up to N Turkish tokens to a transformers causal LM, as BPE merges, with initialised embeddings.

    Args:
        base: a transformers causal-LM folder or cached hub name with a BPE tokenizer.json (`fidan export hf`
            writes one).
        data: a data folder made by `fidan data prepare`: new tokens are learned on its train split and
            measured on its val split.
        add: how many new tokens, at most.
        out: the new model folder (weights, extended tokenizer, extension.json).
        init: how new embedding rows start: subtoken-mean (mean of the rows of the pieces they replace),
            mean (mean of all rows) or random (normal with the model's initializer_range, as transformers does).
        min_frequency: a new token must save a token at least this many times in the data.
        select: how the new tokens are chosen: balanced (by the tokens they save on each source of the train
            split, every source weighing the same, without the source where a token saves the most) or
            frequency (BPE merges in order of frequency over the pooled train split).
        sample_chars: characters read from each source of the train split to choose them (0: all).
        compare: also measure held-out bits per byte with the other initialisations (not saved).
        eval_docs: held-out documents scored for bits per byte (0: every one).
        block_size: context window for scoring.
        seed: seed for the random initialisation.
        force: replace --out if it exists.
        quiet: print nothing.
    """
    started = time.time()
    out_dir = Path(out)
    if init not in INITS:
        raise FidanError(f"--init must be one of {', '.join(INITS)}, got {init!r}")
    if select not in SELECT:
        raise FidanError(f"--select must be one of {', '.join(SELECT)}, got {select!r}")
    if sample_chars < 0:
        raise FidanError(f"--sample-chars must be 0 (all) or positive, got {sample_chars}")
    source = locate(base)  # a folder, or a hub name's snapshot in the local cache
    base_dir = source.folder
    if source.kind != "hf":
        raise FidanError(f"--base {base_dir} is not a transformers model folder; export a fidan run with "
                         "`fidan export hf --model RUN --out DIR` first")
    if out_dir.exists() and not force:
        raise FidanError(f"--out {out_dir} already exists; pass --force to replace it or choose another folder")
    if not (base_dir / "tokenizer.json").exists():
        raise FidanError(f"{base_dir} has no tokenizer.json; vocabulary extension needs a fast (BPE) tokenizer")
    load_manifest(data)
    base_tok = load_tokenizer(base_dir)
    model = load(base_dir, block_size=block_size).model
    rows = model.config.vocab_size
    if base_tok.vocab_size > rows:
        raise FidanError(f"{base_dir}: the tokenizer has {base_tok.vocab_size} tokens but the model has {rows} "
                         "embedding rows; the folder's tokenizer does not belong to its weights")

    val = list(iter_split(data, "val"))
    if eval_docs:
        val = val[:eval_docs]
    bpb: dict[str, float] = {"base": _held_out_bpb(model, base_tok, val)} if val else {}

    train = sampled(iter_split_sources(data, "train"), sample_chars)
    if select == "frequency":
        ext = learn_extension(base_tok.tokenizer, (text for _, text in train), add, min_frequency)
    else:
        ext = select_extension(base_tok.tokenizer, sample_by_source(train), add, min_frequency)
    if len(ext.new_tokens) < add:
        raise FidanError(f"--add {add}: the data supplies only {len(ext.new_tokens)} new tokens that save a token "
                         f"at least {min_frequency} times; pass --add {len(ext.new_tokens)} or more data")
    new_tok, new_ids = extend_tokenizer(base_tok.tokenizer, ext)
    needed = max(new_ids) + 1
    net = model.net
    if needed > rows:
        net.resize_token_embeddings(needed, mean_resizing=False)
    model.config.vocab_size = net.get_input_embeddings().weight.size(0)
    pieces = [t.pieces for t in ext.new_tokens]
    saved = {name: w.detach().clone() for name, w in _vocab_weights(model).items()}

    words = sum(len(t.split()) for t in val)
    text_bytes = sum(len(t.encode("utf-8")) for t in val)
    before = sum(len(base_tok.encode(t)) for t in val)
    after = sum(len(new_tok.encode(t, add_special_tokens=False).ids) for t in val)
    stats = {"words": words, "bytes": text_bytes, "tokens_before": before, "tokens_after": after,
             "tokens_per_word_before": before / max(words, 1), "tokens_per_word_after": after / max(words, 1),
             "bytes_per_token_before": text_bytes / max(before, 1), "bytes_per_token_after": text_bytes / max(after, 1),
             "tokens_saved": 1 - after / max(before, 1)}

    with atomic_dir(out_dir) as tmp:
        new_tok.save(str(tmp / "tokenizer.json"))
        for name in HF_TOKENIZER_FILES[1:]:
            if (base_dir / name).exists():
                shutil.copy2(base_dir / name, tmp / name)
        ext_bundle = load_tokenizer(tmp)
        if val:
            for name in (INITS if compare else (init,)):
                _restore(model, saved)()
                initialise_rows(model, new_ids, pieces, rows_before=rows, method=name, seed=seed)
                bpb[name] = _held_out_bpb(model, ext_bundle, val)
        _restore(model, saved)()
        initialise_rows(model, new_ids, pieces, rows_before=rows, method=init, seed=seed)
        net.save_pretrained(str(tmp))
        record = Extension(base=str(base_dir.resolve()), data=str(Path(data).resolve()), init=init,
                           add=add, min_frequency=min_frequency, select=select, sample_chars=sample_chars,
                           new_ids=new_ids,
                           merges_added=len(ext.merges), embedding_rows=[rows, model.config.vocab_size],
                           held_out={**stats, "documents": len(val), "bpb": bpb},
                           new_tokens=[{"id": i, "text": new_tok.decode([i]), "pieces": p}
                                       for i, p in zip(new_ids, pieces, strict=True)],
                           seconds=round(time.time() - started, 1)).write(tmp)
    if not quiet:
        print(summary_table(record))
        print(f"→ {out_dir}")
    return record


def _vocab_weights(model: HFCausalLM) -> dict[str, torch.nn.Parameter]:
    found = {"input": model.net.get_input_embeddings().weight}
    head = model.net.get_output_embeddings()
    if head is not None and head.weight is not found["input"]:
        found["output"] = head.weight
    return found


def _restore(model: HFCausalLM, saved: dict[str, torch.Tensor]):
    def restore() -> None:
        with torch.no_grad():
            for name, w in _vocab_weights(model).items():
                w.copy_(saved[name])
    return restore


@torch.no_grad()
def initialise_rows(model: HFCausalLM, new_ids: list[int], pieces: list[list[int]], rows_before: int,
                    method: str = "subtoken-mean", seed: int = 0) -> None:
    """Set the embedding (and untied output) rows of ``new_ids``; ``rows_before`` rows existed before."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.tensor(new_ids)
    for w in _vocab_weights(model).values():
        old = w[:rows_before].float()
        if method == "subtoken-mean":
            rows = torch.stack([old[p].mean(0) for p in pieces])
        elif method == "mean":
            rows = old.mean(0, keepdim=True).expand(len(new_ids), -1)
        elif method == "random":  # what transformers gives new rows without mean_resizing
            std = getattr(model.net.config, "initializer_range", None) or 0.02
            rows = torch.randn(len(new_ids), w.size(1), generator=gen) * std
        else:
            raise FidanError(f"unknown initialisation {method!r}; choose one of {', '.join(INITS)}")
        w[ids] = rows.to(w.dtype)


def _held_out_bpb(model: HFCausalLM, tok: TokenizerBundle, texts: list[str]) -> float:
    docs = [np.array(tok.encode(t), dtype=np.int64) for t in texts]
    block = model.config.block_size
    result = score_token_documents(model_nll(model), docs, tok.eos_id, tok.token_bytes(), block,
                                   max(1, block // 2), 8)
    return round(result["val_bpb"], 4)


def summary_table(record: dict) -> str:
    h = record["held_out"]
    lines = [f"added {len(record['new_ids']):,} tokens ({record['merges_added']:,} merges); embedding rows "
             f"{record['embedding_rows'][0]:,} → {record['embedding_rows'][1]:,}; new rows: {record['init']}",
             f"held-out ({h['documents']} documents, {h['words']:,} words):",
             f"  tokens per word  {h['tokens_per_word_before']:.3f} → {h['tokens_per_word_after']:.3f}",
             f"  bytes per token  {h['bytes_per_token_before']:.3f} → {h['bytes_per_token_after']:.3f}",
             f"  tokens saved     {h['tokens_saved']:.1%}"]
    if h["bpb"]:
        lines.append("  bits per byte    " + ", ".join(f"{k} {v:.4f}" for k, v in h["bpb"].items())
                     + "  (before any training)")
    return "\n".join(lines)
