"""`fidan bench`: measurements that compare fidan with a yardstick side by side in one run.

Like `fidan demo`, this package sits above the stages: a speedrun calls the corpus, tokenizer and
pretraining stages in turn.
"""
