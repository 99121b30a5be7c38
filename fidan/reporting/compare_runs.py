"""What `fidan compare` reads from one run folder: its kind, size and training budget, and every figure
it holds, each keyed by a content hash of what it was measured on.

Two figures may stand side by side only when they measure the same thing on the same content, so every
figure carries a hash: ``eval bpb`` results record ``text_hash`` (the scored documents), ``eval mc``
results ``data_hash`` (their items; suite results a hash per set), a classifier's figures are hashed
here from the (text, gold label) pairs in the predictions file beside them, and training's held-out
figures from the data the run recorded in its ``config.yaml``. A figure without a hash is never compared.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from fidan.artifacts.classifier_results import EVAL_DIR, ClassifierMetrics, ClassifierSummary, labelled_pairs
from fidan.artifacts.results import eval_results
from fidan.artifacts.run_config import RunConfig
from fidan.artifacts.runs import count_weights, read_metrics
from fidan.errors import BadInput
from fidan.training.settings import flatten_record

KINDS = ("pretrain", "adapt", "sft", "classify")
NOT_A_RUN = "pass run folders made by `fidan pretrain`, `fidan sft` or `fidan classify train`"


@dataclass(frozen=True)
class Figure:
    metric: str  # what is measured: "bpb", "mc accuracy", "held-out bpb", "accuracy", ...
    on: str  # what it was measured on, in words
    hash: str | None  # content hash of that text or item set; None: the file records none
    value: float
    error: float | None = None  # one standard error, where there is one
    percent: bool = False
    lower_is_better: bool = False
    source: str = ""  # the file it came from

    @property
    def key(self) -> tuple[str, str | None]:
        return self.metric, self.hash


@dataclass
class RunFacts:
    path: Path
    label: str
    kind: str
    parameters: int | None = None
    trained: int | None = None  # trainable weights, as the run recorded them (LoRA: the adapters)
    tokens: int | None = None
    steps: int | None = None
    wall_s: float | None = None
    figures: list[Figure] = field(default_factory=list)


def digest(*parts) -> str:
    """A short content hash of JSON-able parts (the held-out settings a run recorded)."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def standard_error(p: float, n: int | None) -> float | None:
    return math.sqrt(p * (1 - p) / n) if n else None


def read_run(path: str) -> RunFacts:
    """A run folder's facts and figures; one-line BadInput when ``path`` is not a run fidan compares."""
    root = Path(path)
    if not root.exists():
        raise BadInput(f"no such folder: {path}; {NOT_A_RUN}")
    if not root.is_dir():
        raise BadInput(f"{path} is a file, not a run folder; {NOT_A_RUN}")
    config = RunConfig.read(root)
    if config is None:
        raise BadInput(f"{path} is not a run folder (it has no config.yaml); {NOT_A_RUN}")
    cfg = config.doc
    kind = _kind(cfg, root)
    if kind is None:
        raise BadInput(f"{path}/config.yaml names no training stage (stage: {cfg.get('stage')!r}); {NOT_A_RUN}")
    records = read_metrics(root)
    train = [r for r in records if r.get("kind") == "train"]
    steps = train[-1]["step"] if train else None
    tokens = None
    block = (cfg.get("model") or {}).get("block_size")
    batch = (cfg.get("train") or {}).get("global_batch")
    if steps is not None and kind != "classify" and block and batch:
        tokens = steps * batch * block  # every row of every step is a full block (sft: padding included)
    wall = records[-1].get("elapsed_s") if records else None
    facts = RunFacts(root, str(path), kind, cfg.get("parameters") or count_weights(root),
                     cfg.get("trainable_parameters"), tokens, steps, wall)
    if kind == "classify":
        summary = ClassifierSummary.read(root)
        facts.wall_s = facts.wall_s if facts.wall_s is not None else summary.seconds if summary else None
        facts.figures += classify_figures(root)
    else:
        facts.figures += held_out_figures(cfg, records, kind)
    facts.figures += eval_figures(root)
    return facts


def _kind(cfg: dict, root: Path) -> str | None:
    stage = cfg.get("stage")
    if stage == "classify" or (root / "classifier.json").exists():
        return "classify"
    if stage == "sft":
        return "sft"
    if stage == "pretrain":
        return "adapt" if cfg.get("init") else "pretrain"
    return None


