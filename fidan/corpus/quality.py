"""Quality filters for `fidan data prepare`: Gopher- and C4-style rules with Turkish thresholds.

Two kinds of rule. Line rules remove parts of a document: a line, or one sentence of a very long line
(some documents are one long line: a speech with an index of page references appended to its last
paragraph), mostly made of numbers, references or punctuation; and lines that recur in many documents
(navigation, cookie banners). Document rules keep or drop a whole document: mean word length, symbols
per word, lines ending in an ellipsis, the language (fidan/corpus/language.py), repeated lines and
n-grams, Turkish function words, placeholder text and code braces.

Every rule has a name, settings with a default and a valid range, and counts of what it removed; the
defaults keep nearly all of the bundled Turkish prose (docs/data.md has the measurements).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from fidan.corpus import language
from fidan.errors import BadInput, MissingExtra
from fidan.text.turkish import lower_tr

LONG_LINE = 500  # characters: longer lines are judged sentence by sentence
_SENTENCE_END = re.compile(r"(?<=[.!?…])(\s+)")
_ELLIPSIS = ("...", "…")
# Common Turkish function words; real Turkish prose of any length carries several of them.
STOP_WORDS = frozenset({"ve", "bir", "bu", "da", "de", "için", "ile", "çok", "daha", "gibi", "olarak", "ama", "ne",
                        "o", "şu", "her", "en", "kadar", "sonra", "mi", "ki"})


@dataclass(frozen=True)
class Rule:
    """A filter's description: its level, settings with defaults and (low, high) ranges."""

    level: str  # "line" (removes lines), "corpus" (lines repeated across documents), "document"
    what: str
    settings: dict[str, float]
    ranges: dict[str, tuple[float, float]]


RULES: dict[str, Rule] = {
    "numeric_lines": Rule(
        "line", "lines (sentences of a long line) of min_words words or more whose words are mostly numbers, "
                "references or punctuation, and lines without a letter",
        {"max_number_words": 0.6, "min_words": 6},
        {"max_number_words": (0.0, 1.0), "min_words": (1, 1000)}),
    "repeated_lines": Rule(
        "corpus", "lines of at least min_chars characters found in at least min_documents documents",
        {"min_documents": 5, "min_chars": 30},
        {"min_documents": (2, 1e12), "min_chars": (1, 1e6)}),
    "word_length": Rule(
        "document", "mean word length (letters and digits) outside [min, max] (documents of min_words words or more)",
        {"min": 3.0, "max": 12.0, "min_words": 10},
        {"min": (0.0, 100.0), "max": (1.0, 1000.0), "min_words": (1, 1e9)}),
    "symbols": Rule(
        "document", "more than max_ratio '#' or ellipsis symbols per word (documents of min_words words or more)",
        {"max_ratio": 0.1, "min_words": 50}, {"max_ratio": (0.0, 100.0), "min_words": (1, 1e9)}),
    "ellipsis_lines": Rule(
        "document", "more than max_share of lines ending in an ellipsis (documents of min_lines lines or more)",
        {"max_share": 0.3, "min_lines": 5}, {"max_share": (0.0, 1.0), "min_lines": (1, 1e9)}),
    "repetition": Rule(
        "document", "duplicate lines or n-grams: characters in repeated lines, in the most frequent word "
                    "2-gram, or in repeated word 5- and 10-grams above the given shares (documents of min_words "
                    "words or more)",
        {"max_dup_lines": 0.3, "max_top_2gram": 0.2, "max_dup_5gram": 0.15, "max_dup_10gram": 0.1, "min_words": 50},
        {**{k: (0.0, 1.0) for k in ("max_dup_lines", "max_top_2gram", "max_dup_5gram", "max_dup_10gram")},
         "min_words": (1, 1e9)}),
    "stop_words": Rule(
        "document", "documents of min_words words or more with fewer than min_count Turkish function words "
                    "(" + ", ".join(sorted(STOP_WORDS)) + ")",
        {"min_count": 2, "min_words": 100}, {"min_count": (0, 1e9), "min_words": (1, 1e9)}),
    "language": Rule(
        "document", "documents not identified as Turkish: a Turkish confidence below min_confidence (lingua, on "
                    "up to sample_chars characters from the start, middle and end), or Azerbaijani or Turkmen "
                    "letters that Turkish lacks",
        {"min_confidence": 0.5, "sample_chars": 1000}, {"min_confidence": (0.0, 1.0), "sample_chars": (100, 1e9)}),
    "placeholder": Rule("document", "placeholder text ('lorem ipsum')", {}, {}),
    "code": Rule("document", "more than max_braces curly braces (code, templates)",
                 {"max_braces": 0}, {"max_braces": (0, 1e9)}),
}

