"""`fidan report RUN`: a run's report card, ``report.md`` with PNG plots, built from the run's files alone.

It reads ``config.yaml`` (resolved settings), ``metrics.jsonl``, the data folder's ``manifest.json`` and
token statistics, the run's ``tokenizer/``, ``eval/*.json`` (from `fidan eval`), ``bench-infer/infer.json``
(from `fidan bench infer`), ``timings.json`` (stage times and environment, written by `fidan demo`) and any
tuned runs inside the folder. ``report.md`` and the plots are derived files: each call rewrites them from
the same inputs.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import yaml

from fidan.artifacts.datadir import load_manifest
from fidan.artifacts.results import TIMINGS_FILE, Timings, eval_results
from fidan.artifacts.run_config import RunConfig
from fidan.artifacts.runs import planned_steps, read_metrics
from fidan.errors import FidanError
from fidan.reporting.adapt import adaptation_section
from fidan.reporting.classify import classification_section
from fidan.reporting.data import data_section
from fidan.reporting.inference_speed import inference_section
from fidan.reporting.markdown import duration, fmt, quote, table
from fidan.reporting.plots import plot_mc, plot_training
from fidan.reporting.suite import suite_section
from fidan.runtime.environment import environment
from fidan.runtime.io import atomic_write_text
from fidan.runtime.plots import plot_loss


def _eval_results(run: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {"bpb": [], "mc": [], "samples": []}
    for path, r in eval_results(run, tuple(found)):
        found[r.task].append({**r.to_dict(), "_file": path.name})
    return found


def _throughput(train: list[dict]) -> dict:
    """Medians over the run after its first 10% of steps (start-up and compilation are not steady state)."""
    steady = train[len(train) // 10:] or train
    out = {}
    for key in ("tokens_per_s", "mfu"):
        values = [r[key] for r in steady if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    return out


def report(run: str, out: str | None = None) -> Path:
    """Write a run's report.md with plots (training curves, throughput, evals, samples, environment).

    Args:
        run: a run folder made by `fidan pretrain` (or `fidan demo`).
        out: where to write the report (default: RUN/report.md); plots go to RUN/plots/.
    """
    root = Path(run)
    config = RunConfig.read(root)
    if config is None:
        raise FidanError(f"{root} has no config.yaml; pass a run folder made by `fidan pretrain` or `fidan demo`")
    cfg = config.doc
    records = read_metrics(root)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    final = next((r for r in reversed(records) if r.get("kind") == "final"), None)
    timings = Timings.read(root) or Timings({})
    results = _eval_results(root)
    plots = root / "plots"
    model = cfg.get("model") or {}
    settings = cfg.get("train") or {}
    preset = cfg.get("preset") or settings.get("preset")
    n_params = cfg.get("parameters")
    title = f"{preset or 'run'} · {n_params:,} parameters" if n_params else ""
    loss_png = plot_loss(records, plots / "loss.png", title=title)
    training_png = plot_training(records, plots / "training.png", title=title)
    mc_png = plot_mc(results["mc"], plots / "mc.png")

    tput = _throughput(train)
    tokens_per_step = cfg.get("tokens_per_step")
    if not tokens_per_step and settings.get("global_batch") and model.get("block_size"):
        tokens_per_step = settings["global_batch"] * model["block_size"]
    step = train[-1]["step"] if train else 0
    train_s = (train[-1].get("train_s") or train[-1].get("elapsed_s")) if train else None

    L = [f"# Run report: {root.resolve().name}", ""]
    L += [f"Generated {time.strftime('%Y-%m-%d %H:%M')} by fidan from the files in `{root}` "
          f"(regenerate: `fidan report {root}`).", ""]

    L += ["## Summary", ""]
    card = [
        ("model", f"{preset or cfg.get('stage', '?')}: {model.get('n_layer')} layers, "
                  f"{model.get('n_embd')} wide, {model.get('n_head')} heads, block {model.get('block_size')}, "
                  f"vocab {model.get('vocab_size')}" if "hf_model_type" not in model else
                  f"transformers {model['hf_model_type']} from `{cfg.get('init') or cfg.get('base_model')}`, "
                  f"block {model.get('block_size')}, vocab {model.get('vocab_size')}"),
        ("parameters", n_params),
        *([("base weights", base_line(cfg["base"]))] if cfg.get("base") else []),
        *([("adapters", f"LoRA r={cfg['lora']['r']}, alpha {cfg['lora']['alpha']:g}: "
                        f"{cfg.get('trainable_parameters', 0):,} weights trained; unmerged in `adapter/`")]
          if cfg.get("lora") else []),
        ("steps", _steps(step, settings, root) if train else "–"),
        ("tokens seen", step * tokens_per_step if tokens_per_step else None),
        ("held-out bits per byte" + (" (training evaluations)" if final else ""), progress(evals, "val_bpb", bold=True)),
        ("held-out loss (nats/token)", progress(evals, "val_loss")),
    ]
    if final:
        card.append(("held-out bits per byte, whole val split (end of training)", f"**{fmt(final.get('val_bpb'))}**"))
    card += [("training time", duration(train_s)),
             ("throughput (median)", f"{tput['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in tput else "–")]
    if "mfu" in tput:
        card.append(("MFU (median)", f"{tput['mfu']:.1%}"))
    for r in results["bpb"]:
        split = f" ({r['split']})" if r.get("split") else ""
        card.append((f"bits per byte on {Path(r['text']).name}{split}{domain(cfg, r)}", f"{r['bpb']:.3f}"))
    for r in results["mc"]:
        card.append((f"multiple choice {Path(r['data']).name}", mc_figures(r)))
    L += table(card, ("", ""))
    note = bpb_note(cfg, evals, final, results["bpb"])
    if note:
        L += [note, ""]
    if any(r.get("untrained") for r in results["mc"]):
        L += ["Multiple choice: *untrained model* is the same architecture with random weights, seeded as the run "
              "began; random weights already prefer some forms, so it, not *chance*, is the floor to read "
              "the accuracy against.", ""]

    L += ["## Training curves", ""]
    if loss_png:
        L += [f"![loss and bits per byte]({_rel(loss_png, root, out)})", ""]
    if training_png:
        L += [f"![learning rate, gradient norm, throughput]({_rel(training_png, root, out)})", ""]
    L += _training_table(train, settings)

    L += ["## Throughput", ""]
    rows = [("tokens per step", tokens_per_step),
            ("median tokens/s", round(tput["tokens_per_s"]) if "tokens_per_s" in tput else None),
            ("device", cfg.get("device")), ("precision", settings.get("precision"))]
    if "mfu" in tput:
        rows.append(("median MFU", f"{tput['mfu']:.2%}"))
    if cfg.get("flops_per_token"):
        rows.append(("training FLOPs per token", f"{cfg['flops_per_token']:,.0f}"))
    if cfg.get("peak_flops"):
        rows.append(("peak FLOP/s used for MFU", f"{cfg['peak_flops'] / 1e9:,.1f} G"))
    L += table([r for r in rows if r[1] is not None], ("", ""))

    L += adaptation_section(root, final)
    L += classification_section(root, lambda png: _rel(png, root, out))
    L += _eval_section(results, evals, mc_png, root, out)
    L += suite_section(root)
    L += inference_section(root, lambda png: _rel(png, root, out))
    L += data_section(cfg, root)
    L += _subruns_section(root)

    L += ["## Time per stage", ""]
    stages = timings.stages or {}
    if stages:
        L += table([(k, duration(v)) for k, v in stages.items()] + [("total", duration(sum(stages.values())))],
                   ("stage", "time"))
    else:
        L += [f"Training took {duration(train_s)} (no {TIMINGS_FILE}: stage times are recorded by `fidan demo`).", ""]
    for kind, rs in results.items():
        for r in rs:
            L += [f"- eval {kind} `{r['_file']}`: {duration(r.get('seconds'))}"]
    L += [""]

    L += _environment_section(cfg, timings)
    L += ["## Resolved configuration", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip(),
          "```", ""]
    path = Path(out) if out else root / "report.md"
    atomic_write_text(path, "\n".join(L))
    print(f"report → {path}")
    return path


def base_line(base: dict) -> str:
    """How a run's base was held: its source, dtype, 4-bit layers and the bytes its weights took."""
    four = base.get("four_bit_layers") or {}
    how = (f"{four.get('layers')} linear layers in 4-bit NF4 ({four.get('bytes_per_weight')} bytes per weight), "
           f"the rest {base.get('dtype')}" if base.get("four_bit") else f"{base.get('dtype')}")
    size = base.get("weight_bytes")
    return f"`{base.get('source')}`, {how}; {size / 2**20:,.0f} MiB in memory" if size else f"`{base.get('source')}`, {how}"


