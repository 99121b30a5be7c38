"""`fidan tokenizer eval`: measure tokenizers on the same Turkish text with the same code.

Metrics (docs/tokenizers.md defines each one precisely): fertility (tokens per word), bytes per token,
continued-word share, vocabulary used, encode throughput, %Pure and %TR of the unique tokens, and
precision/recall/F1 of token boundaries inside words against two references: the analyzer's morpheme
cuts and the Turkish Web Treebank's inflectional-group joins.
"""

from __future__ import annotations

import statistics
import time
import unicodedata
from pathlib import Path

from fidan.artifacts.datadir import iter_split
from fidan.artifacts.documents import read_documents
from fidan.errors import BadInput, BadRunState, FidanError
from fidan.runtime.io import as_list, atomic_write_json
from fidan.text.turkish import lower_tr, word_spans
from fidan.tokenizer.reference import Measured, load_measured

APOSTROPHES = "'’"


def read_texts(text: str) -> list[str]:
    """The documents to measure: a local file's (fidan.artifacts.documents' rule: a .txt file's blank-line
    separated paragraphs, a .jsonl file's "text" records, ...) or a data folder's val split."""
    path = Path(text)
    if path.is_dir():
        docs = [d for d in iter_split(path, "val") if d.strip()]
        if not docs:
            raise BadInput(f"data folder {path} has no validation documents (made with --val-fraction 0?); "
                           "pass a text file with --text")
        return docs
    if not path.exists():
        raise BadInput(f"text not found: {path}; pass a .txt file, a .jsonl file or a data folder")
    docs = [unicodedata.normalize("NFC", d) for d in read_documents(path) if d.strip()]
    if not docs:
        raise BadInput(f"{path} has no text to measure")
    return docs


def token_spans(text: str, pieces: list[bytes]) -> list[tuple[int, int]]:
    """Character span of each token in ``text`` from the tokens' bytes.

    Whitespace is skipped on both sides while aligning, so tokenizers that add a leading space
    (SentencePiece) line up too; a token that cuts a character in two is given that character.
    """
    raw = text.encode("utf-8")
    char_of = [0] * (len(raw) + 1)  # byte offset → index of the character holding it
    pos = 0
    for ci, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        char_of[pos:pos + n] = [ci] * n
        pos += n
    char_of[len(raw)] = len(text)
    if b"".join(pieces) == raw:
        spans, pos = [], 0
        for p in pieces:
            end = pos + len(p)
            spans.append((char_of[pos], char_of[end - 1] + 1) if p else (char_of[pos], char_of[pos]))
            pos = end
        return spans
    spans, pos = [], 0
    for p in pieces:
        first = last = None
        for b in p:
            if b in b" \t\n\r\x0b\x0c":
                continue
            while pos < len(raw) and raw[pos] in b" \t\n\r\x0b\x0c":
                pos += 1
            if pos >= len(raw) or raw[pos] != b:
                raise BadInput("a tokenizer changed the text while encoding (normalization); "
                                 "fidan measures only tokenizers that keep the text")
            first = pos if first is None else first
            last = pos
            pos += 1
        spans.append((char_of[first], char_of[last] + 1) if first is not None else (char_of[pos], char_of[pos]))
    return spans


def _surface(piece: bytes) -> str:
    """A token's text for %Pure/%TR: decoded, space markers and a leading apostrophe stripped, lower case."""
    s = piece.decode("utf-8", errors="replace").strip()
    return lower_tr(s.lstrip(APOSTROPHES))


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "gold": tp + fn}