_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")
_BLANK_RUNS = re.compile(r"\n{3,}")
_LETTER = re.compile(r"[^\W\d_]")
INTEGER_SETTINGS = {"min_words", "min_documents", "min_chars", "min_lines", "min_count", "max_braces", "sample_chars"}


def resolve(quality: bool = True, skip: list[str] | None = None, settings: list[str] | None = None
            ) -> dict[str, dict[str, float]]:
    """The filters to run and their settings, from ``--no-quality``, ``--skip-filter NAME`` and
    ``--quality-set NAME.KEY=VALUE``; an unknown name or an out-of-range value is a BadInput."""
    names = ", ".join(RULES)
    for name in skip or []:
        if name not in RULES:
            raise BadInput(f"unknown filter '{name}' in --skip-filter; filters are {names}")
    chosen = {n: dict(r.settings) for n, r in RULES.items() if quality and n not in (skip or [])}
    for item in settings or []:
        key, sep, value = item.partition("=")
        name, dot, setting = key.strip().partition(".")
        if not sep or not dot:
            raise BadInput(f"--quality-set takes NAME.SETTING=VALUE (e.g. stop_words.min_count=3), got '{item}'")
        if name not in RULES:
            raise BadInput(f"unknown filter '{name}' in --quality-set {item}; filters are {names}")
        rule = RULES[name]
        if setting not in rule.settings:
            known = ", ".join(rule.settings) or "none"
            raise BadInput(f"filter '{name}' has no setting '{setting}' (its settings: {known})")
        try:
            number = float(value)
        except ValueError:
            raise BadInput(f"--quality-set {item}: '{value}' is not a number") from None
        low, high = rule.ranges[setting]
        if not low <= number <= high or (setting in INTEGER_SETTINGS and number != int(number)):
            kind = "a whole number" if setting in INTEGER_SETTINGS else "a number"
            span = f", at least {low:g}" if high >= 1e9 else f" in [{low:g}, {high:g}]"
            raise BadInput(f"--quality-set {item}: {name}.{setting} must be {kind}{span}")
        if name in chosen:
            chosen[name][setting] = int(number) if setting in INTEGER_SETTINGS else number
    if "word_length" in chosen and chosen["word_length"]["min"] > chosen["word_length"]["max"]:
        raise BadInput("--quality-set: word_length.min must not exceed word_length.max")
    if "language" in chosen and not language.available():
        if any(item.strip().startswith("language.") for item in settings or []):
            raise MissingExtra(f"--quality-set language.*: the language filter needs lingua-language-detector: "
                               f"{language.INSTALL_HINT}, or pass --skip-filter language")
        del chosen["language"]  # on by default only where installed; not_run() says so in the manifest
    return chosen


def not_run(quality: bool = True, skip: list[str] | None = None) -> dict[str, str]:
    """Filters that are on by default but did not run because their library is missing, with why."""
    if quality and "language" not in (skip or []) and not language.available():
        return {"language": f"not run: lingua-language-detector is not installed ({language.INSTALL_HINT})"}
    return {}