def progress(evals: list[dict], key: str, bold: bool = False) -> str:
    """``first → last`` across evaluations at different steps; a single evaluation is one figure."""
    points = [(e.get("step"), e[key]) for e in evals if e.get(key) is not None]
    if not points:
        return "–"
    last = f"**{fmt(points[-1][1])}**" if bold else fmt(points[-1][1])
    (s0, v0), (s1, _) = points[0], points[-1]
    if len(points) == 1 or s0 == s1:
        return f"{last} (step {fmt(s1)}, the only evaluation)"
    return f"{fmt(v0)} → {last} (steps {fmt(s0)} → {fmt(s1)})"


def mc_figures(r: dict) -> str:
    base = r.get("untrained")
    floor = f"; untrained model {base['accuracy']:.1%} / {base['accuracy_norm']:.1%}" if base else ""
    return f"{r['accuracy']:.1%} (per byte {r['accuracy_norm']:.1%}{floor}; chance {r['chance']:.1%})"


def _sources(folder) -> set[str]:
    try:
        return {s["spec"] for s in load_manifest(folder).get("sources") or [] if s.get("spec")}
    except (FidanError, OSError, TypeError, KeyError):
        return set()


def domain(cfg: dict, r: dict) -> str:
    """", in domain" when a scored data folder holds only sources the run trained on, ", out of domain: never
    trained on" when it holds none of them; "" when that cannot be told (a plain file, mixed sources)."""
    trained, scored = _sources(cfg["data"]) if cfg.get("data") else set(), _sources(r["text"])
    if not trained or not scored:
        return ""
    if scored <= trained:
        return ", in domain"
    return f", out of domain: {', '.join(sorted(scored))}, never trained on" if not scored & trained else ""


