"""Streaming text: token ids in, pieces of text out that are safe to show as they come."""

from __future__ import annotations

from collections.abc import Callable, Sequence

INCOMPLETE = "\ufffd"  # what a byte-level decoder gives for a character whose bytes have not all arrived


class TextStream:
    """The text of one row of generated tokens, released piece by piece.

    A Turkish letter such as ``ğ`` is two UTF-8 bytes and may come as two tokens: it is released only once
    whole. Text that could be the start of a stop string is held back until it is not (or is cut off when
    the stop string completes). The pieces returned by ``push`` and ``finish`` join to ``text``.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop_strings: Sequence[str] = ()):
        self.decode = decode
        self.stops = [s for s in stop_strings if s]
        self.ids: list[int] = []
        self.text = ""  # everything decoded so far, cut before a stop string
        self.shown = ""  # the part already released
        self.stopped = False  # a stop string has appeared

    def push(self, token: int) -> str:
        """Add one token; return the text that became safe to show (often "")."""
        self.ids.append(token)
        # Decode the whole row: a character split across tokens only decodes right with all its bytes.
        text = self.decode(self.ids)
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.text, self.stopped = text[:min(cuts)], True
            return self._release(self.text)
        self.text = text
        if text.endswith(INCOMPLETE):
            return ""
        return self._release(text[:len(text) - self._held(text)])

    def finish(self) -> str:
        """The rest of the text once the row ends (held-back text, or a character that never completed)."""
        return self._release(self.text)

    def _held(self, text: str) -> int:
        """Length of the longest end of ``text`` that a stop string starts with."""
        return max((n for s in self.stops for n in range(min(len(s) - 1, len(text)), 0, -1)
                    if text.endswith(s[:n])), default=0)

    def _release(self, upto: str) -> str:
        # A decoder may rewrite earlier text (e.g. spacing) when later tokens arrive: release only what extends
        # the text already shown.
        if len(upto) <= len(self.shown) or not upto.startswith(self.shown):
            return ""
        piece, self.shown = upto[len(self.shown):], upto
        return piece
