"""The tables and plots of `fidan bench infer`, from its JSON result alone (bench writes them beside the result;
the run's report shows them again)."""

from __future__ import annotations

from pathlib import Path

from fidan.runtime.plots import figure

NAMES = {"fidan": "fidan", "generate": "generate()", "pipeline": "pipeline()", "forward": "forward"}


def _ratio(r: dict | None) -> str:
    if not r:
        return "–"
    return f"**{r['median']:.2f}x** ({r['min']:.2f}-{r['max']:.2f})"


def _machine(result: dict) -> str:
    env = result.get("environment") or {}
    return (f"Machine: {env.get('cpu_model')}, {env.get('torch_threads')} threads, torch {env.get('torch')}"
            + (f", transformers {env['transformers']}" if env.get("transformers") else "") + f"; {result.get('date')}.")


def _size(result: dict) -> str:
    block = result.get("block_size")
    return f"{result['parameters']:,} parameters" + (f", block {block}" if block else "")


def markdown(result: dict) -> str:
    """The result as Markdown: speed per configuration, the ratios, load times and memory."""
    if result.get("task") == "classification":
        return _classification(result)
    contestants = result["contestants"]
    lead = contestants[0]
    L = [f"Decode speed of `{result['model']}` ({_size(result)}): "
         f"{result['new_tokens']} greedy new tokens per row, exactly; {result['rounds']} measured rounds after "
         f"{result['warmup']} warm-up, every contestant and precision in turn in each round; ratios are medians of "
         f"per-round ratios of decode tokens/s (range in brackets); prefill tokens/s = prompt tokens ÷ time to the "
         f"first token. {_machine(result)}", ""]
    gpu = any("gpu_peak_mb" in t for r in result["results"] for t in r["contestants"].values())
    head = ["precision", "batch", "prompt"] + [f"{NAMES[c]} tok/s" for c in contestants]
    head += [f"{NAMES[lead]} ÷ {NAMES[c]}" for c in contestants[1:]]
    head += [f"{NAMES[lead]} prefill tok/s", f"{NAMES[lead]} TTFT", f"{NAMES[lead]} ms/token"]
    compare = lead == "fidan" and "generate" in contestants
    if compare:
        head += ["generate() TTFT", "generate() ms/token", "same greedy tokens"]
    if gpu:
        head += [f"{NAMES[c]} GPU MiB" for c in contestants]
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["results"]:
        c = row["contestants"]
        cells = [row["precision"], str(row["batch"]), str(row["prompt_tokens"])]
        cells += [f"{c[name]['decode_tok_s']:,.0f}" for name in contestants]
        cells += [_ratio(row["ratios"].get(f"{lead}/{name}")) for name in contestants[1:]]
        prefill = c[lead].get("prefill_tok_s")  # absent from results written before it was measured
        cells += [f"{prefill:,.0f}" if prefill is not None else "–", f"{c[lead]['ttft_ms']:.1f} ms",
                  f"{c[lead]['per_token_ms']:.2f}"]
        if compare:
            cells += [f"{c['generate']['ttft_ms']:.1f} ms", f"{c['generate']['per_token_ms']:.2f}",
                      f"{row.get('same_greedy_tokens', 0):.0%}"]
        if gpu:
            cells += [f"{c[name]['gpu_peak_mb']:,.0f}" if "gpu_peak_mb" in c[name] else "–" for name in contestants]
        L.append("| " + " | ".join(cells) + " |")
    L += _precision_ratios(result, f"{NAMES[lead]}'s", "decode tokens/s", "prompt")
    return "\n".join(L + _load_and_memory(result))


def _classification(result: dict) -> str:
    gpu = any("gpu_peak_mb" in r["timing"] for r in result["results"])
    L = [f"Classification throughput of `{result['model']}` ({result.get('architecture')}, {_size(result)}): one "
         f"forward pass over a batch of texts of exactly the given length in tokens (special tokens included); "
         f"{result['rounds']} measured rounds after {result['warmup']} warm-up, every precision in turn in each "
         f"round; medians. {_machine(result)}", ""]
    head = ["precision", "batch", "tokens per text", "texts/s", "tokens/s", "ms per batch"] + (["GPU MiB"] if gpu else [])
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["results"]:
        t = row["timing"]
        cells = [row["precision"], str(row["batch"]), str(row["prompt_tokens"]), f"{t['texts_s']:,.1f}",
                 f"{t['tok_s']:,.0f}", f"{t['latency_ms']:.2f}"]
        if gpu:
            cells.append(f"{t['gpu_peak_mb']:,.0f}" if "gpu_peak_mb" in t else "–")
        L.append("| " + " | ".join(cells) + " |")
    L += _precision_ratios(result, "The encoder's", "texts/s", "tokens per text")
    return "\n".join(L + _load_and_memory(result))


