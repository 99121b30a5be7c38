"""The tokenizer, chat template and stop tokens of a GGUF file, and the Ollama Modelfile beside it.

llama.cpp runs byte-level BPE as ``tokenizer.ggml.model = "gpt2"``: the vocabulary in id order, the
merges, and the name of a pre-tokenizer (a split regex) that llama.cpp has built in
(``tokenizer.ggml.pre``); it cannot read a regex from the file. GPT-2's byte-level regex and Qwen's
patterns are built in, so those tokenizers encode in llama.cpp as they do in fidan. fidan's Turkish
patterns are not: the file names ``llama-bpe`` (Llama 3's pattern), the built-in one closest to them,
and llama.cpp's own tokenization of text differs from fidan's around apostrophe suffixes that start
with d, t, s or m (``'da``, ``'te``), a quote or bracket before a word, and numbers of four or more
digits (see docs/adapt.md for the measured share). Ids given to llama.cpp directly are unaffected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fidan.artifacts.tokenizer import TokenizerBundle
from fidan.errors import BadInput
from fidan.text import chat_template as fmt
from fidan.text.split_pattern import turkish_pattern

# A pre-tokenizer llama.cpp knows by name, for the split regex a tokenizer.json uses (exact matches).
QWEN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN35 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
KNOWN_PATTERNS = {QWEN: "qwen2", QWEN35: "qwen35"}
# fidan's Turkish patterns have no llama.cpp twin; Llama 3's keeps the most of their tokens (docs/adapt.md).
TURKISH_PRE = "llama-bpe"
TURKISH_PATTERNS = {turkish_pattern(False), turkish_pattern(True)}


@dataclass
class GGUFVocab:
    """What a GGUF file says about its tokenizer."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    pre_exact: bool  # llama.cpp's built-in pre-tokenizer is the tokenizer's own
    eos_id: int
    eot_id: int | None  # </RESP>: the end of an assistant turn, after tuning
    chat_template: str | None
    specials: list[str] = field(default_factory=list)


def pre_tokenizer_name(spec: dict) -> tuple[str, bool]:
    """llama.cpp's pre-tokenizer name for a tokenizer.json's pre_tokenizer, and whether it is exact."""
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2", True
    parts = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if len(parts) == 2 and parts[0].get("type") == "Split" and parts[1].get("type") == "ByteLevel" \
            and not parts[1].get("use_regex", True):
        regex = (parts[0].get("pattern") or {}).get("Regex")
        if regex in KNOWN_PATTERNS:
            return KNOWN_PATTERNS[regex], True
        if regex in TURKISH_PATTERNS:
            return TURKISH_PRE, False
    raise BadInput("GGUF export needs a byte-level BPE tokenizer with fidan's Turkish, GPT-2's or Qwen's "
                   "pre-tokenizer (llama.cpp knows only built-in split patterns); this tokenizer's is "
                   f"{json.dumps(pre)[:120]}")


def gguf_vocab(tok: TokenizerBundle, n_vocab: int) -> GGUFVocab:
    """The vocabulary of ``tok`` as llama.cpp's ``gpt2`` tokenizer, padded with unused entries to the
    model's ``n_vocab`` embedding rows."""
    spec = json.loads(tok.tokenizer.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise BadInput(f"GGUF export supports byte-level BPE tokenizers; this run's is {model.get('type')} "
                       "(llama.cpp reads Unigram only as SentencePiece and WordPiece only for BERT encoders); "
                       "train a BPE tokenizer (`fidan tokenizer train --algorithm bpe`)")
    pre, exact = pre_tokenizer_name(spec)
    size = tok.vocab_size
    if size > n_vocab:
        raise BadInput(f"the tokenizer has {size} tokens but the model only {n_vocab} embedding rows; "
                       "the run's tokenizer does not belong to it")
    added = {t.content: t.special for t in tok.tokenizer.get_added_tokens_decoder().values()}
    tokens, types = [], []
    for i in range(n_vocab):
        text = tok.tokenizer.id_to_token(i) if i < size else None
        if text is None:  # embedding rows past the tokenizer: never produced, never sampled sensibly
            tokens.append(f"[PAD{i}]")
            types.append(5)  # UNUSED
        else:
            tokens.append(text)
            types.append(1 if text not in added else 3 if added[text] else 4)  # NORMAL, CONTROL, USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    eot = tok.tokenizer.token_to_id(fmt.END_OF_RESPONSE)
    template = tok.config.get("chat_template")
    jinja = tok.path / "chat_template.jinja"
    if template is None and jinja.exists():
        template = jinja.read_text(encoding="utf-8")
    if template is None and eot is not None:
        template = fmt.CHAT_TEMPLATE
    return GGUFVocab(tokens, types, merges, pre, exact, tok.eos_id, eot, template,
                     [t for t, special in added.items() if special])


def modelfile(vocab: GGUFVocab, block_size: int, gguf_name: str = "model.gguf") -> str:
    """An Ollama Modelfile: fidan's chat format as a Go template when the tokenizer has its markers, the
    raw prompt for a base model; every end token as a stop; the model's own context length. A tokenizer
    with another chat template (Qwen's) gets no TEMPLATE: Ollama takes it from the GGUF's chat template."""
    if all(t in vocab.specials for t in fmt.CHAT_TOKENS):
        # renders <SYS>s</SYS><INST>u</INST><RESP>a</RESP>…<INST>u</INST><RESP>, as CHAT_TEMPLATE does
        template = ("{{- range .Messages }}"
                    f'{{{{- if eq .Role "system" }}}}{fmt.SYS}{{{{ .Content }}}}{fmt.SYS_END}'
                    f'{{{{- else if eq .Role "user" }}}}{fmt.INST}{{{{ .Content }}}}{fmt.INST_END}{fmt.RESP}'
                    f'{{{{- else if eq .Role "assistant" }}}}{{{{ .Content }}}}{fmt.RESP_END}'
                    "{{- end }}{{- end }}")
    else:
        template = "{{ .Prompt }}" if vocab.chat_template is None else None
    stops = [vocab.tokens[vocab.eos_id]] + ([fmt.RESP_END] if vocab.eot_id is not None else [])
    lines = [f"FROM ./{gguf_name}", *([f'TEMPLATE """{template}"""'] if template else []),
             f"PARAMETER num_ctx {block_size}", *(f'PARAMETER stop "{s}"' for s in stops)]
    return "\n".join(lines) + "\n"
