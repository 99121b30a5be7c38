"""`fidan tokenizer train`: BPE, Unigram or WordPiece with the `tokenizers` library, saved in the HF format.

Every algorithm runs on the byte-level alphabet, so any string encodes and decodes back exactly, and
the pre-tokenizer (Turkish by default, see pretokenize.py) is part of tokenizer.json.

The default BPE is morphology-aware in two phases: the training words are cut into morphemes by the
analyzer (morph.py) and BPE learns its merges inside morphemes only, with all but ``--whole-words`` of
the vocabulary; the rest goes to the most frequent words, joined whole by merges ranked after every
morpheme merge (whole_words.py). ``--morph`` is the one-phase variant (morpheme merges, ``--morph-keep``
frequent words left uncut in the training text), ``--plain`` BPE on whole words. Every result is an
ordinary BPE that needs no analyzer to encode.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from fidan.artifacts.datadir import iter_split, load_manifest
from fidan.artifacts.tokenizer import EOS_TOKEN
from fidan.errors import BadConfig, BadInput
from fidan.runtime.io import as_list, atomic_dir, prepare_out_dir
from fidan.text.turkish import WORD_RE, words
from fidan.tokenizer.pretokenize import PRETOKENIZERS, make_pretokenizer

ALGORITHMS = ("bpe", "unigram", "wordpiece")
UNK_TOKEN = "<|unk|>"  # WordPiece needs one in its vocabulary; fidan's alphabet means it is never produced
# WordPiece marks word-inner pieces with a prefix; one that byte-level text can never contain keeps
# decoding exact (the usual "##" could be real text).
CONTINUATION = "▁"
MORPH_SEP = "\ue000"  # private-use character: marks morpheme cuts in training text only
# The default's shares of the vocabulary for roots and for whole words, chosen on the out-of-domain
# frontier (docs/tokenizers.md, benchmarks/tokenizer_frontier.py)
ROOTS = 0.1875
WHOLE_WORDS = 0.0


def build_tokenizer(algorithm: str = "bpe", pretokenizer: str = "turkish") -> Tokenizer:
    """An empty tokenizer of the given algorithm on the byte-level alphabet."""
    if algorithm == "bpe":
        tok = Tokenizer(models.BPE())
        tok.decoder = decoders.ByteLevel()
    elif algorithm == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.decoder = decoders.ByteLevel()
    elif algorithm == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN, continuing_subword_prefix=CONTINUATION,
                                         max_input_chars_per_word=1 << 30))
        tok.decoder = decoders.Sequence([decoders.Replace(CONTINUATION, ""), decoders.ByteLevel()])
    else:
        raise BadInput(f"unknown --algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    tok.pre_tokenizer = make_pretokenizer(pretokenizer)
    return tok


def make_trainer(algorithm: str, vocab_size: int, min_frequency: int, specials: list[str]):
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if algorithm == "bpe":
        return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
                                   initial_alphabet=alphabet, show_progress=True)
    if algorithm == "unigram":
        return trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                       max_piece_length=24, show_progress=True)
    return trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                     special_tokens=[*specials, UNK_TOKEN], initial_alphabet=alphabet,
                                     continuing_subword_prefix=CONTINUATION, show_progress=True)


def complete_alphabet(tok: Tokenizer) -> Tokenizer:
    """Make sure all 256 byte symbols are in the vocabulary (and, for WordPiece, their word-inner forms),
    so no input ever needs an unknown token."""
    if isinstance(tok.model, models.BPE):
        return tok  # the BPE trainer's initial alphabet already holds them
    spec = json.loads(tok.to_str())
    model = spec["model"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if model["type"] == "WordPiece":
        vocab = model["vocab"]
        for piece in sorted(alphabet) + [CONTINUATION + c for c in sorted(alphabet)]:
            if piece not in vocab:
                vocab[piece] = len(vocab)
    elif model["type"] == "Unigram":
        present = {p for p, _ in model["vocab"]}
        floor = min((s for _, s in model["vocab"]), default=0.0) - 1.0
        model["vocab"] += [[c, floor] for c in sorted(alphabet) if c not in present]
    return Tokenizer.from_str(json.dumps(spec))


def save_tokenizer(tok: Tokenizer, out: Path, extra_config: dict | None = None) -> None:
    """Save as tokenizer.json + tokenizer_config.json so `AutoTokenizer.from_pretrained(out)` loads it."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN if tok.token_to_id(UNK_TOKEN) is not None else None,
        pad_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 30,
    )
    for key, value in (extra_config or {}).items():
        hf.init_kwargs[key] = value
    hf.save_pretrained(str(out))


