"""`fidan eval lm-eval`: lm-evaluation-harness on a fidan run (exported on the fly) or a transformers folder.

A composite command (it runs `fidan export hf`, then lm-eval), so it lives beside the benchmarks rather than
among the stages, which never import each other.

fidan's sets and any {"context", "choices", "answer"} JSONL run as tasks fidan writes
(fidan/evaluation/lm_eval_tasks.py); any other name is one of lm-eval's own tasks (``turkishmmlu``...) or
of a folder given with ``include_path`` (Cetvel's).

A fidan run is scored by lm-eval's ``hf`` model on an fp32 export (exact logits). fidan conditions every
text on its end-of-text token; the export's tokenizer is given a post-processor that puts that token
first, so lm-eval's contexts start where fidan's do, and the same items give fidan's scores: lm-eval's
``acc`` is `fidan eval mc`'s ``accuracy`` and ``acc_bytes`` its ``accuracy_norm``. The split can differ
only where fidan's rule differs from lm-eval's: a context that ends in whitespace (lm-eval moves it into
the choice) or whose last tokens merge with the choice's first (lm-eval cuts the joint encoding at the
context's length; fidan then encodes the choice alone).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from fidan.artifacts.results import save_result
from fidan.errors import BadInput, FidanError
from fidan.evaluation.lm import result_path
from fidan.evaluation.lm_eval_tasks import expand, task_name, write_task
from fidan.runtime.console import speaks

INSTALL = "install it with `pip install 'fidan[lm-eval]'` (or `pip install lm-eval`)"


def _is_fidan_set(name: str) -> bool:
    from fidan.evaluation.suite import SETS, SUITE

    return name in SETS or name == SUITE or name.endswith((".jsonl", ".jsonl.gz")) or Path(name).is_file()


def start_with_eos(folder: Path) -> None:
    """Make the exported tokenizer put end-of-text before every text, as fidan conditions it."""
    path = folder / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    eos = "<|endoftext|>"
    eos_id = next((t["id"] for t in spec.get("added_tokens", []) if t["content"] == eos), None)
    if eos_id is None:
        raise FidanError(f"the run's tokenizer has no {eos} token; lm-eval cannot condition texts as fidan does")
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": eos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": eos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}},
    }
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")


@contextlib.contextmanager
def _hushed(on: bool) -> Iterator[None]:
    """lm-eval's and datasets' progress bars and log lines, off when the stage prints nothing."""
    if not on:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm-eval")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _predictions(samples: list[dict]) -> list[dict]:
    """Per item, in the data's order: the choices' log-likelihoods and lm-eval's two predictions."""
    rows = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        lls = [float(r[0]) for r in s["filtered_resps"]]
        nbytes = [len(c.encode("utf-8")) for c in s["doc"]["choices"]]
        rows.append({"answer": s["target"], "pred": max(range(len(lls)), key=lambda j: (lls[j], -j)),
                     "pred_bytes": max(range(len(lls)), key=lambda j: (lls[j] / nbytes[j], -j)),
                     "logprobs": [round(v, 4) for v in lls]})
    return rows


