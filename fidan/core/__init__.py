"""Core building blocks shared by every stage: model, Turkish text rules, checkpoints, I/O."""
