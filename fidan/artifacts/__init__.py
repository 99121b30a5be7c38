"""What stages write and read on disk: run folders and checkpoints, data folders, tokenizer folders, token files, instruction data, documents."""
