"""New Turkish tokens for a base BPE tokenizer, learned as merges on top of its own segmentation.

Why merges and not ``add_tokens``: tokens added that way are matched in the raw text before the model
runs, greedily and across word boundaries, so "lar" added as a token also cuts "Alarm" and "kalarak"
in the wrong places, and longer added words hide shorter ones. A BPE merge only fires inside a
pre-token, after every base merge, exactly where the data showed the pair.

How: each training word is cut by the base tokenizer; every base token it uses becomes one private
Unicode character, and a plain BPE trainer learns merges over those characters. Each merge joins two
adjacent tokens of the base segmentation, its count is the number of tokens it saves on the data, and
merges come out in that order; appended after the base merges, they fire at encoding time on the base
segmentation, as they did in training. A new token remembers the base tokens it replaces, which is what
its embedding starts from.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from tokenizers import Tokenizer, models, trainers

from fidan.errors import FidanError

PRIVATE_BASE = 0xF0000  # Supplementary Private Use Area-A and -B: 131,068 code points no text uses
PRIVATE_SIZE = 0x10FFFD - PRIVATE_BASE


@dataclass
class NewToken:
    token: str  # in the base vocabulary's alphabet (byte-level characters for byte-level BPE)
    pieces: list[int]  # the base token ids it replaces, in order


@dataclass
class Extension:
    merges: list[tuple[str, str]]  # in rank order, to append after the base merges
    new_tokens: list[NewToken] = field(default_factory=list)
    words: int = 0  # word occurrences seen in the data
    base_tokens: int = 0  # tokens the base tokenizer spends on them


def _spec(tok: Tokenizer) -> dict:
    spec = json.loads(tok.to_str())
    kind = (spec.get("model") or {}).get("type")
    if kind != "BPE":
        raise FidanError(f"vocabulary extension needs a BPE tokenizer; the base tokenizer is {kind or 'unknown'}")
    return spec


def count_words(tok: Tokenizer, texts: Iterable[str]) -> Counter:
    """Pre-token counts of the texts, after the base tokenizer's normalizer and pre-tokenizer."""
    counts: Counter = Counter()
    norm, pre = tok.normalizer, tok.pre_tokenizer
    for text in texts:
        if norm is not None:
            text = norm.normalize_str(text)
        if pre is None:
            counts[text] += 1
        else:
            counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    return counts


def learn_extension(tok: Tokenizer, texts: Iterable[str], n_new: int, min_frequency: int = 2) -> Extension:
    """Up to ``n_new`` new tokens for ``tok``, ranked by the tokens they save on ``texts``.

    Fewer come back when the data does not repeat enough pairs (``min_frequency``); the caller decides
    whether that is an error.
    """
    return learn_from_counts(tok, count_words(tok, texts), n_new, min_frequency)


def learn_from_counts(tok: Tokenizer, counts: Mapping[str, int], n_new: int, min_frequency: int = 2) -> Extension:
    """``learn_extension`` over pre-token counts (``count_words``), which may be weighted (whole numbers)."""
    spec = _spec(tok)
    if n_new <= 0:
        raise FidanError(f"--add must be positive, got {n_new}")
    base_vocab: dict[str, int] = spec["model"]["vocab"]
    char_of: dict[int, str] = {}  # base token id → private character
    string_of: dict[str, str] = {}  # private character → base token string
    id_of: dict[str, int] = {}
    words: Counter = Counter()
    ext = Extension(merges=[])
    for word, n in counts.items():
        pieces = tok.model.tokenize(word)
        ext.words += n
        ext.base_tokens += n * len(pieces)
        if len(pieces) < 2:
            continue  # nothing to merge
        chars = []
        for p in pieces:
            c = char_of.get(p.id)
            if c is None:
                if len(char_of) >= PRIVATE_SIZE:
                    raise FidanError("the data uses more distinct base tokens than this method can handle")
                c = char_of[p.id] = chr(PRIVATE_BASE + len(char_of))
                string_of[c], id_of[c] = p.value, p.id
            chars.append(c)
        words["".join(chars)] += n
    if not words:
        raise FidanError("the data gives no words of two or more base tokens; pass a larger Turkish data folder")

    # Merges whose result is already a base token cost no new row; ask for some spare merges for them.
    budget = n_new + n_new // 4 + 64
    learner = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=len(char_of) + budget, min_frequency=min_frequency,
                                  initial_alphabet=list(string_of), limit_alphabet=len(string_of),
                                  show_progress=False)
    learner.train_from_iterator(_repeat(words), trainer=trainer, length=sum(words.values()))
    learned = json.loads(learner.to_str())["model"]["merges"]

    new: dict[str, NewToken] = {}
    for merge in learned:
        a, b = merge.split(" ") if isinstance(merge, str) else merge
        left, right = _string(a, string_of), _string(b, string_of)
        result = left + right
        if result not in base_vocab and result not in new:
            if len(new) == n_new:
                break
            new[result] = NewToken(result, [id_of[c] for c in a + b])
        ext.merges.append((left, right))
    ext.new_tokens = list(new.values())
    return ext


def _string(chars: str, string_of: dict[str, str]) -> str:
    return "".join(string_of[c] for c in chars)


def _repeat(words: Counter, batch: int = 4096) -> Iterator[list[str]]:
    """Every word as often as it occurs, in batches (the trainer counts them itself)."""
    out: list[str] = []
    for word, n in words.items():
        out.extend([word] * n)
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def extend_tokenizer(tok: Tokenizer, ext: Extension) -> tuple[Tokenizer, list[int]]:
    """``tok`` with the new tokens in its vocabulary and their merges after its own; and the new ids.

    New ids follow the highest id in use (special tokens included), so no existing id moves.
    """
    spec = _spec(tok)
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    added = {t["content"]: t["id"] for t in spec.get("added_tokens") or []}
    used = [*vocab.values(), *added.values()]
    next_id = max(used) + 1 if used else 0
    # Special tokens that sit after the model's vocabulary (Qwen's <|endoftext|> ... at 151,643+) join it
    # with their own ids: tokenizers gives an added token missing from the model the id "model size + k",
    # which would land on the new tokens once the model's vocabulary has a gap.
    for content, i in added.items():
        vocab.setdefault(content, i)
    ids = []
    for t in ext.new_tokens:
        vocab[t.token] = next_id
        ids.append(next_id)
        next_id += 1
    as_strings = bool(model["merges"]) and isinstance(model["merges"][0], str)
    model["merges"] = list(model["merges"]) + [f"{a} {b}" if as_strings else [a, b] for a, b in ext.merges]
    extended = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    moved = [c for c, i in added.items() if extended.token_to_id(c) != i]
    moved += [t.token for t, i in zip(ext.new_tokens, ids, strict=True) if extended.token_to_id(t.token) != i]
    if moved:  # never hand out a tokenizer whose ids disagree with the embedding rows
        raise FidanError(f"extending the tokenizer moved the ids of {moved[:3]}; this tokenizer layout is not supported")
    return extended, ids
