"""Tokenizer stage: train tokenizers on a data folder and encode the folder into token files."""
