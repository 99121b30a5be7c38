"""`fidan report RUN`: a run's report card, ``report.md`` with PNG plots, built from the run's files alone.

It reads ``config.yaml`` (resolved settings), ``metrics.jsonl``, the data folder's ``manifest.json`` and
token statistics, the run's ``tokenizer/``, ``eval/*.json`` (from `fidan eval`), ``timings.json`` (stage
times and environment, written by `fidan demo`) and any tuned runs inside the folder. ``report.md`` and
the plots are derived files: each call rewrites them from the same inputs.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from pathlib import Path

import yaml

from fidan.core.checkpoint import read_metrics
from fidan.core.environment import environment
from fidan.core.io import atomic_write_json, atomic_write_text
from fidan.core.plots import plot_loss
from fidan.core.tokenizer_io import load_tokenizer
from fidan.core.turkish import words
from fidan.errors import FidanError
from fidan.report.plots import plot_mc, plot_training

TIMINGS_FILE = "timings.json"
SAMPLE_CHARS = 200_000  # tokenizer statistics read at most this much held-out text


def save_timings(run: str | Path, timings: dict[str, float]) -> Path:
    """Record how long each stage took, with the machine it ran on, for the report."""
    path = Path(run) / TIMINGS_FILE
    atomic_write_json(path, {"stages": {k: round(v, 1) for k, v in timings.items()}, "environment": environment(),
                             "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return path


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FidanError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); regenerate the run") from None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if x and abs(x) < 0.01:
            return f"{x:.3g}"
        return f"{x:,.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _table(rows: list[tuple], header: tuple) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return out + [""]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def tokenizer_stats(tok_dir: Path, data: Path | None, meta: dict | None) -> dict:
    """Vocabulary, bytes per token, tokens per word and how many frequent words are a single token."""
    tok = load_tokenizer(tok_dir)
    raw = json.loads(tok.tokenizer.to_str())
    stats: dict = {"vocab_size": tok.vocab_size, "model": (raw.get("model") or {}).get("type"),
                   "special_tokens": [t.content for t in tok.tokenizer.get_added_tokens_decoder().values() if t.special]}
    if meta:
        for split, s in meta.get("splits", {}).items():
            stats[f"{split}_tokens"] = s["tokens"]
            stats[f"{split}_bytes_per_token"] = s["bytes"] / max(s["tokens"], 1)
    if data is None or not (data / "manifest.json").exists():
        return stats
    from fidan.core.datadir import iter_split

    docs, size = [], 0
    for doc in iter_split(data, "val"):
        docs.append(doc)
        size += len(doc)
        if size >= SAMPLE_CHARS:
            break
    n_words = n_tokens = 0
    single: Counter = Counter()
    freq: Counter = Counter()
    for enc, doc in zip(tok.tokenizer.encode_batch(docs, add_special_tokens=False), docs, strict=True):
        n_tokens += len(enc.ids)
        offsets = enc.offsets
        j = 0
        for m in _word_spans(doc):
            s, e = m
            # Tokens that overlap the word; a leading space in the same token does not count against it.
            while j < len(offsets) and offsets[j][1] <= s:
                j += 1
            k = j
            while k < len(offsets) and offsets[k][0] < e:
                k += 1
            w = doc[s:e]
            freq[w] += 1
            single[w] += (k - j) == 1
            n_words += 1
    if n_words:
        top = [w for w, _ in freq.most_common(100)]
        stats["tokens_per_word"] = n_tokens / n_words
        stats["top100_single_token"] = sum(single[w] == freq[w] for w in top) / len(top)
        stats["sample_words"] = n_words
        stats["split_examples"] = [(w, [tok.decode([i]) for i in tok.encode(w)]) for w in top
                                   if single[w] < freq[w]][:5]
    return stats


def _word_spans(text: str):
    pos = 0
    for w in words(text):
        s = text.index(w, pos)
        pos = s + len(w)
        yield s, pos


def _eval_results(run: Path) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {"bpb": [], "mc": [], "samples": []}
    for f in sorted((run / "eval").glob("*.json")) if (run / "eval").exists() else []:
        r = _read_json(f)
        if r and r.get("task") in found:
            found[r["task"]].append({**r, "_file": f.name})
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
    if not (root / "config.yaml").exists():
        raise FidanError(f"{root} has no config.yaml; pass a run folder made by `fidan pretrain` or `fidan demo`")
    cfg = _read_yaml(root / "config.yaml")
    records = read_metrics(root)
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    timings = _read_json(root / TIMINGS_FILE) or {}
    results = _eval_results(root)
    plots = root / "plots"
    model = cfg.get("model") or {}
    n_params = cfg.get("parameters")
    title = f"{cfg.get('train', {}).get('preset', 'run')} · {n_params:,} parameters" if n_params else ""
    loss_png = plot_loss(records, plots / "loss.png", title=title)
    training_png = plot_training(records, plots / "training.png", title=title)
    mc_png = plot_mc(results["mc"], plots / "mc.png")

    last = evals[-1] if evals else {}
    first = evals[0] if evals else {}
    tput = _throughput(train)
    tokens_per_step = cfg.get("tokens_per_step")
    step = train[-1]["step"] if train else 0
    train_s = (train[-1].get("train_s") or train[-1].get("elapsed_s")) if train else None

    L = [f"# Run report: {root.resolve().name}", ""]
    L += [f"Generated {time.strftime('%Y-%m-%d %H:%M')} by fidan from the files in `{root}` "
          f"(regenerate: `fidan report {root}`).", ""]

    L += ["## Summary", ""]
    card = [
        ("model", f"{cfg.get('train', {}).get('preset') or cfg.get('stage', '?')}: {model.get('n_layer')} layers, "
                  f"{model.get('n_embd')} wide, {model.get('n_head')} heads, block {model.get('block_size')}, "
                  f"vocab {model.get('vocab_size')}"),
        ("parameters", n_params),
        ("steps", f"{step:,} of {cfg.get('train', {}).get('max_steps', '?'):,}" if train else "–"),
        ("tokens seen", step * tokens_per_step if tokens_per_step else None),
        ("held-out bits per byte", f"{_fmt(first.get('val_bpb'))} → **{_fmt(last.get('val_bpb'))}**" if evals else "–"),
        ("held-out loss (nats/token)", f"{_fmt(first.get('val_loss'))} → {_fmt(last.get('val_loss'))}" if evals else "–"),
        ("training time", _duration(train_s)),
        ("throughput (median)", f"{tput['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in tput else "–"),
    ]
    if "mfu" in tput:
        card.append(("MFU (median)", f"{tput['mfu']:.1%}"))
    for r in results["bpb"]:
        split = f" ({r['split']})" if r.get("split") else ""
        card.append((f"bits per byte on {Path(r['text']).name}{split}", f"{r['bpb']:.3f}"))
    for r in results["mc"]:
        card.append((f"multiple choice {Path(r['data']).name}",
                     f"{r['accuracy']:.1%} (per byte {r['accuracy_norm']:.1%}; chance {r['chance']:.1%})"))
    L += _table(card, ("", ""))

    L += ["## Training curves", ""]
    if loss_png:
        L += [f"![loss and bits per byte]({_rel(loss_png, root, out)})", ""]
    if training_png:
        L += [f"![learning rate, gradient norm, throughput]({_rel(training_png, root, out)})", ""]
    if train:
        gn = [r["grad_norm"] for r in train if r.get("grad_norm") is not None]
        rows = [("train loss", train[0]["loss"], train[-1]["loss"])]
        if gn:
            rows.append(("gradient norm", gn[0], gn[-1]))
        rows.append(("learning rate", train[0].get("lr"), train[-1].get("lr")))
        L += _table(rows, ("", "first step", "last step"))
        if gn:
            clip = cfg.get("train", {}).get("grad_clip")
            clipped = sum(g > clip for g in gn) if clip else 0
            L += [f"Gradient norm: median {statistics.median(gn):.3f}, max {max(gn):.3f}"
                  + (f"; {clipped} of {len(gn)} steps were clipped at {clip}." if clip else "."), ""]
    else:
        L += ["No training records in metrics.jsonl.", ""]

    L += ["## Throughput", ""]
    rows = [("tokens per step", tokens_per_step),
            ("median tokens/s", round(tput["tokens_per_s"]) if "tokens_per_s" in tput else None),
            ("device", cfg.get("device")), ("precision", cfg.get("train", {}).get("precision"))]
    if "mfu" in tput:
        rows.append(("median MFU", f"{tput['mfu']:.2%}"))
    if cfg.get("flops_per_token"):
        rows.append(("training FLOPs per token", f"{cfg['flops_per_token']:,.0f}"))
    if cfg.get("peak_flops"):
        rows.append(("peak FLOP/s used for MFU", f"{cfg['peak_flops'] / 1e9:,.1f} G"))
    L += _table([r for r in rows if r[1] is not None], ("", ""))

    L += _eval_section(results, evals, mc_png, root, out)
    L += _data_section(cfg, root)
    L += _subruns_section(root)

    L += ["## Time per stage", ""]
    stages = timings.get("stages") or {}
    if stages:
        L += _table([(k, _duration(v)) for k, v in stages.items()] + [("total", _duration(sum(stages.values())))],
                    ("stage", "time"))
    else:
        L += [f"Training took {_duration(train_s)} (no {TIMINGS_FILE}: stage times are recorded by `fidan demo`).", ""]
    for kind, rs in results.items():
        for r in rs:
            L += [f"- eval {kind} `{r['_file']}`: {_duration(r.get('seconds'))}"]
    L += [""]

    L += _environment_section(cfg, timings)
    L += ["## Resolved configuration", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip(),
          "```", ""]
    path = Path(out) if out else root / "report.md"
    atomic_write_text(path, "\n".join(L))
    print(f"report → {path}")
    return path


def _rel(png: Path, root: Path, out: str | None) -> str:
    base = Path(out).parent if out else root
    try:
        return str(png.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(png.resolve())


def _eval_section(results: dict, evals: list[dict], mc_png, root: Path, out: str | None) -> list[str]:
    L = ["## Evaluation", ""]
    if results["bpb"]:
        L += _table([(Path(r["text"]).name + (f" ({r['split']})" if r.get("split") else ""), r["bpb"], f"{r['perplexity']:,.1f}",
                      r["tokens"], r["bytes"], f"{r['block_size']}/{r['stride']}") for r in results["bpb"]],
                    ("text", "bits per byte", "perplexity / token", "tokens", "bytes", "window/stride"))
    if results["mc"]:
        L += _table([(Path(r["data"]).name, r["items"], f"{r['accuracy']:.1%}", f"{r['accuracy_norm']:.1%}",
                      f"{r['chance']:.1%}") for r in results["mc"]],
                    ("multiple choice", "items", "accuracy (summed)", "accuracy (per byte)", "chance"))
        if mc_png:
            L += [f"![multiple choice]({_rel(mc_png, root, out)})", ""]
    if not results["bpb"] and not results["mc"]:
        L += ["No `fidan eval` results in eval/ yet: run `fidan eval bpb|mc|samples --model RUN ...`.", ""]
    L += ["## Samples", ""]
    for r in results["samples"]:
        L += [f"Fixed prompts and seeds (temperature {r['temperature']}, top-k {r['top_k']}, top-p {r['top_p']}, "
              f"at most {r['max_new_tokens']} new tokens; `{r['_file']}`):", ""]
        L += [f"- seed {s['seed']}: {_quote(s['text'])}" for s in r["samples"]] + [""]
    with_samples = [e for e in evals if e.get("sample")]
    if with_samples:
        L += ["Samples written during training (same prompt and seed each time):", ""]
        n = len(with_samples)
        picks = [with_samples[i] for i in sorted({0, n // 3, 2 * n // 3, n - 1})]  # at most four, first and last
        L += [f"- step {e['step']}: {_quote(e['sample'])}" for e in picks] + [""]
    return L


def _quote(text: str) -> str:
    return "«" + " ".join(text.split()).replace("|", "\\|") + "»"


def _data_section(cfg: dict, root: Path) -> list[str]:
    L = ["## Data", ""]
    data = Path(cfg["data"]) if cfg.get("data") else None
    manifest = _read_json(data / "manifest.json") if data else None
    meta = None
    if data and cfg.get("tokenizer_sha256"):
        meta = _read_json(data / "tokens" / cfg["tokenizer_sha256"][:12] / "meta.json")
    if manifest:
        facts = [f"manifest created {manifest['created']}" if manifest.get("created") else "",
                 f"split rule: {manifest.get('split_rule') or manifest.get('split')}"
                 if manifest.get("split_rule") or manifest.get("split") else ""]
        facts = [f for f in facts if f]
        L += [f"Data folder `{data}`" + (f" ({', '.join(facts)})." if facts else "."), ""]
        L += _sources_table(manifest.get("sources"))
        splits = manifest.get("splits")
        if isinstance(splits, dict) and all(isinstance(v, dict) for v in splits.values()):
            tokens = (meta or {}).get("splits", {})
            L += _table([(name, sp.get("documents"), sp.get("characters"), sp.get("bytes"), tokens.get(name, {}).get("tokens"))
                         for name, sp in splits.items()], ("split", "documents", "characters", "bytes", "tokens"))
        else:
            counts = [(k, manifest[k]) for k in ("train", "val") if isinstance(manifest.get(k), int)]
            if counts:
                L += _table(counts, ("split", "examples"))
        dropped = manifest.get("dropped")
        if dropped:
            L += ["Dropped while cleaning: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in dropped.items()) + ".", ""]
    else:
        L += [f"The data folder `{data}` is not readable from here; the run's config records its shard hashes.", ""]

    L += ["## Tokenizer", ""]
    tok_dir = root / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        corpus = manifest and isinstance(manifest.get("splits"), dict) and "val" in manifest["splits"]
        st = tokenizer_stats(tok_dir, data if corpus else None, meta)
        rows = [("type", st.get("model")), ("vocabulary", st["vocab_size"]),
                ("special tokens", ", ".join(f"`{t}`" for t in st["special_tokens"]) or "–")]
        for split in ("train", "val"):
            if f"{split}_bytes_per_token" in st:
                rows.append((f"bytes per token ({split})", f"{st[f'{split}_bytes_per_token']:.2f}"))
        if "tokens_per_word" in st:
            rows.append(("tokens per word (held-out sample)", f"{st['tokens_per_word']:.2f} over {st['sample_words']:,} words"))
            rows.append(("100 most frequent words that are one token", f"{st['top100_single_token']:.0%}"))
        L += _table(rows, ("", ""))
        if st.get("split_examples"):
            L += ["Frequent words split into pieces: " + "; ".join(
                f"{w} → {' · '.join(repr(p) for p in pieces)}" for w, pieces in st["split_examples"]) + ".", ""]
    else:
        L += ["The run holds no tokenizer/ folder.", ""]
    return L


def _sources_table(sources) -> list[str]:
    """Sources as a data folder lists them (a list of {spec, read, kept}) or as another stage does (a mapping)."""
    if isinstance(sources, list) and all(isinstance(x, dict) for x in sources):
        return _table([(x.get("spec"), x.get("read"), x.get("kept")) for x in sources], ("source", "documents read", "kept"))
    if isinstance(sources, dict):
        rows = [(name, *(v.get(k) for k in ("train", "val")), v.get("description")) if isinstance(v, dict) else (name, v, None, None)
                for name, v in sources.items()]
        return _table(rows, ("source", "train", "val", "what"))
    return []


def _subruns_section(root: Path) -> list[str]:
    """Runs made inside this folder (e.g. instruction tuning in chat/) with their last held-out figures."""
    rows = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists()):
        evals = [r for r in read_metrics(sub) if r.get("kind") == "eval"]
        cfg = _read_yaml(sub / "config.yaml") if (sub / "config.yaml").exists() else {}
        last = evals[-1] if evals else {}
        rows.append((f"`{sub.name}/`", cfg.get("stage", "?"), last.get("step"), last.get("val_loss"), last.get("val_bpb")))
    if not rows:
        return []
    return ["## Runs inside this folder", ""] + _table(rows, ("folder", "stage", "last eval step", "val loss", "val bits/byte"))


def _environment_section(cfg: dict, timings: dict) -> list[str]:
    L = ["## Environment", ""]
    env = timings.get("environment")
    where = f"Machine recorded in {TIMINGS_FILE}"
    if not env:
        env = environment()
        where = "The machine that wrote this report (the run itself records only torch and device)"
    rows = [("torch (training)", cfg.get("torch")), ("device (training)", cfg.get("device")),
            ("CPU", f"{env.get('cpu_model')} ({env.get('cpu_cores')} cores)"), ("GPU", env.get("gpu") or "none"),
            ("torch", env.get("torch")), ("Python", env.get("python")), ("platform", env.get("platform")),
            ("fidan", env.get("fidan"))]
    L += [f"{where}:", ""] + _table(rows, ("", ""))
    return L