def morph_marked(docs: Iterator[str], segments: dict, keep_whole: set[str]) -> Iterator[str]:
    """Training text with MORPH_SEP at every morpheme cut (except in words kept whole)."""
    def mark(m: re.Match) -> str:
        word = m.group(0)
        cuts = None if word in keep_whole else segments.get(word)
        if not cuts:
            return word
        bounds = [0, *cuts, len(word)]
        return MORPH_SEP.join(word[a:b] for a, b in zip(bounds, bounds[1:], strict=False))

    for doc in docs:
        yield WORD_RE.sub(mark, doc.replace(MORPH_SEP, ""))


def _has_analyzer() -> bool:
    """Whether zemberek is installed; without it the default BPE is the plain one, with a warning."""
    from fidan.errors import MissingExtra
    from fidan.text.zemberek import MORPH_HINT, import_zemberek

    try:
        import_zemberek()
        return True
    except MissingExtra:
        print(f"warning: no morphological analyzer, so the tokenizer is plain BPE; {MORPH_HINT}", file=sys.stderr)
        return False


def train_tokenizer(
    data: str,
    out: str,
    vocab_size: int = 8000,
    min_frequency: int = 2,
    special_tokens: list[str] | str | None = None,
    algorithm: Literal["bpe", "unigram", "wordpiece"] = "bpe",
    pretokenizer: Literal["turkish", "turkish-digits", "bytelevel"] = "turkish",
    morph: bool = False,
    morph_keep: int = 0,
    plain: bool = False,
    whole_words: float = WHOLE_WORDS,
    roots: float = ROOTS,
    force: bool = False,
) -> Path:
    """Train a byte-level tokenizer on the train split of a data folder.

    Args:
        data: a data folder made by `fidan data prepare`.
        out: the tokenizer folder to write (tokenizer.json, tokenizer_config.json).
        vocab_size: target vocabulary size, special tokens included.
        min_frequency: a pair must occur at least this often to be merged (bpe, wordpiece).
        special_tokens: extra special tokens to reserve (repeatable); <|endoftext|> is always first.
        algorithm: bpe, unigram or wordpiece (all on the byte-level alphabet, all round-trip exactly).
        pretokenizer: turkish (letters together, apostrophe suffixes apart, digit runs), turkish-digits
            (the same with one token per digit) or bytelevel (GPT-2's English-tuned regex).
        morph: cut training words into morphemes with zemberek (fidan[morph]) so that BPE merges never
            cross a morpheme boundary; the saved tokenizer needs no analyzer.
        morph_keep: with --morph, keep the N most frequent words of the training text whole (uncut), which
            shortens sequences of common words at some cost in morphological purity.
        plain: BPE learned on whole words, with no morphology (the default BPE needs fidan[morph] and
            falls back to this without it).
        whole_words: the default BPE's share of the vocabulary (0 to 1) spent on the most frequent words
            made whole, after the merges inside morphemes and the roots.
        roots: the default BPE's share of the vocabulary (0 to 1) spent on the roots of the training words
            (and their capitalized forms) made whole; with --whole-words 0 and --roots 0 every merge stays
            inside a morpheme.
        force: replace an existing non-empty output folder.
    """
    manifest = load_manifest(data)
    if vocab_size < 256 + 1 or vocab_size > 1_000_000:
        raise BadInput(f"--vocab-size must be between 257 (the 256 bytes + <|endoftext|>) and 1,000,000, got {vocab_size}")
    if algorithm not in ALGORITHMS:
        raise BadInput(f"unknown --algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    if pretokenizer not in PRETOKENIZERS:
        raise BadInput(f"unknown --pretokenizer {pretokenizer!r}; choose one of {', '.join(PRETOKENIZERS)}")
    if morph and algorithm != "bpe":
        raise BadConfig("--morph works with --algorithm bpe only (merges are what it constrains)")
    if morph and plain:
        raise BadConfig("--morph and --plain contradict each other; pass one")
    if not (0 <= whole_words <= 1 and 0 <= roots <= 1 and whole_words + roots < 1):
        raise BadInput(f"--whole-words and --roots are shares of the vocabulary, 0 to 1 and less than 1 together, "
                       f"got {whole_words} and {roots}")
    if morph_keep < 0:
        raise BadInput(f"--morph-keep must be 0 or more, got {morph_keep}")
    specials = [EOS_TOKEN] + [t for t in as_list(special_tokens) if t != EOS_TOKEN]
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()) and not force:
        prepare_out_dir(out_path, force=False, what="tokenizer")
    n_docs = manifest["splits"]["train"]["documents"]
    two_phase = algorithm == "bpe" and not (morph or plain) and _has_analyzer()
    morph = morph or two_phase
    first = max(vocab_size - round((whole_words + roots) * vocab_size), len(specials) + 256) if two_phase else vocab_size
    tok = build_tokenizer(algorithm, pretokenizer)
    trainer = make_trainer(algorithm, first, min_frequency, specials)
    start = time.time()
    docs: Iterator[str] = iter_split(data, "train")
    if morph:
        from fidan.tokenizer.morph import Segmenter

        counts = Counter(w for doc in iter_split(data, "train") for w in words(doc))
        segments = Segmenter().segment_many(counts, progress=True)
        keep_whole = {w for w, _ in counts.most_common(0 if two_phase else morph_keep)}
        docs = morph_marked(docs, segments, keep_whole)
        # Training only: the cut marks split pre-tokens (and vanish) before the Turkish split runs.
        final_pretokenizer = tok.pre_tokenizer
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(MORPH_SEP), behavior="removed"), final_pretokenizer])
        analyzed = sum(n for w, n in counts.items() if segments.get(w) is not None) / max(sum(counts.values()), 1)
    tok.train_from_iterator(docs, trainer, length=n_docs)
    if morph:
        tok.pre_tokenizer = final_pretokenizer
    joined = joined_roots = 0
    if two_phase and first < vocab_size:
        from fidan.tokenizer.whole_words import add_whole_words, root_pretokens, word_pretokens

        root_budget = min(round(roots * vocab_size), vocab_size - tok.get_vocab_size())
        tok, joined_roots = add_whole_words(tok, root_pretokens(tok, counts, segments), root_budget)
        left = vocab_size - tok.get_vocab_size()  # whatever the roots left goes to words
        tok, joined = add_whole_words(tok, word_pretokens(tok, iter_split(data, "train")), left)
    tok = complete_alphabet(tok)
    seconds = time.time() - start
    with atomic_dir(out_path) as tmp:
        save_tokenizer(tok, tmp)
    kind = f"{algorithm}{' + morph' if morph else ''}, {pretokenizer} pre-tokenizer"
    note = f" ({analyzed:.0%} of training words analyzed)" if morph else ""
    if two_phase:
        kind = (f"bpe, merges inside morphemes + {joined_roots:,} roots + {joined:,} whole words, "
                f"{pretokenizer} pre-tokenizer")
    print(f"tokenizer: {kind}, {tok.get_vocab_size():,} tokens, trained in {seconds:.1f}s{note} → {out_path}")
    if tok.get_vocab_size() < 0.9 * vocab_size:
        print(f"warning: --vocab-size {vocab_size:,} asked, {tok.get_vocab_size():,} made: the training text has no "
              f"more pairs seen --min-frequency {min_frequency} times; give more text, or ask for fewer tokens",
              file=sys.stderr)
    return out_path