def bpb_note(cfg: dict, evals: list[dict], final: dict | None, bpb_results: list[dict]) -> str | None:
    """One line on why the held-out bits-per-byte figures above differ: what text and windows each scored."""
    last = evals[-1] if evals else None
    if last is None or not (final or bpb_results):
        return None
    block = (cfg.get("model") or {}).get("block_size")
    if cfg.get("stage") == "sft":
        parts = [f"training scores the answers of the held-out conversations ({fmt(last.get('val_tokens'))} tokens)"]
    elif "val_windows" in last:
        parts = [f"training's evaluations score {fmt(last['val_windows'])} windows "
                 f"({fmt(last.get('val_tokens'))} tokens) spread evenly over the val split"
                 + (f" and its final one all {fmt(final.get('val_tokens'))} tokens" if final else "")
                 + f", each document from the end-of-text token, in {block}-token windows advancing by {block // 2}"]
    else:  # runs written before training scored documents: evenly spaced windows of the token file
        parts = [f"training scored {fmt(last.get('val_tokens'))} tokens in evenly spaced {block}-token windows of "
                 "the val token file, each window starting cold (no context carried across windows)"]
    data = Path(cfg["data"]).resolve() if cfg.get("data") else None
    for r in bpb_results:
        if r.get("split") == "val" and data is not None and Path(r["text"]).resolve() == data:
            same = final is not None and abs(final.get("val_bpb", 0) - r["bpb"]) < 5e-4
            parts.append(f"`fidan eval bpb` scored all {fmt(r.get('tokens'))} tokens of the {fmt(r.get('documents'))} "
                         f"documents of the val split, each from a start token, in {r.get('block_size')}-token "
                         f"windows advancing by {r.get('stride')}" + (" (the same figure as the final one)" if same else ""))
        else:
            parts.append(f"`fidan eval bpb` scored another text ({Path(r['text']).name}"
                         + (f", {r['split']} split" if r.get("split") else "") + ")")
    return "Why the held-out bits per byte differ: " + "; ".join(parts) + "."


def _training_table(train: list[dict], settings: dict) -> list[str]:
    if not train:
        return ["No training records in metrics.jsonl.", ""]
    gn = [r["grad_norm"] for r in train if r.get("grad_norm") is not None]
    rows = [("train loss", train[0].get("loss"), train[-1].get("loss"))]
    if gn:
        rows.append(("gradient norm", gn[0], gn[-1]))
    rows.append(("learning rate", train[0].get("lr"), train[-1].get("lr")))
    if len(train) == 1:  # one step: one column, not the same number twice
        L = table([row[:2] for row in rows], ("", f"step {train[0].get('step')}"))
    else:
        L = table(rows, ("", f"first step ({train[0].get('step')})", f"last step ({train[-1].get('step')})"))
    if gn:
        clip = settings.get("grad_clip")
        clipped = sum(g > clip for g in gn) if clip else 0
        L += [f"Gradient norm: median {statistics.median(gn):.3f}, max {max(gn):.3f}"
              + (f"; {clipped} of {len(gn)} steps were clipped at {clip}." if clip else "."), ""]
    return L