def measure(tok: Measured, lines: list[str], segments: dict | None, gold_ig: dict[str, list[int]],
            repeats: int = 3) -> dict:
    """Every metric of one tokenizer on ``lines``; ``segments`` maps words to analyzer cuts (or None)."""
    n_bytes = sum(len(line.encode("utf-8")) for line in lines)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        encoded = [tok.encode(line) for line in lines]
        times.append(time.perf_counter() - start)
    cache: dict[int, bytes] = {}
    n_tokens = n_words = word_tokens = continued = 0
    counts = {"morph": [0, 0, 0], "treebank": [0, 0, 0]}  # tp, fp, fn
    used: set[int] = set()
    for line, ids in zip(lines, encoded, strict=True):
        used.update(ids)
        n_tokens += len(ids)
        pieces = [cache[i] if i in cache else cache.setdefault(i, tok.piece(i)) for i in ids]
        starts = sorted({s for s, e in token_spans(line, pieces) if e > s})
        joins = gold_ig.get(line)
        k = 0
        for ws, we in word_spans(line):
            while k < len(starts) and starts[k] <= ws:
                k += 1
            inner = []
            j = k
            while j < len(starts) and starts[j] < we:
                inner.append(starts[j] - ws)
                j += 1
            n_words += 1
            word_tokens += len(inner) + 1
            continued += bool(inner)
            pred = set(inner)
            if segments is not None:
                cuts = segments.get(line[ws:we])
                if cuts is not None:
                    _add(counts["morph"], pred, set(cuts))
            if joins is not None:
                gold = {c - ws for c in joins if ws < c < we}
                if gold:  # words with at least one inflectional-group join
                    _add(counts["treebank"], pred, gold)
    surfaces = {_surface(cache[i]) for i in used if i in cache}
    surfaces = {s for s in surfaces if any(c.isalpha() for c in s)}
    result = {
        "name": tok.name,
        "vocab_size": tok.vocab_size,
        "tokens": n_tokens,
        "words": n_words,
        "fertility": n_tokens / max(n_words, 1),
        "pieces_per_word": word_tokens / max(n_words, 1),
        "bytes_per_token": n_bytes / max(n_tokens, 1),
        "continued_words": continued / max(n_words, 1),
        "vocab_used": len(used),
        "vocab_used_share": len(used) / max(tok.vocab_size, 1),
        "encode_mb_s": n_bytes / 1e6 / statistics.median(times),
        "boundaries_morph": _prf(*counts["morph"]) if segments is not None else None,
        "boundaries_treebank": _prf(*counts["treebank"]) if gold_ig else None,
        "_surfaces": surfaces,
    }
    return result


def _add(acc: list[int], pred: set[int], gold: set[int]) -> None:
    acc[0] += len(pred & gold)
    acc[1] += len(pred - gold)
    acc[2] += len(gold - pred)