def eval_lm_eval(
    model: str,
    tasks: str,
    include_path: str | None = None,
    batch_size: int = 16,
    device: str = "auto",
    limit: int | None = None,
    out: str | None = None,
    force: bool = False,
    quiet: bool | None = None,
) -> dict:
    """Run lm-evaluation-harness tasks on a fidan run or a transformers model folder.

    Args:
        model: a fidan run or checkpoint (exported to a temporary transformers folder, fp32) or a
            transformers causal-LM folder.
        tasks: comma-separated: fidan's sets (tr-case, ..., tr-suite), JSONL files of {"context",
            "choices", "answer"} records, and lm-eval task names (turkishmmlu, or those under include_path).
        include_path: a folder of lm-eval task YAMLs to add (Cetvel's tasks, or `fidan eval mc
            --write-lm-eval`'s).
        batch_size: sequences per forward pass.
        device: auto, cpu or cuda.
        limit: score only the first N items of each task (a quick look; the result says so).
        out: where to write the result JSON (default: MODEL/eval/lm-eval-<tasks>.json).
        force: replace an existing result file.
        quiet: print nothing (default: the command prints the table).
    """
    from fidan.artifacts.loader import locate
    from fidan.runtime.device import pick_device

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise BadInput("--tasks is empty; pass fidan sets (tr-case, tr-suite), JSONL files or lm-eval task names")
    if batch_size <= 0:
        raise BadInput(f"--batch-size must be positive, got {batch_size}")
    if limit is not None and limit <= 0:
        raise BadInput(f"--limit must be positive, got {limit}")
    if include_path is not None and not Path(include_path).is_dir():
        raise BadInput(f"--include-path {include_path} is not a folder; pass a folder of lm-eval task YAMLs")
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise BadInput(f"eval lm-eval needs the lm-eval package; {INSTALL}") from None
    started = time.time()
    source = locate(model)
    if source.kind == "adapter":
        raise BadInput(f"{model} is a LoRA adapter; merge it into its base first (lm-eval's hf model loads one folder)")
    path = result_path(model, "lm-eval", "+".join(task_name(n)[len("fidan_"):] if _is_fidan_set(n) else n
                                                  for n in names)[:80], out, force)
    with tempfile.TemporaryDirectory(prefix="fidan-lm-eval-") as tmp:
        task_dir, own, theirs = Path(tmp) / "tasks", [], []
        for n in names:
            if _is_fidan_set(n):
                from fidan.evaluation.mc import read_mc

                own += [write_task(task_dir, d, read_mc(d)) for d in expand(n)]
            else:
                theirs.append(n)
        folder = source.folder
        if source.kind == "fidan":
            from fidan.adapt.export import export_hf

            folder = Path(tmp) / "hf"
            with contextlib.redirect_stdout(io.StringIO()):
                export_hf(model=str(source.folder), out=str(folder), dtype="fp32")
            start_with_eos(folder)
        paths = [str(p) for p in (task_dir if own else None, include_path) if p]
        # lm-eval's own index (about 15,000 tasks, seconds to read) only when a name is not fidan's or include_path's
        manager = TaskManager(include_path=paths or None, include_defaults=False)
        if any(n not in manager.all_tasks for n in theirs):
            manager = TaskManager(include_path=paths or None)
        unknown = [n for n in theirs if n not in manager.all_tasks]
        if unknown:
            raise BadInput(f"lm-eval knows no task {unknown[0]!r}; pass a fidan set, a JSONL file, an lm-eval task "
                           "name (`lm_eval ls tasks`) or the folder that defines it with --include-path")
        try:
            with _hushed(not speaks(quiet)):
                res = lm_eval.simple_evaluate(
                    model="hf", model_args={"pretrained": str(folder), "dtype": "float32"}, tasks=own + theirs,
                    batch_size=batch_size, device=pick_device(device), limit=limit, task_manager=manager,
                    log_samples=True, bootstrap_iters=1000, random_seed=0, numpy_random_seed=0, torch_random_seed=0)
        except (OSError, ValueError) as e:  # data not reachable offline, a task that cannot build
            raise FidanError(f"lm-eval could not run {', '.join(own + theirs)}: {str(e).splitlines()[0][:200]}; a task "
                             "whose data is on the hub needs the hub reachable or the dataset in the local "
                             "Hugging Face cache") from None
    rows = {}
    for name, metrics in res["results"].items():
        row = {k.split(",")[0]: v for k, v in metrics.items() if "," in k and isinstance(v, (int, float))}
        if name in res.get("n-samples", {}):
            row["items"] = res["n-samples"][name]["effective"]
        if name in own:
            row["predictions"] = _predictions(res["samples"][name])
        rows[name] = row
    result = save_result(path, {"task": "lm-eval", "model": str(model), "model_kind": source.kind,
                                "tasks": names, "limit": limit, "lm_eval_version": lm_eval.__version__,
                                "target_delimiter": "", "results": rows}, started)
    if speaks(quiet):
        print(format_table(rows) + f"\n→ {path}")
    return result


def format_table(rows: dict) -> str:
    lines = [f"{'task':<28} {'acc':>14} {'acc_bytes':>10} {'acc_norm':>9}"]
    for name, r in rows.items():
        acc = f"{r['acc']:.3f} ± {r.get('acc_stderr', float('nan')):.3f}" if "acc" in r else "-"
        lines.append(f"{name:<28} {acc:>14} {_fmt(r.get('acc_bytes')):>10} {_fmt(r.get('acc_norm')):>9}")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"
