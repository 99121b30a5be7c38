"""lm-evaluation-harness task folders for fidan's multiple-choice sets and for any multiple-choice JSONL.

Each task is a YAML file and the JSONL it reads, written side by side; ``lm_eval --include_path DIR``
finds them. The task scores a choice exactly as `fidan eval mc` does: the log-likelihood of the choice's
tokens after the context, with nothing put between the two (``target_delimiter: ""``; fidan's own sets
start every choice with its space), summed (``acc``) and per UTF-8 byte (``acc_bytes``, lm-eval's
``len(choice.encode("utf-8"))``, the same divisor as fidan's ``accuracy_norm``).

The data is written from the sets as this machine builds them (fidan/evaluation/suite/), never shipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fidan.errors import BadInput

PREFIX = "fidan_"  # task names: fidan_tr_case, fidan_<file stem>; no clash with lm-eval's own tasks


def task_name(data: str) -> str:
    """The lm-eval task name for a built-in set or a JSONL file (``tr-case`` → ``fidan_tr_case``)."""
    stem = Path(data).name.split(".")[0]
    return PREFIX + (re.sub(r"[^0-9A-Za-z]+", "_", stem).strip("_").lower() or "items")


def task_yaml(name: str, data_file: Path) -> str:
    """The YAML of one multiple-choice task over a JSONL file of {"context", "choices", "answer"} records.

    doc_to_text/choice/target name the record's fields, so lm-eval takes them as they are (no template).
    """
    metrics = "".join(f"  - metric: {m}\n    aggregation: mean\n    higher_is_better: true\n"
                      for m in ("acc", "acc_bytes"))
    return (f"task: {name}\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data_file.resolve()))}\n"
            "test_split: test\n"
            "output_type: multiple_choice\n"
            "doc_to_text: context\n"
            "doc_to_choice: choices\n"
            "doc_to_target: answer\n"
            'target_delimiter: ""\n'
            "num_fewshot: 0\n"
            f"metric_list:\n{metrics}"
            "metadata:\n  version: 1.0\n")


def write_task(out: Path, data: str, items: list[dict]) -> str:
    """Write ``<name>.yaml`` and ``<name>.jsonl`` for one set into ``out``; the task's name."""
    name = task_name(data)
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / f"{name}.jsonl"
    with open(data_file, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps({"context": item["context"], "choices": item["choices"], "answer": item["answer"]},
                               ensure_ascii=False) + "\n")
    (out / f"{name}.yaml").write_text(task_yaml(name, data_file), encoding="utf-8")
    return name


def expand(data: str) -> list[str]:
    """``tr-suite`` → every built-in set; anything else stays one entry."""
    from fidan.evaluation.suite import SETS, SUITE

    return list(SETS) if data == SUITE else [data]


def write_lm_eval(out: str, data: str, force: bool = False) -> list[str]:
    """Write lm-eval tasks for a built-in set, tr-suite or a JSONL file into the folder ``out``; their names.

    An existing task file is replaced only with ``force``: a folder of tasks is what a user runs lm_eval on.
    """
    from fidan.evaluation.mc import read_mc

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise BadInput(f"--write-lm-eval {out} is a file; pass a folder to write the task YAMLs into")
    sets = expand(data)
    clash = [folder / f"{task_name(d)}.yaml" for d in sets if (folder / f"{task_name(d)}.yaml").exists()]
    if clash and not force:
        raise BadInput(f"{clash[0]} already exists; pass --force to replace it or choose another folder")
    return [write_task(folder, d, read_mc(d)) for d in sets]
