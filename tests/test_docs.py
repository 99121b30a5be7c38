"""The guides' examples run, on tiny settings, so that docs/, README.md and README.tr.md cannot rot.

Every fenced block that shows an example (a `fidan ...`, `torchrun` or `make demo` line, a `curl` request,
Python importing fidan or openai) carries a marker on the line just before its opening fence:

    <!-- fidan-test -->                     the block's `fidan ...` commands run, in order
    <!-- fidan-test: --max-steps 2 -->      ... with these options replaced, or added to the commands that take them
    <!-- fidan-test: file prompts.txt -->   the block's text is written to prompts.txt first
    <!-- fidan-test: python -->             the block runs as Python, fidan's functions called with tiny settings
    <!-- fidan-test: serve runs/x -->       `fidan serve --model runs/x` starts; the block (curl lines in bash,
                                            or Python) runs against it and every answer must be a success
    <!-- fidan-test: skip REASON -->        not run, for the reason given (a GPU, the hub, packages to install)

Every run block of a page runs in one fresh folder, top to bottom, in-process through the CLI, and each
command must exit 0; a `fidan serve` line starts, answers /health and /v1/models, and stops. Commands read
"Merhaba" on standard input (`fidan chat` answers it). The options in ``TINY`` shrink any command, and the
same keyword arguments of fidan's functions, to seconds (see docs/index.md).
"""

from __future__ import annotations

import io
import re
import shlex
import sys
from pathlib import Path

import pytest
from docs_blocks import Block, check_serve_command, fences, run_client

from fidan.cli import _match_command, main
from fidan.registry import API, COMMANDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ALL_PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md", ROOT / "README.tr.md"]


# Applied to every runnable command: an option the command has is replaced, and options listed under a
# command name are added when the command lacks them. The `--source` of `data prepare` becomes the tiny
# test corpus.
TINY_REPLACE = {
    "--vocab-size": "300", "--max-steps": "4", "--until-step": "2", "--batch-size": "4", "--eval-every": "2",
    "--checkpoint-every": "2", "--max-new-tokens": "8", "--num-samples": "1", "--minutes": "0.05",
    "--max-minutes": "0.5", "--budget-minutes": "0.03", "--block-size": "32", "--depth": "1", "--eval-windows": "4", "--warmup-steps": "1",
    "--epochs": "0.01", "--search": "2",
    "--threads": "1",  # the commands run in the test process: a second torch thread would outlive them
}
TINY_ADD = {
    "pretrain": {"--block-size": "32", "--depth": "1", "--batch-size": "4", "--eval-windows": "4", "--max-steps": "4",
                 "--eval-every": "2", "--precision": "fp32", "--peak-gflops": "100", "--quiet": None},
    "eval bpb": {"--block-size": "32", "--batch-size": "4"},
    "bench peak": {"--size": "256", "--seconds": "0.2"},
    # the tiny corpus is one sentence template: near-duplicate removal would leave a handful of documents
    "data prepare": {"--near-dup": "0"},
    # KeNet's XML takes seconds to read however few definitions are kept (tests/test_sft_data.py reads it)
    "data instructions": {"--source": "dialogs"},
    "sft": {"--batch-size": "4", "--max-steps": "2", "--eval-every": "2", "--precision": "fp32", "--quiet": None},
    "tokenizer eval": {"--no-morph": None, "--repeats": "1"},
    "classify train": {"--batch-size": "4", "--max-steps": "4", "--eval-every": "2", "--layers": "1", "--width": "32",
                       "--vocab-size": "300", "--precision": "fp32", "--quiet": None},
    "generate": {"--max-new-tokens": "8"},
    "chat": {"--max-new-tokens": "8"},
}
_options: dict[str, dict] = {}


def options(name: str) -> dict:
    """The argparse actions of command ``name``, by option string."""
    if name not in _options:
        import argparse

        parser = argparse.ArgumentParser()
        from fidan.cli import build_command_parser

        build_command_parser(parser, name)
        _options[name] = parser._option_string_actions
    return _options[name]


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """(marker argument, block text, line number) for each marked fenced block of a page."""
    return [(b.marker, b.text, b.line) for b in fences(page) if b.marker is not None]


def commands(text: str) -> list[str]:
    """Shell lines of a block: backslash continuations joined, comments and blank lines dropped."""
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line = (buf + line).strip()
        buf = ""
        if line and not line.startswith("#"):
            out.append(line)
    return out


def set_option(argv: list[str], option: str, value: str | None, add: bool) -> list[str]:
    if option in argv:
        if value is None:
            return argv
        i = argv.index(option)
        return argv[:i + 1] + [value] + argv[i + 2:]
    if add:
        return argv + [option] + ([value] if value is not None else [])
    return argv


