"""The guides' commands run, on tiny settings, so that docs/ cannot rot.

A fenced block in docs/*.md runs when the line just before its opening fence is a marker:

    <!-- fidan-test -->                     the block's `fidan ...` commands run, in order
    <!-- fidan-test: --max-steps 2 -->      ... with these options replaced or added for this block
    <!-- fidan-test: file prompts.txt -->   the block's text is written to prompts.txt first

Every marked block of a page runs in one fresh folder, top to bottom, in-process through the CLI, and each
command must exit 0. The options in ``TINY`` shrink any command to seconds (see docs/index.md).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fidan.cli import _match_command, main

DOCS = Path(__file__).resolve().parent.parent / "docs"
MARKER = re.compile(r"^<!--\s*fidan-test(?::\s*(.*?))?\s*-->\s*$")



# Applied to every runnable command: an option the command has is replaced, and options listed under a
# command name are added when the command lacks them. `--source` becomes the tiny test corpus.
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
    "data instructions": {"--kenet-max": "50"},
    "sft": {"--batch-size": "4", "--max-steps": "2", "--eval-every": "2", "--precision": "fp32", "--quiet": None},
    "tokenizer eval": {"--no-morph": None, "--repeats": "1"},
    "classify train": {"--batch-size": "4", "--max-steps": "4", "--eval-every": "2", "--layers": "1", "--width": "32",
                       "--vocab-size": "300", "--precision": "fp32", "--quiet": None},
}


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """(marker argument, block text, line number) for each marked fenced block of a page.

    Markers inside a fenced block (a page showing how to write one) do not count.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    found = []
    fence = ""
    for i, line in enumerate(lines):
        ticks = re.match(r"^\s*(`{3,})", line)
        if ticks and (not fence or ticks.group(1).startswith(fence)):
            fence = "" if fence else ticks.group(1)
            continue
        m = MARKER.match(line.strip())
        if fence or not m:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].lstrip().startswith("```"):
            raise AssertionError(f"{page.name}:{i + 1}: a fidan-test marker must sit right above a ``` fence")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip().startswith("```"))
        found.append(((m.group(1) or "").strip(), "\n".join(lines[i + 2:end]) + "\n", i + 1))
    return found


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
    if "--source" in argv:
        argv = [a for i, a in enumerate(argv) if a != "--source" and (i == 0 or argv[i - 1] != "--source")]
        argv += ["--source", str(corpus), "--val-fraction", "0.2"]
    for option, value in TINY_REPLACE.items():
        argv = set_option(argv, option, value, add=False)
    for option, value in TINY_ADD.get(name or "", {}).items():
        argv = set_option(argv, option, value, add=True)
    i = 0
    while i < len(extra):  # the block's own overrides win
        value = extra[i + 1] if i + 1 < len(extra) and not extra[i + 1].startswith("--") else None
        argv = set_option(argv, extra[i], value, add=True)
        i += 2 if value is not None else 1
    return argv


PAGES = sorted(p for p in DOCS.glob("*.md") if blocks(p))


def test_the_guides_opt_in():
    names = {p.name for p in PAGES}
    assert {"data.md", "pretraining.md", "generation.md", "evaluation.md", "quickstart-tr.md", "sft-chat.md",
            "speed.md", "tokenizers.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_commands_run(page, tmp_path, monkeypatch, corpus_file):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for arg, text, line in blocks(page):
        if arg.startswith("file "):
            Path(arg.split(None, 1)[1]).write_text(text, encoding="utf-8")
            continue
        extra = shlex.split(arg)
        for cmd in commands(text):
            argv = shlex.split(cmd, comments=True)
            assert argv[0] == "fidan", f"{page.name}:{line}: runnable blocks hold only `fidan` commands: {cmd}"
            argv = tiny(argv[1:], extra, corpus_file)
            assert main(argv) == 0, f"{page.name}:{line}: `fidan {' '.join(argv)}` failed"
            ran += 1
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
