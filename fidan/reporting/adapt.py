"""The report section of an adapted model: what the vocabulary extension did, and where training took it."""

from __future__ import annotations

from pathlib import Path

from fidan.artifacts.extension import Extension
from fidan.reporting.markdown import fmt, table


def adaptation_section(root: Path, final: dict | None) -> list[str]:
    """Tokens added, held-out tokens and bits per byte before and after, per initialisation; [] if none."""
    record = Extension.read(root)
    if record is None:
        return []
    h = record.held_out or {}
    bpb = h.get("bpb") or {}
    rows_before, rows_after = (record.embedding_rows or [None, None])[:2]
    L = ["## Vocabulary extension", "",
         f"Base model `{record.base}`: {len(record.new_ids or []):,} Turkish tokens added as BPE "
         f"merges learned on `{record.data}` (embedding rows {rows_before:,} → {rows_after:,}); new rows "
         f"started as **{record.init}**.", ""]
    L += table([("tokens per word", fmt(h.get("tokens_per_word_before")), fmt(h.get("tokens_per_word_after"))),
                ("bytes per token", fmt(h.get("bytes_per_token_before")), fmt(h.get("bytes_per_token_after"))),
                ("tokens", h.get("tokens_before"), h.get("tokens_after"))],
               (f"held-out ({h.get('documents')} documents)", "base tokenizer", "extended"))
    L += [f"The extended tokenizer spends **{h.get('tokens_saved', 0):.1%} fewer tokens** on the held-out text.", ""]
    if bpb:
        rows = [("base model (base tokenizer)", fmt(bpb.get("base"), 4))]
        rows += [(f"extended, rows from {name}", fmt(v, 4)) for name, v in bpb.items() if name != "base"]
        if final and final.get("val_bpb") is not None:
            rows.append(("this run, after training (whole val split)", f"**{fmt(final['val_bpb'], 4)}**"))
        L += ["Held-out bits per byte right after the extension, before any training, for each initialisation of "
              f"the new rows ({h.get('documents')} held-out documents):", ""]
        L += table(rows, ("model", "bits per byte"))
    examples = [t["text"] for t in (record.new_tokens or [])[:24]]
    if examples:
        L += ["First new tokens (most tokens saved first): " + ", ".join(f"`{t}`" for t in examples), ""]
    return L