def tiny(argv: list[str], extra: list[str], corpus: Path) -> list[str]:
    name, _ = _match_command(argv)
    if "--source" in argv and name == "data prepare":
        argv = [a for i, a in enumerate(argv) if a != "--source" and (i == 0 or argv[i - 1] != "--source")]
        argv += ["--source", str(corpus), "--val-fraction", "0.2"]
    for option, value in TINY_REPLACE.items():
        argv = set_option(argv, option, value, add=False)
    for option, value in TINY_ADD.get(name or "", {}).items():
        if "--init" in argv and option in ("--depth", "--block-size"):  # a model to continue keeps its shape
            continue
        argv = set_option(argv, option, value, add=True)
    i = 0
    while i < len(extra):  # the block's own overrides win, on the commands that have the option
        value = extra[i + 1] if i + 1 < len(extra) and not extra[i + 1].startswith("--") else None
        argv = set_option(argv, extra[i], value, add=name is None or extra[i] in options(name))
        i += 2 if value is not None else 1
    return argv


def tiny_kwargs(name: str, kwargs: dict, corpus: Path) -> dict:
    """``tiny`` for a call of fidan's function for command ``name``: the same options, as keyword arguments."""
    acts, out = options(name), dict(kwargs)
    if "source" in out and name == "data prepare":
        out.update(source=[str(corpus)], val_fraction=0.2)

    def put(option: str, value: str | None, add: bool) -> None:
        act = acts.get(option)
        if act is None or not (add or act.dest in out):
            return
        if value is None:  # a flag: its dest takes the flag's constant (--quiet: True, --no-morph: False)
            out[act.dest] = act.const
        else:
            typed = act.type(value) if act.type else value
            out[act.dest] = [typed] if act.__class__.__name__ == "_AppendAction" else typed

    for option, value in TINY_REPLACE.items():
        put(option, value, add=False)
    for option, value in TINY_ADD.get(name, {}).items():
        put(option, value, add=True)
    return out


def run_python(text: str, where: str, corpus: Path) -> None:
    """Run a Python block, each fidan function it calls shrunk by ``tiny_kwargs``."""
    import fidan

    commands_of = {cmd.function: name for name, cmd in COMMANDS.items()}
    with pytest.MonkeyPatch.context() as mp:
        for function in sorted(set(re.findall(r"\bfidan\.(\w+)\(", text)) & set(API)):
            real = getattr(fidan, function)

            def shrunk(*args, _real=real, _name=commands_of[function], **kwargs):
                return _real(*args, **tiny_kwargs(_name, kwargs, corpus))

            mp.setattr(fidan, function, shrunk)
        exec(compile(text, where, "exec"), {"__name__": "__main__"})


PAGES = [p for p in ALL_PAGES if any(b.marker is not None and b.kind != "skip" for b in fences(p))]


def test_the_guides_opt_in():
    names = {p.name for p in PAGES}
    assert {"data.md", "pretraining.md", "generation.md", "evaluation.md", "quickstart-tr.md", "sft-chat.md",
            "speed.md", "tokenizers.md", "serving.md"} <= names


def unmarked_examples(page: Path) -> list[str]:
    """Blocks that show an example but carry no marker, and skip markers that give no reason."""
    bad = [f"{page.name}:{b.line}: an example without a marker" for b in fences(page)
           if b.marker is None and b.shows_example()]
    return bad + [f"{page.name}:{b.line}: `skip` needs a reason" for b in fences(page)
                  if b.kind == "skip" and not b.rest]


@pytest.mark.parametrize("page", ALL_PAGES, ids=[p.stem for p in ALL_PAGES])
def test_every_example_is_run_or_says_why_not(page):
    bad = unmarked_examples(page)
    assert not bad, ("mark each with <!-- fidan-test -->, `: python`, `: serve RUN`, or `: skip REASON` "
                     "(tests/test_docs.py):\n" + "\n".join(bad))


def run_block(block: Block, where: str, corpus: Path, monkeypatch) -> int:
    """Run one marked block in the current folder; the number of things it ran."""
    if block.kind == "skip":
        return 0
    if block.kind == "file":
        Path(block.rest).write_text(block.text, encoding="utf-8")
        return 0
    if block.kind == "python":
        run_python(block.text, where, corpus)
        return 1
    if block.kind == "serve":
        run_client(block, block.rest, where, lambda text, at: run_python(text, at, corpus))
        return 1
    extra = shlex.split(block.marker)
    assert not extra or extra[0].startswith("--"), f"{where}: unknown marker {block.marker!r}"
    lines = [shlex.split(cmd, comments=True) for cmd in commands(block.text)]
    assert all(argv[0] == "fidan" for argv in lines), f"{where}: runnable blocks hold only `fidan` commands"
    names = [_match_command(argv[1:])[0] for argv in lines]
    unused = [o for o in extra if o.startswith("--") and not any(n and o in options(n) for n in names)]
    assert not unused, f"{where}: no command of the block takes {unused}"
    for argv in lines:
        argv = tiny(argv[1:], extra, corpus)
        if argv[0] == "serve":
            check_serve_command(argv[1:])
            continue
        monkeypatch.setattr(sys, "stdin", io.StringIO("Merhaba\n"))
        assert main(argv) == 0, f"{where}: `fidan {' '.join(argv)}` failed"
    return len(lines)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_commands_run(page, tmp_path, monkeypatch, corpus_file):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for block in fences(page):
        if block.marker is not None:
            ran += run_block(block, f"{page.name}:{block.line}", corpus_file, monkeypatch)
    assert ran, f"{page.name} has markers but no commands"