def morpheme_sets(segments: dict) -> set[str]:
    """Every morpheme surface (lower case, apostrophe dropped) of the analyzed words."""
    out: set[str] = set()
    for word, cuts in segments.items():
        if cuts is None:
            continue
        bounds = [0, *cuts, len(word)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            part = lower_tr(word[a:b].strip(APOSTROPHES))
            if part:
                out.add(part)
    return out


def _treebank_gold(docs: list[str]) -> dict[str, list[int]]:
    """Gold joins per document, from those of its lines that are treebank sentences (offsets in the document)."""
    from fidan.text.treebank import ig_sentences

    wanted = {line for doc in docs for line in doc.split("\n")}
    sentences = {text: joins for text, joins in ig_sentences() if text in wanted}
    gold: dict[str, list[int]] = {}
    for doc in docs:
        joins, start = [], 0
        for line in doc.split("\n"):
            joins += [start + j for j in sentences.get(line, ())]
            start += len(line) + 1
        if joins or doc in sentences:
            gold[doc] = joins
    return gold


def markdown_table(results: list[dict]) -> str:
    head = ("| tokenizer | vocab | tokens/word | pieces/word | bytes/token | continued | vocab used | MB/s "
            "| %Pure | %TR | F1 morph (P/R) | F1 treebank (P/R) |")
    rows = [head, "|" + "---|" * 12]

    def prf(d: dict | None) -> str:
        return f"{d['f1']:.3f} ({d['precision']:.2f}/{d['recall']:.2f})" if d else "n/a"

    def pct(x: float | None) -> str:
        return f"{100 * x:.1f}" if x is not None else "n/a"

    for r in results:
        rows.append(f"| {r['name']} | {r['vocab_size']:,} | {r['fertility']:.3f} | {r['pieces_per_word']:.3f} "
                    f"| {r['bytes_per_token']:.2f} "
                    f"| {pct(r['continued_words'])}% | {r['vocab_used']:,} | {r['encode_mb_s']:.2f} "
                    f"| {pct(r['pure'])} | {pct(r['tr'])} | {prf(r['boundaries_morph'])} "
                    f"| {prf(r['boundaries_treebank'])} |")
    return "\n".join(rows)


def plot_results(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("fertility", "tokens per word (lower is better)"), ("pure", "%Pure (higher is better)"),
              ("tr", "%TR (higher is better)"), ("f1_morph", "boundary F1 vs analyzer"),
              ("f1_treebank", "boundary F1 vs treebank IGs"), ("encode_mb_s", "encode MB/s")]
    names = [r["name"] for r in results]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        vals = []
        for r in results:
            if key == "f1_morph":
                v = (r["boundaries_morph"] or {}).get("f1")
            elif key == "f1_treebank":
                v = (r["boundaries_treebank"] or {}).get("f1")
            else:
                v = r.get(key)
            vals.append(float("nan") if v is None else (100 * v if key in ("pure", "tr") else v))
        ax.bar(range(len(names)), vals, color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _guard(path: str | None, force: bool) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.exists() and not force:
        raise BadRunState(f"{p} already exists; pass --force to replace it or choose another path")
    return p


def evaluate_tokenizers(
    tokenizer: list[str] | str,
    text: str,
    json: str | None = None,
    plot: str | None = None,
    morph: bool = True,
    treebank: bool = True,
    repeats: int = 3,
    force: bool = False,
) -> list[dict]:
    """Measure tokenizers on the same text: fertility, bytes/token, %Pure, %TR, boundary F1, speed.

    Args:
        tokenizer: a tokenizer folder, a tokenizer.json, or a reference name: qwen, qwen3.6,
            mistral-tekken, mistral-sp (repeatable; references need fidan[tokenizers-ref]).
        text: held-out text: a .txt file (each blank-line-separated paragraph is a document), a .jsonl
            file (field "text"), or a data folder (its val split).
        json: write every figure to this JSON file.
        plot: write a bar chart of the main figures to this PNG file.
        morph: measure the Pure and TR shares and boundary F1 against the analyzer's segmentation
            (needs fidan[morph]).
        treebank: measure boundary F1 against the Turkish Web Treebank on the text's docs that are
            treebank sentences.
        repeats: encode the text this many times; throughput is the median.
        force: replace existing --json / --plot files.
    """
    tokenizer = [str(t) for t in as_list(tokenizer)]
    if not tokenizer:
        raise BadInput("pass at least one --tokenizer (a folder, a tokenizer.json or a reference name)")
    json_path, plot_path = _guard(json, force), _guard(plot, force)
    docs = read_texts(text)
    measured = [load_measured(spec) for spec in tokenizer]
    segments = morphs = None
    if morph:
        from fidan.tokenizer.morph import Segmenter

        segmenter = Segmenter()
        text_words = {doc[a:b] for doc in docs for a, b in word_spans(doc)}
        try:
            segments = segmenter.segment_many(text_words, progress=True)
        except FidanError as e:
            raise type(e)(f"{e}; or pass --no-morph to skip the morphology figures") from None
        morphs = morpheme_sets(segments)
    gold_ig: dict[str, list[int]] = {}
    if treebank:
        try:
            gold_ig = _treebank_gold(docs)
        except FidanError:
            gold_ig = {}  # turkish-treebanks not installed: that reference is simply absent
    results = [measure(t, docs, segments, gold_ig, repeats) for t in measured]
    if morph:
        every = set().union(*(r["_surfaces"] for r in results))
        known = segmenter.segment_many(every, progress=True)
    for r in results:
        surfaces = r.pop("_surfaces")
        r["unique_word_tokens"] = len(surfaces)
        if morph and surfaces:
            r["pure"] = sum(s in morphs for s in surfaces) / len(surfaces)
            r["tr"] = sum(s in morphs or known.get(s) is not None for s in surfaces) / len(surfaces)
        else:
            r["pure"] = r["tr"] = None
    table = markdown_table(results)
    print(f"{len(docs):,} documents, {sum(len(x.encode()) for x in docs):,} bytes, "
          f"{len(gold_ig):,} of them with treebank sentences (gold joins)")
    print(table)
    if json_path:
        atomic_write_json(json_path, {"text": str(text), "documents": len(docs), "results": results,
                                      "table": table})
    if plot_path:
        plot_results(results, plot_path)
    return results

