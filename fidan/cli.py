"""The command line: one table from command name to stage function; parsing only.

Each command's options are read from its function's signature, type hints and docstring, so the
CLI and the Python API (``fidan.pretrain(...)``) always take the same arguments.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass

from fidan.errors import FidanError


@dataclass(frozen=True)
class Command:
    target: str  # "module:function"
    summary: str
    positional: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "data prepare": Command("fidan.corpus.prepare:prepare_data", "Load, clean, deduplicate and split a corpus."),
    "tokenizer train": Command("fidan.tokenizer.train:train_tokenizer", "Train a BPE, Unigram or WordPiece tokenizer (Turkish pre-tokenizer, optional --morph)."),
    "tokenizer eval": Command("fidan.tokenizer.evaluate:evaluate_tokenizers", "Measure tokenizers on the same text: fertility, %Pure, boundary F1, speed."),
    "tokenizer encode": Command("fidan.tokenizer.encode:encode_data", "Tokenize a data folder into memory-mapped token files."),
    "pretrain": Command("fidan.training.pretrain:pretrain", "Pretrain a GPT on a tokenized data folder."),
    "generate": Command("fidan.generation.generate:generate", "Sample text from a trained model."),
    "data instructions": Command("fidan.corpus.instructions:build_instructions",
                                 "Build a Turkish instruction set offline (KeNet, dialogs, speech metadata)."),
    "sft": Command("fidan.training.sft:sft", "Instruction-tune a model: answer-only loss, packing, early stopping."),
    "chat": Command("fidan.chat.repl:chat", "Chat with an instruction-tuned model in the terminal."),
    "bench peak": Command("fidan.bench.peak:bench_peak", "Measure the machine's peak matmul FLOP/s (fp32, bf16) for MFU."),
    "bench train": Command("fidan.bench.train:bench_train",
                           "Training tokens/s: fidan vs transformers' GPT-2 loop (fp32, bf16), side by side."),
    "bench speedrun": Command("fidan.bench.speedrun:bench_speedrun",
                              "Train a preset on the bundled corpus for M minutes: held-out bits/byte vs time."),
    "eval bpb": Command("fidan.evaluation.bpb:eval_bpb", "Bits per byte and perplexity on any text (sliding window)."),
    "eval mc": Command("fidan.evaluation.mc:eval_mc", "Multiple-choice accuracy by likelihood (fidan or HF models)."),
    "eval samples": Command("fidan.evaluation.samples:eval_samples", "Generations for fixed prompts with fixed seeds."),
    "report": Command("fidan.report.report:report", "Write a run's report.md with plots, from its files.",
                      positional=("run",)),
    "demo": Command("fidan.demo:demo", "Run the whole pipeline offline on the bundled Turkish corpus."),
}


def load_function(name: str) -> Callable:
    module, func = COMMANDS[name].target.split(":")
    return getattr(importlib.import_module(module), func)


def _doc_params(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and its ``Args:`` descriptions."""
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    head, _, args = doc.partition("\nArgs:\n")
    params: dict[str, str] = {}
    current = None
    for line in args.splitlines():
        m = re.match(r"^\s{2,8}(\w+):\s*(.*)$", line)
        if m:
            current = m.group(1)
            params[current] = m.group(2)
        elif current and line.strip():
            params[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return head.strip(), params


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _add_param(parser: argparse.ArgumentParser, name: str, param: inspect.Parameter, tp, help_text: str,
               positional: bool) -> None:
    tp = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    kwargs: dict = {"help": help_text or None}
    required = param.default is inspect.Parameter.empty
    if not required and param.default is not None and tp is not bool:
        kwargs["help"] = f"{help_text} (default: {param.default})" if help_text else f"default: {param.default}"
    if tp is bool:
        flag = "--" + name.replace("_", "-")
        if param.default is True:
            parser.add_argument("--no-" + name.replace("_", "-"), dest=name, action="store_false", **kwargs)
        else:
            parser.add_argument(flag, dest=name, action="store_true", **kwargs)
        return
    if origin is typing.Literal:
        kwargs["choices"] = list(typing.get_args(tp))
    elif origin in (list, tuple):
        item = typing.get_args(tp)[0] if typing.get_args(tp) else str
        kwargs["type"] = item
        kwargs["action"] = "append"
    elif tp in (int, float):
        kwargs["type"] = tp
    if positional:
        if not required:
            kwargs["nargs"] = "?"
            kwargs["default"] = param.default
        parser.add_argument(name, metavar=name.upper(), **kwargs)
        return
    kwargs["dest"] = name
    if required:
        kwargs["required"] = True
    else:
        kwargs["default"] = param.default
    parser.add_argument("--" + name.replace("_", "-"), **kwargs)


def build_command_parser(parser: argparse.ArgumentParser, name: str) -> Callable:
    func = load_function(name)
    summary, docs = _doc_params(func.__doc__)
    parser.description = summary or COMMANDS[name].summary
    hints = typing.get_type_hints(func)
    for pname, param in inspect.signature(func).parameters.items():
        if pname.startswith("_"):
            continue
        _add_param(parser, pname, param, hints.get(pname, str), docs.get(pname, ""),
                   pname in COMMANDS[name].positional)
    return func


def _top_parser() -> argparse.ArgumentParser:
    lines = [f"  {name:<18} {cmd.summary}" for name, cmd in COMMANDS.items()]
    return argparse.ArgumentParser(
        prog="fidan",
        description="fidan grows Turkish language models from seed to chat.",
        epilog="commands:\n" + "\n".join(lines) + "\n\nRun `fidan COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _match_command(argv: list[str]) -> tuple[str | None, list[str]]:
    for words in (2, 1):
        name = " ".join(argv[:words])
        if name in COMMANDS:
            return name, argv[words:]
    return None, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        from fidan import __version__

        print(f"fidan {__version__}")
        return 0
    name, rest = _match_command(argv)
    if name is None:
        top = _top_parser()
        if not argv or argv[0] in ("-h", "--help"):
            top.print_help()
            return 0
        groups = sorted({n.split()[0] for n in COMMANDS if n.split()[0] == argv[0]})
        if groups:
            subs = ", ".join(n for n in COMMANDS if n.startswith(argv[0] + " "))
            print(f"fidan: error: `{argv[0]}` needs a subcommand: {subs}", file=sys.stderr)
        else:
            print(f"fidan: error: unknown command `{argv[0]}`; run `fidan --help` for the list", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"fidan {name}")
    try:
        func = build_command_parser(parser, name)
        args = vars(parser.parse_args(rest))
        func(**args)
    except FidanError as e:
        print(f"fidan: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fidan: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