def test_markers_and_tiny_overrides(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("\n".join([
        "<!-- fidan-test: --max-steps 2 -->", "```bash", "fidan pretrain --data d \\", "    --tokenizer t --out r  # x",
        "```", "````markdown", "<!-- fidan-test -->", "```bash", "fidan demo", "```", "````",
        "<!-- fidan-test: file a.txt -->", "```text", "Merhaba", "```", "```bash", "fidan generate --model r", "```",
    ]) + "\n", encoding="utf-8")
    found = blocks(page)
    assert [(arg, line) for arg, _, line in found] == [("--max-steps 2", 1), ("file a.txt", 12)]  # the quoted one is not run
    assert shlex.split(commands(found[0][1])[0], comments=True) == ["fidan", "pretrain", "--data", "d", "--tokenizer", "t", "--out", "r"]
    argv = tiny(shlex.split(commands(found[0][1])[0], comments=True)[1:], ["--max-steps", "2"], tmp_path / "c.jsonl")
    assert argv[argv.index("--max-steps") + 1] == "2" and argv[argv.index("--block-size") + 1] == "32"
    src = tiny(["data", "prepare", "--source", "tr-speeches", "--source", "tr-treebank", "--out", "d"], [], tmp_path / "c")
    assert src.count("--source") == 1 and src[src.index("--source") + 1] == str(tmp_path / "c")
    # a block's override goes to the commands that have the option, not to the others
    assert "--block-size" not in tiny(["data", "prepare", "--out", "d"], ["--block-size", "128"], tmp_path / "c")
    assert tiny(["sft", "--model", "r", "--data", "s", "--out", "o"], ["--block-size", "128"], tmp_path / "c")[-2:] == \
        ["--block-size", "128"]
    # a misspelt marker, or an override no command of the block takes, is an error rather than ignored
    for marker, words in (("sever runs/x", "unknown marker"), ("--max-step 2", "no command of the block takes")):
        with pytest.raises(AssertionError, match=words):
            run_block(Block(marker, "bash", "fidan report runs/x\n", 1), "p.md:1", tmp_path / "c", None)


def test_unmarked_examples_and_empty_skip_reasons_are_found(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("\n".join([
        "```bash", "pip install -e .", "```",                       # 1: no example
        "```bash", "fidan report runs/x", "```",                    # 4: unmarked
        "```python", "import fidan", "```",                         # 7: unmarked
        "```bash", "curl -s http://127.0.0.1:8000/health", "```",   # 10: unmarked
        "<!-- fidan-test: skip -->", "```bash", "make demo", "```",  # 13: a skip without a reason
        "<!-- fidan-test: skip needs a GPU -->", "```bash", "fidan bench infer --device cuda", "```",
        "```json", '{"text": "fidan train"}', "```", "````markdown", "```bash", "fidan demo", "```", "````",
    ]) + "\n", encoding="utf-8")
    assert unmarked_examples(page) == [f"p.md:{n}: an example without a marker" for n in (4, 7, 10)] + \
        ["p.md:13: `skip` needs a reason"]


def test_python_blocks_get_the_tiny_settings(tmp_path):
    kwargs = tiny_kwargs("pretrain", {"data": "d", "out": "r", "max_steps": 500}, tmp_path / "c.jsonl")
    assert kwargs["max_steps"] == 4 and kwargs["block_size"] == 32 and kwargs["quiet"] is True
    assert tiny_kwargs("data prepare", {"source": ["tr-speeches"], "out": "d"}, tmp_path / "c") == \
        {"source": [str(tmp_path / "c")], "out": "d", "val_fraction": 0.2, "near_dup": 0.0}
    assert tiny_kwargs("tokenizer eval", {"tokenizer": ["qwen"]}, tmp_path / "c")["morph"] is False


def test_a_request_for_a_model_not_served_fails(tmp_path, tokenizer_dir, monkeypatch):
    """The served name is the folder's: a request naming another model is a 404, and the block fails."""
    pytest.importorskip("fastapi")
    from fidan.artifacts.runs import copy_tokenizer, save_weights
    from fidan.artifacts.tokenizer import add_special_tokens
    from fidan.model.gpt import GPT, GPTConfig
    from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS

    tok = add_special_tokens(tokenizer_dir, tmp_path / "tok", CHAT_TOKENS, CHAT_TEMPLATE)
    save_weights(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)),
                 tmp_path / "runs" / "mini-chat")
    copy_tokenizer(tok, tmp_path / "runs" / "mini-chat")
    monkeypatch.chdir(tmp_path)
    curl = ("curl -s http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\\n"
            "  -d '{\"model\": \"%s\", \"messages\": [{\"role\": \"user\", \"content\": \"Merhaba\"}], \"max_tokens\": 4}'\n")
    run_client(Block("serve runs/mini-chat", "bash", curl % "mini-chat", 1), "runs/mini-chat", "ok", None)
    with pytest.raises(AssertionError, match="404"):
        run_client(Block("serve runs/mini-chat", "bash", curl % "chat", 1), "runs/mini-chat", "wrong name", None)