def _digest(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()


def line_digests(text: str, min_chars: int) -> set[bytes]:
    """The digests of a document's distinct lines of at least ``min_chars`` characters (repeated_lines)."""
    return {_digest(line) for line in {ln.strip() for ln in text.split("\n")} if len(line) >= min_chars}


# A whitespace-separated word with a letter and no digit; the others are number-like: numbers, references
# such as ``(C-II)210,``, punctuation. Counted by one regex pass over a line, not word by word.
_WORDY = re.compile(r"(?<!\S)[^\s\d]*[^\W\d_][^\s\d]*(?!\S)")


def _segments(line: str) -> list[str]:
    """A line, or a long line as sentences with the whitespace after each: joined, they are the line."""
    if len(line) <= LONG_LINE:
        return [line]
    parts = _SENTENCE_END.split(line)
    return [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]


@dataclass
class Removed:
    documents: int = 0
    lines: int = 0
    characters: int = 0


@dataclass
class QualityFilter:
    """Runs the chosen filters on one cleaned document at a time; keeps counts and a sample per filter."""

    settings: dict[str, dict[str, float]]
    sample_size: int = 20
    removed: dict[str, Removed] = field(init=False)
    samples: dict[str, list[str]] = field(init=False)
    by_language: Counter = field(default_factory=Counter, init=False)  # documents the language filter dropped
    common_lines: set[bytes] = field(default_factory=set, init=False, repr=False)
    _counts: Counter = field(default_factory=Counter, init=False, repr=False)

    def __post_init__(self) -> None:
        self.removed = {n: Removed() for n in self.settings}
        self.samples = {n: [] for n in self.settings}

    @property
    def needs_line_counts(self) -> bool:
        """Whether a first pass must count lines across documents (the repeated_lines filter is on)."""
        return "repeated_lines" in self.settings

    def count_lines(self, text: str) -> None:
        """First pass: note each distinct long-enough line of one document."""
        for digest in line_digests(text, self.settings["repeated_lines"]["min_chars"]):
            self._counts[digest] += 1

    def finish_counting(self) -> None:
        s = self.settings["repeated_lines"]
        self.common_lines = {d for d, n in self._counts.items() if n >= s["min_documents"]}
        self._counts = Counter()

    def _keep_sample(self, name: str, text: str) -> None:
        if len(self.samples[name]) < self.sample_size:
            self.samples[name].append(text if len(text) <= 2000 else text[:2000] + " […]")

    def _line_rule(self, line: str) -> str | None:
        if "repeated_lines" in self.settings and self.common_lines and _digest(line.strip()) in self.common_lines:
            return "repeated_lines"
        return None

    def _segment_rule(self, segment: str) -> bool:
        s = self.settings["numeric_lines"]
        n = len(segment.split())
        if not n or n < s["min_words"]:
            return False
        return (n - len(_WORDY.findall(segment))) / n >= s["max_number_words"]

    def _strip_lines(self, text: str) -> tuple[str, dict[str, int]]:
        """Remove the lines and sentences the line rules reject; the characters each removed."""
        out, took = [], Counter()
        for line in text.split("\n"):
            name = self._line_rule(line)
            if name:
                self._note_line(name, line, took)
                continue
            if "numeric_lines" in self.settings:
                if line.strip() and _LETTER.search(line) is None:  # page numbers, rules: no letter at all
                    self._note_line("numeric_lines", line, took)
                    continue
                segments = _segments(line)
                kept = [seg for seg in segments if not self._segment_rule(seg)]
                if len(kept) < len(segments):
                    for seg in segments:
                        if self._segment_rule(seg):
                            self._note_line("numeric_lines", seg.strip(), took)
                    line = "".join(kept).rstrip()
                    if not line:
                        continue
            out.append(line)
        if not took:
            return text, took
        return _BLANK_RUNS.sub("\n\n", "\n".join(out)).strip(), took  # still at most one blank line

    def _note_line(self, name: str, line: str, took: Counter) -> None:
        self.removed[name].lines += 1
        self.removed[name].characters += len(line)
        took[name] += len(line)
        self._keep_sample(name, line)

    def _document_rule(self, text: str) -> str | None:
        s = self.settings
        lower = lower_tr(text)
        words = _WORD.findall(lower)
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if "placeholder" in s and "lorem ipsum" in lower:
            return "placeholder"
        if "code" in s and text.count("{") + text.count("}") > s["code"]["max_braces"]:
            return "code"
        if not words:
            return "word_length" if "word_length" in s else None
        if "word_length" in s and len(words) >= s["word_length"]["min_words"]:
            mean = sum(map(len, words)) / len(words)
            if not s["word_length"]["min"] <= mean <= s["word_length"]["max"]:
                return "word_length"
        if "symbols" in s and len(words) >= s["symbols"]["min_words"]:
            n = text.count("#") + text.count("…") + text.count("...")
            if n / len(words) > s["symbols"]["max_ratio"]:
                return "symbols"
        if "ellipsis_lines" in s and len(lines) >= s["ellipsis_lines"]["min_lines"]:
            share = sum(ln.rstrip().endswith(_ELLIPSIS) for ln in lines) / len(lines)
            if share > s["ellipsis_lines"]["max_share"]:
                return "ellipsis_lines"
        if "language" in s:
            code, confidence = language.identify(text, s["language"]["sample_chars"])
            if confidence < s["language"]["min_confidence"]:
                self.by_language["tr-uncertain" if code == "tr" else code] += 1
                return "language"
        if ("stop_words" in s and len(words) >= s["stop_words"]["min_words"]
                and sum(map(STOP_WORDS.__contains__, words)) < s["stop_words"]["min_count"]):
            return "stop_words"
        if ("repetition" in s and len(words) >= s["repetition"]["min_words"]
                and _repetitive(lines, words, s["repetition"])):
            return "repetition"
        return None

    def apply(self, text: str, min_chars: int = 1) -> str | None:
        """The document with rejected lines removed, or None when a filter drops it (counted)."""
        stripped, took = self._strip_lines(text)
        if len(stripped) < max(1, min_chars):
            if took:  # the line rules left nothing worth keeping: the one that took most removed it
                r = self.removed[max(took, key=took.get)]
                r.documents += 1
                r.characters += len(stripped)
                return None
            return stripped
        name = self._document_rule(stripped)
        if name:
            r = self.removed[name]
            r.documents += 1
            r.lines += stripped.count("\n") + 1
            r.characters += len(stripped)
            self._keep_sample(name, stripped)
            return None
        return stripped

    def state(self) -> dict:
        """What this filter removed, as JSON, to be added up over the pieces of a corpus by ``absorb``."""
        return {"removed": {n: vars(r) for n, r in self.removed.items()}, "samples": self.samples,
                "by_language": dict(self.by_language)}

    def absorb(self, state: dict) -> None:
        """Add the counts and samples of another piece (pieces absorbed in corpus order keep the first)."""
        for n, r in state["removed"].items():
            mine = self.removed[n]
            mine.documents, mine.lines, mine.characters = (mine.documents + r["documents"], mine.lines + r["lines"],
                                                           mine.characters + r["characters"])
        for n, texts in state["samples"].items():
            self.samples[n].extend(texts[: max(0, self.sample_size - len(self.samples[n]))])
        self.by_language.update(state["by_language"])

    def report(self) -> dict:
        """Each filter's level, settings and what it removed, for the manifest."""
        out = {n: {"level": RULES[n].level, "what": RULES[n].what, "settings": self.settings[n],
                   "removed": vars(self.removed[n]).copy()} for n in self.settings}
        if "language" in out:
            out["language"]["by_language"] = dict(self.by_language.most_common())
            out["language"]["detector"] = language.describe()
        return out


def _repetitive(lines: list[str], words: list[str], s: dict[str, float]) -> bool:
    """Gopher-style repetition: shares of characters in duplicated lines and word n-grams."""
    total = sum(map(len, lines)) or 1
    seen, dup = set(), 0
    for ln in lines:
        if ln in seen:
            dup += len(ln)
        seen.add(ln)
    if dup / total > s["max_dup_lines"]:
        return True
    chars = sum(map(len, words)) or 1
    if len(words) < 2:
        return False
    # Words as their hashes, n-grams as 64-bit polynomial hashes of those: whole-array work instead of
    # tuples (a collision, at odds of about n²/2⁶⁴ per document, could only merge two n-grams).
    ids = np.fromiter(map(hash, words), np.int64, len(words)).view(np.uint64)
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    with np.errstate(over="ignore"):
        pairs = ids[:-1] * np.uint64(0x9E3779B97F4A7C15) + ids[1:]
        _, first, counts = np.unique(pairs, return_index=True, return_counts=True)
        top = counts.max()
        if top > 1:  # the most frequent 2-gram; among equals, the one that comes first (as Counter has it)
            at = first[counts == top].min()
            if top * (lengths[at] + lengths[at + 1]) / chars > s["max_top_2gram"]:
                return True
        for n, key in ((5, "max_dup_5gram"), (10, "max_dup_10gram")):
            if len(words) < 2 * n:
                continue
            m = len(words) - n + 1
            h = np.zeros(m, np.uint64)
            for k in range(n):
                h = h * np.uint64(1_000_003) + ids[k:k + m] + np.uint64(1)
            _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
            repeats = np.flatnonzero(first[inverse] != np.arange(m))  # an n-gram seen at an earlier start
            if not len(repeats):
                continue
            cover = np.zeros(len(words) + 1, np.int64)
            np.add.at(cover, repeats, 1)
            np.add.at(cover, repeats + n, -1)
            covered = np.cumsum(cover[:-1]) > 0
            if lengths[covered].sum() / chars > s[key]:
                return True
    return False