def held_out_figures(cfg: dict, records: list[dict], kind: str) -> list[Figure]:
    """Training's held-out bits per byte: the whole val split at the end of the run when it got there,
    else the last evaluation (its sampled windows), keyed by the data (and settings) that chose the text."""
    final = next((r for r in reversed(records) if r.get("kind") == "final" and r.get("val_bpb") is not None), None)
    last = next((r for r in reversed(records) if r.get("kind") == "eval" and r.get("val_bpb") is not None), None)
    data_name = Path(str(cfg.get("data") or "?")).name
    shards = sorted(cfg["data_sha256"]) if isinstance(cfg.get("data_sha256"), list) else cfg.get("data_sha256")
    args = flatten_record(cfg.get("args") or {})  # nested by group, or flat as older runs wrote it
    if kind == "sft":
        chosen = final or last
        if chosen is None:
            return []
        # the held-out answers: the data, how it was split, and (answers cut at the block) the tokenizer and block
        key = digest("sft", shards or cfg.get("data"), args.get("val_data"), args.get("val_fraction"),
                     args.get("eval_examples"), cfg.get("tokenizer_sha256"), (cfg.get("model") or {}).get("block_size"))
        return [Figure("held-out answer bpb", f"held-out answers of {data_name}", key if shards else None,
                       chosen["val_bpb"], lower_is_better=True, source="metrics.jsonl")]
    if final is not None:
        return [Figure("held-out bpb", f"whole val split of {data_name}", digest("shards", shards) if shards else None,
                       final["val_bpb"], lower_is_better=True, source="metrics.jsonl")]
    if last is None:
        return []
    # sampled windows: the same ones only for the same token file (data, tokenizer) and window settings
    key = digest("windows", shards, cfg.get("tokenizer_sha256"), (cfg.get("model") or {}).get("block_size"),
                 args.get("eval_windows"))
    return [Figure("held-out bpb, sampled windows", f"{args.get('eval_windows', '?')} windows of {data_name}'s val split",
                   key if shards else None, last["val_bpb"], lower_is_better=True, source="metrics.jsonl")]


def labelled_hash(predictions: Path) -> str | None:
    """sha256 of the (text, gold label) pairs a classifier was scored on, in any order."""
    pairs = labelled_pairs(predictions)
    return None if pairs is None else digest("labelled", pairs)


def classify_figures(root: Path) -> list[Figure]:
    """Accuracy (with its standard error) and macro-F1 on the test split and on files given to `classify eval`."""
    found = [(root / EVAL_DIR / "test.json", "test split")]
    found += [(p, None) for p in sorted((root / EVAL_DIR).glob("file-*/eval.json"))]
    out = []
    for path, on in found:
        m = ClassifierMetrics.load(path)
        if m is None:
            continue
        h = labelled_hash(ClassifierMetrics.predictions_of(path))
        where = on or Path(str(m.extra.get("data") or path.parent.name)).name
        src = str(path.relative_to(root))
        out.append(Figure("accuracy", where, h, m.accuracy, standard_error(m.accuracy, m.n), True, source=src))
        out.append(Figure("macro-F1", where, h, m.macro_f1, source=src))
    return out


def eval_figures(root: Path) -> list[Figure]:
    """`fidan eval bpb` and `fidan eval mc` results in eval/*.json (a suite result gives one figure per set)."""
    out = []
    for path, result in eval_results(root):
        r = result.to_dict()
        task, src = result.task, f"eval/{path.name}"
        if task == "bpb" and r.get("bpb") is not None:
            on = Path(str(r.get("text"))).name + (f" ({r['split']})" if r.get("split") else "")
            out.append(Figure("bpb", on, r.get("text_hash"), r["bpb"], lower_is_better=True, source=src))
        elif task == "mc" and r.get("accuracy") is not None:
            out.append(_mc(r, Path(str(r.get("data"))).name.split(".")[0], r.get("data_hash"), src))
        elif task == "mc-suite":
            out += [_mc(s, s.get("set", "?"), s.get("hash"), src) for s in r.get("sets") or []
                    if s.get("accuracy") is not None]
    return out


def _mc(r: dict, on: str, h: str | None, src: str) -> Figure:
    err = r.get("standard_error")
    return Figure("mc accuracy", on, h, r["accuracy"], err if err is not None else standard_error(r["accuracy"], r.get("items")),
                  True, source=src)
