"""Reading instruction data: Alpaca-style and chat-style JSONL files, and Hugging Face datasets.

Every record becomes a conversation, a list of ``{"role", "content"}`` messages (see chat_template.py).
Accepted records, one JSON object per line:

- Alpaca: ``{"instruction": ..., "input": ... (optional), "output": ..., "system": ... (optional)}``
- chat: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``
- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}``
- OpenOrca: ``{"system_prompt": ... (optional), "question": ..., "response": ...}``

``hf:NAME[:CONFIG][?split=&max_docs=&max_bytes=]`` streams a Hugging Face dataset's records (fidan.artifacts.hub_data)
and stops at the caps, so a large instruction set is never downloaded whole for a few thousand examples.

A malformed record is skipped and reported with its file and line; a file with no valid record fails.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import sys
from pathlib import Path

from fidan.artifacts.hub_data import parse, records
from fidan.errors import BadInput, FidanError
from fidan.runtime.io import atomic_write_text
from fidan.text.chat_template import check_messages

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MAX_REPORTED = 5


def record_to_messages(record: object) -> list[dict]:
    """One record as a conversation; ValueError says why a record is not one."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        messages = record["messages"]
        if isinstance(messages, list):
            messages = [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m
                        for m in messages]
    elif "conversations" in record:
        turns = record["conversations"]
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise ValueError("'conversations' must be a list of {from, value} objects")
        messages = [{"role": _SHAREGPT_ROLES.get(t.get("from"), t.get("from")), "content": t.get("value")}
                    for t in turns]
    elif "question" in record and "response" in record:  # OpenOrca
        question, response = record.get("question"), record.get("response")
        if not isinstance(question, str) or not question.strip():
            raise ValueError("'question' is missing or empty")
        if not isinstance(response, str) or not response.strip():
            raise ValueError("'response' is missing or empty")
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": response}]
        system = record.get("system_prompt")
        if isinstance(system, str) and system.strip():
            messages.insert(0, {"role": "system", "content": system})
    elif "instruction" in record or "output" in record:
        instruction, output = record.get("instruction"), record.get("output")
        extra = record.get("input") or ""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("'instruction' is missing or empty")
        if not isinstance(output, str) or not output.strip():
            raise ValueError("'output' is missing or empty")
        if not isinstance(extra, str):
            raise ValueError("'input' must be a string")
        user = instruction + ("\n\n" + extra if extra.strip() else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
        if isinstance(record.get("system"), str) and record["system"].strip():
            messages.insert(0, {"role": "system", "content": record["system"]})
    else:
        raise ValueError("no 'messages', 'conversations', 'instruction'/'output' or 'question'/'response' fields")
    problem = check_messages(messages)
    if problem:
        raise ValueError(problem)
    if messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer")
    return messages


def _report(source: str, problems: list[str], n_ok: int) -> None:
    if not problems:
        return
    print(f"warning: skipped {len(problems)} malformed record(s) in {source} ({n_ok} kept):", file=sys.stderr)
    for p in problems[:MAX_REPORTED]:
        print(f"  {p}", file=sys.stderr)
    if len(problems) > MAX_REPORTED:
        print(f"  ... and {len(problems) - MAX_REPORTED} more", file=sys.stderr)


def read_conversations(path: str | Path) -> list[list[dict]]:
    """All valid conversations of a ``.jsonl`` (or ``.jsonl.gz``) file, reporting bad lines as FILE:LINE."""
    path = Path(path)
    if not path.is_file():
        raise FidanError(f"instruction data not found: {path}; pass a .jsonl file, a folder with train.jsonl, "
                         "or hf:NAME")
    opener = gzip.open if path.name.endswith(".gz") else open
    conversations: list[list[dict]] = []
    problems: list[str] = []
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                conversations.append(record_to_messages(json.loads(raw.decode("utf-8"))))
            except UnicodeDecodeError:
                problems.append(f"{path}:{lineno}: not valid UTF-8")
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{lineno}: malformed JSON ({e.msg})")
            except ValueError as e:
                problems.append(f"{path}:{lineno}: {e}")
    if not conversations:
        first = f" (first problem: {problems[0]})" if problems else " (the file is empty)"
        raise FidanError(f"{path} has no valid instruction records{first}; each line needs 'messages' or "
                         "'instruction' and 'output'")
    _report(str(path), problems, len(conversations))
    return conversations


def hf_conversations(spec: str, split: str = "train") -> list[list[dict]]:
    """Conversations of a Hugging Face dataset, ``hf:NAME[:CONFIG][?split=&max_docs=&max_bytes=]``, streamed up to
    its caps (needs `datasets`, and a reachable hub or a local copy)."""
    src = parse(spec, "--data")
    if "split=" not in spec:
        src = dataclasses.replace(src, split=split)
    conversations, problems, size = [], [], 0
    try:
        for i, record in enumerate(records(src)):
            try:
                messages = record_to_messages(dict(record))
            except ValueError as e:
                problems.append(f"{src.name}[{src.split}][{i}]: {e}")
                continue
            if src.max_bytes is not None:
                size += sum(len(m["content"].encode("utf-8")) for m in messages)
                if size > src.max_bytes:
                    break
            conversations.append(messages)
            if src.max_docs is not None and len(conversations) >= src.max_docs:
                break
    except FidanError:
        raise
    except Exception as e:  # noqa: BLE001 - hub and loader errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f"could not load Hugging Face dataset '{src.name}' split '{src.split}' ({type(e).__name__}: "
                       f"{first[:200]}); check the name, config and split and that the hub is reachable, or pass a "
                       "local .jsonl") from None
    if not conversations:
        raise BadInput(f"dataset {src.name} has no usable records ({problems[0] if problems else 'it is empty'})")
    _report(f"{src.name}[{src.split}]", problems, len(conversations))
    return conversations


def load_conversations(spec: str | Path, split: str = "train") -> list[list[dict]]:
    """A ``.jsonl`` file, a folder holding ``{split}.jsonl``, or ``hf:NAME``."""
    spec = str(spec)
    if spec.startswith("hf:"):
        return hf_conversations(spec, split)
    path = Path(spec)
    if path.is_dir():
        for name in (f"{split}.jsonl", f"{split}.jsonl.gz"):
            if (path / name).exists():
                return read_conversations(path / name)
        raise FidanError(f"folder {path} has no {split}.jsonl; make one with `fidan data instructions` or pass a file")
    return read_conversations(path)


def has_split(spec: str | Path, split: str) -> bool:
    path = Path(str(spec))
    return path.is_dir() and any((path / f"{split}{s}").exists() for s in (".jsonl", ".jsonl.gz"))


def in_val_split(messages: list[dict], val_fraction: float) -> bool:
    """A stable split by a hash of the first user message: the same question never lands on both sides."""
    first = next(m["content"] for m in messages if m["role"] == "user")
    h = int.from_bytes(hashlib.sha256(first.strip().encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < val_fraction


def write_conversations(path: str | Path, conversations: list[list[dict]]) -> None:
    atomic_write_text(path, "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in conversations))
