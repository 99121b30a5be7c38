"""Corpus stage: load Turkish text from bundled packages, local files and HF datasets; clean, dedupe, split."""