def _rel(png: Path, root: Path, out: str | None) -> str:
    base = Path(out).parent if out else root
    try:
        return str(png.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(png.resolve())


def _eval_section(results: dict, evals: list[dict], mc_png, root: Path, out: str | None) -> list[str]:
    L = ["## Evaluation", ""]
    if results["bpb"]:
        L += table([(Path(r["text"]).name + (f" ({r['split']})" if r.get("split") else ""), r["bpb"], f"{r['perplexity']:,.1f}",
                      r["tokens"], r["bytes"], f"{r['block_size']}/{r['stride']}") for r in results["bpb"]],
                    ("text", "bits per byte", "perplexity / token", "tokens", "bytes", "window/stride"))
    if results["mc"]:
        L += table([(Path(r["data"]).name, r["items"], f"{r['accuracy']:.1%}", f"{r['accuracy_norm']:.1%}",
                     _untrained(r), f"{r['chance']:.1%}") for r in results["mc"]],
                   ("multiple choice", "items", "accuracy (summed)", "accuracy (per byte)",
                    "untrained model (summed / per byte)", "chance"))
        if mc_png:
            L += [f"![multiple choice]({_rel(mc_png, root, out)})", ""]
    if not results["bpb"] and not results["mc"]:
        L += ["No `fidan eval` results in eval/ yet: run `fidan eval bpb|mc|samples --model RUN ...`.", ""]
    L += ["## Samples", ""]
    for r in results["samples"]:
        L += [f"Fixed prompts and seeds (temperature {r['temperature']}, top-k {r['top_k']}, top-p {r['top_p']}, "
              f"at most {r['max_new_tokens']} new tokens; `{r['_file']}`):", ""]
        L += [f"- seed {s['seed']}: {quote(s['text'])}" for s in r["samples"]] + [""]
    with_samples = [e for e in evals if e.get("sample")]
    if with_samples:
        L += ["Samples written during training (same prompt and seed each time):", ""]
        n = len(with_samples)
        picks = [with_samples[i] for i in sorted({0, n // 3, 2 * n // 3, n - 1})]  # at most four, first and last
        L += [f"- step {e['step']}: {quote(e['sample'])}" for e in picks] + [""]
    return L


def _untrained(r: dict) -> str:
    base = r.get("untrained")
    return f"{base['accuracy']:.1%} / {base['accuracy_norm']:.1%}" if base else "–"


def _subruns_section(root: Path) -> list[str]:
    """Runs made inside this folder (e.g. instruction tuning in chat/) with their last held-out figures."""
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists()):
        evals = [r for r in read_metrics(sub) if r.get("kind") == "eval"]
        cfg = (RunConfig.read(sub) or RunConfig()).doc
        last = evals[-1] if evals else {}
        rows.append((f"`{sub.name}/`", cfg.get("stage", "?"), last.get("step"), last.get("val_loss"), last.get("val_bpb")))
    if not rows:
        return []
    return ["## Runs inside this folder", ""] + table(rows, ("folder", "stage", "last eval step", "val loss", "val bits/byte"))


def _environment_section(cfg: dict, timings: Timings) -> list[str]:
    L = ["## Environment", ""]
    env = timings.environment
    where = f"Machine recorded in {TIMINGS_FILE}"
    if not env:
        env = environment()
        where = "The machine that wrote this report (the run itself records only torch and device)"
    rows = [("torch (training)", cfg.get("torch")), ("device (training)", cfg.get("device")),
            ("CPU", f"{env.get('cpu_model')} ({env.get('cpu_cores')} cores)"), ("GPU", env.get("gpu") or "none"),
            ("torch", env.get("torch")), ("Python", env.get("python")), ("platform", env.get("platform")),
            ("fidan", env.get("fidan"))]
    L += [f"{where}:", ""] + table(rows, ("", ""))
    return L


def _steps(step: int, settings: dict, root: Path) -> str:
    """Steps run out of those planned: a budgeted run plans its schedule as it goes (kept in config.json)."""
    budget = settings.get("budget_minutes")
    if budget:
        planned = planned_steps(root)
        plan = f" of {planned:,} planned" if planned else ""
        return f"{step:,}{plan} (schedule fitted to {budget:g} minutes)"
    return f"{step:,} of {settings.get('max_steps', '?'):,}"
