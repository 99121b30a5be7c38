"""fidan: grow Turkish language models from seed to chat.

Every CLI command is also a function here, with the same name and arguments, e.g.
``fidan.prepare_data(source=["tr-speeches"], out="data")`` or ``fidan.pretrain(...)``.
Functions import lazily so that ``import fidan`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "prepare_data": "fidan.corpus.prepare",
    "train_tokenizer": "fidan.tokenizer.train",
    "encode_data": "fidan.tokenizer.encode",
    "evaluate_tokenizers": "fidan.tokenizer.evaluate",
    "pretrain": "fidan.training.pretrain",
    "generate": "fidan.generation.generate",
    "build_instructions": "fidan.corpus.instructions",
    "sft": "fidan.training.sft",
    "chat": "fidan.chat.repl",
    "bench_peak": "fidan.bench.peak",
    "bench_train": "fidan.bench.train",
    "bench_speedrun": "fidan.bench.speedrun",
    "eval_bpb": "fidan.evaluation.bpb",
    "eval_mc": "fidan.evaluation.mc",
    "eval_samples": "fidan.evaluation.samples",
    "report": "fidan.report.report",
    "demo": "fidan.demo",
}

__all__ = sorted(_API) + ["FidanError", "__version__"]


def __getattr__(name: str):
    if name == "FidanError":
        from fidan.errors import FidanError

        return FidanError
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fidan' has no attribute {name!r}")
