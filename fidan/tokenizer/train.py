"""`fidan tokenizer train`: byte-level BPE with the `tokenizers` library, saved in the HF format."""

from __future__ import annotations

import time
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from fidan.core.datadir import iter_split, load_manifest
from fidan.core.io import atomic_dir, prepare_out_dir
from fidan.core.tokenizer_io import EOS_TOKEN
from fidan.errors import FidanError


def build_bpe() -> Tokenizer:
    """An empty byte-level BPE: every string maps to tokens and decodes back exactly (no normalizer)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def save_tokenizer(tok: Tokenizer, out: Path, extra_config: dict | None = None) -> None:
    """Save as tokenizer.json + tokenizer_config.json so `AutoTokenizer.from_pretrained(out)` loads it."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=None,
        pad_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 30,
    )
    for key, value in (extra_config or {}).items():
        hf.init_kwargs[key] = value
    hf.save_pretrained(str(out))


def train_tokenizer(
    data: str,
    out: str,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    special_tokens: list[str] | None = None,
    force: bool = False,
) -> Path:
    """Train a byte-level BPE tokenizer on the train split of a data folder.

    Args:
        data: a data folder made by `fidan data prepare`.
        out: the tokenizer folder to write (tokenizer.json, tokenizer_config.json).
        vocab_size: target vocabulary size, special tokens included.
        min_frequency: a pair must occur at least this often to be merged.
        special_tokens: extra special tokens to reserve (repeatable); <|endoftext|> is always first.
        force: replace an existing non-empty output folder.
    """
    manifest = load_manifest(data)
    if vocab_size < 256 + 1 or vocab_size > 1_000_000:
        raise FidanError(f"--vocab-size must be between 257 (the 256 bytes + <|endoftext|>) and 1,000,000, got {vocab_size}")
    specials = [EOS_TOKEN] + [t for t in (special_tokens or []) if t != EOS_TOKEN]
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()) and not force:
        prepare_out_dir(out_path, force=False, what="tokenizer")
    tok = build_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    start = time.time()
    tok.train_from_iterator(iter_split(data, "train"), trainer, length=manifest["splits"]["train"]["documents"])
    seconds = time.time() - start
    with atomic_dir(out_path) as tmp:
        save_tokenizer(tok, tmp)
    print(f"tokenizer: byte-level BPE, {tok.get_vocab_size():,} tokens, trained in {seconds:.1f}s → {out_path}")
    return out_path