def _precision_ratios(result: dict, who: str, what: str, length: str) -> list[str]:
    low = [row for row in result["results"] if row["precision"] != "fp32" and f"{row['precision']}/fp32" in row["ratios"]]
    if not low:
        return []
    return ["", f"{who} speed at other precisions against fp32 ({what}, same rounds):", "",
            f"| precision | batch | {length} | ÷ fp32 |", "|---|---|---|---|"] + [
        f"| {r['precision']} | {r['batch']} | {r['prompt_tokens']} | {_ratio(r['ratios'][r['precision'] + '/fp32'])} |"
        for r in low]


def _load_and_memory(result: dict) -> list[str]:
    load, mem = result.get("load") or {}, result.get("memory") or {}
    resident = {k: v for k, v in mem.items() if k not in ("peak_rss_mb", "gpu_peak_mb")}
    gpu = (f", GPU peak allocated {mem['gpu_peak_mb']:,.0f} MiB (torch.cuda.max_memory_allocated, reset before "
           "each run; a row's figure is the highest over its rounds)") if "gpu_peak_mb" in mem else ""
    return ["", "Load time: " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.2f} s" for k, v in load.items())
            + ". Memory: resident " + ", ".join(f"{k.removesuffix('_mb').replace('_', ' ')} {v:,.0f} MiB"
                                               for k, v in resident.items())
            + f"; process peak {mem.get('peak_rss_mb', 0):,.0f} MiB{gpu}. Every model of the run is resident at once.",
            ""]


def plot_speed(result: dict, out: str | Path) -> Path | None:
    """Decode tokens/s (an encoder: texts/s) against batch size: one panel per prompt length, one line per
    contestant and precision."""
    lengths, classify = result["prompt_tokens"], result.get("task") == "classification"
    title = "texts/s" if classify else "decode tokens/s"
    with figure(out, 1, len(lengths), size=(5.2 * len(lengths), 3.8), title=title) as (_, axes):
        for ax, n in zip(axes[0], lengths, strict=True):
            for i, p in enumerate(result["precisions"]):  # a colour per precision, a line style per contestant
                rows = [r for r in result["results"] if r["precision"] == p and r["prompt_tokens"] == n]
                for c, style in zip(result["contestants"], ("-", "--", ":"), strict=False):
                    ys = [r["timing"]["texts_s"] if classify else r["contestants"][c]["decode_tok_s"] for r in rows]
                    ax.plot([r["batch"] for r in rows], ys, style, color=f"C{i}", marker="o", label=f"{NAMES[c]} {p}")
            ax.set(xscale="log", yscale="log", xlabel="batch", ylabel=title,
                   title=f"{'texts of' if classify else 'prompt'} {n} tokens")
            ax.set_xticks(result["batches"], [str(b) for b in result["batches"]])
            ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
            ax.legend()
    return Path(out)


def plot_ratios(result: dict, out: str | Path) -> Path | None:
    """fidan ÷ transformers generate() per configuration (bars; 1 is parity)."""
    rows = [r for r in result.get("results", []) if "fidan/generate" in r["ratios"]]
    if not rows:
        return None
    labels = [f"{r['precision']}\nb{r['batch']} p{r['prompt_tokens']}" for r in rows]
    values = [r["ratios"]["fidan/generate"]["median"] for r in rows]
    with figure(out, size=(max(6.0, 0.55 * len(rows)), 3.8), title="fidan ÷ generate(), decode tokens/s") as (_, axes):
        ax = axes[0][0]
        ax.bar(range(len(rows)), values)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set(ylabel="ratio (median of rounds)")
    return Path(out)
