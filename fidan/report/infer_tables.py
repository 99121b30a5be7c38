"""The tables and plots of `fidan bench infer`, from its JSON result alone (the run's report reuses them)."""

from __future__ import annotations

from pathlib import Path

from fidan.runtime.plots import figure

NAMES = {"fidan": "fidan", "generate": "generate()", "pipeline": "pipeline()"}


def _ratio(r: dict | None) -> str:
    if not r:
        return "–"
    return f"**{r['median']:.2f}x** ({r['min']:.2f}-{r['max']:.2f})"


def markdown(result: dict) -> str:
    """The result as Markdown: speed per configuration, the ratios, load times and memory."""
    env = result.get("environment") or {}
    contestants = result["contestants"]
    L = [f"Decode speed of `{result['model']}` ({result['parameters']:,} parameters, block {result['block_size']}): "
         f"{result['new_tokens']} greedy new tokens per row, exactly; {result['rounds']} measured rounds after "
         f"{result['warmup']} warm-up, every contestant and precision in turn in each round; ratios are medians of "
         f"per-round ratios of decode tokens/s (range in brackets). Machine: {env.get('cpu_model')}, "
         f"{env.get('torch_threads')} threads, torch {env.get('torch')}"
         + (f", transformers {env['transformers']}" if env.get("transformers") else "") + f"; {result.get('date')}.", ""]
    head = ["precision", "batch", "prompt"] + [f"{NAMES[c]} tok/s" for c in contestants]
    head += [f"fidan ÷ {NAMES[c]}" for c in contestants[1:]] + ["fidan TTFT", "fidan ms/token"]
    if "generate" in contestants:
        head += ["generate() TTFT", "generate() ms/token", "same greedy tokens"]
    L += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["results"]:
        c = row["contestants"]
        cells = [row["precision"], str(row["batch"]), str(row["prompt_tokens"])]
        cells += [f"{c[name]['decode_tok_s']:,.0f}" for name in contestants]
        cells += [_ratio(row["ratios"].get(f"fidan/{name}")) for name in contestants[1:]]
        cells += [f"{c['fidan']['ttft_ms']:.1f} ms", f"{c['fidan']['per_token_ms']:.2f}"]
        if "generate" in contestants:
            cells += [f"{c['generate']['ttft_ms']:.1f} ms", f"{c['generate']['per_token_ms']:.2f}",
                      f"{row.get('same_greedy_tokens', 0):.0%}"]
        L.append("| " + " | ".join(cells) + " |")
    low = [row for row in result["results"] if row["precision"] != "fp32" and f"{row['precision']}/fp32" in row["ratios"]]
    if low:
        L += ["", "fidan's engine at lower precision against fp32 (decode tokens/s, same rounds):", "",
              "| precision | batch | prompt | ÷ fp32 |", "|---|---|---|---|"]
        L += [f"| {r['precision']} | {r['batch']} | {r['prompt_tokens']} | {_ratio(r['ratios'][r['precision'] + '/fp32'])} |"
              for r in low]
    load, mem = result.get("load") or {}, result.get("memory") or {}
    L += ["", "Load time: " + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.2f} s" for k, v in load.items())
          + ". Memory: resident " + ", ".join(f"{k.removesuffix('_mb').replace('_', ' ')} {v:,.0f} MiB"
                                             for k, v in mem.items() if k != "peak_rss_mb")
          + f"; process peak {mem.get('peak_rss_mb', 0):,.0f} MiB (every model of the run is resident at once).", ""]
    return "\n".join(L)


def plot_speed(result: dict, out: str | Path) -> Path | None:
    """Decode tokens/s against batch size: one panel per prompt length, one line per contestant and precision."""
    lengths = result["prompt_tokens"]
    with figure(out, 1, len(lengths), size=(5.2 * len(lengths), 3.8), title="decode tokens/s") as (_, axes):
        for ax, n in zip(axes[0], lengths, strict=True):
            for i, p in enumerate(result["precisions"]):  # a colour per precision, a line style per contestant
                for c, style in zip(result["contestants"], ("-", "--", ":"), strict=False):
                    rows = [r for r in result["results"] if r["precision"] == p and r["prompt_tokens"] == n]
                    ax.plot([r["batch"] for r in rows], [r["contestants"][c]["decode_tok_s"] for r in rows], style,
                            color=f"C{i}", marker="o", label=f"{NAMES[c]} {p}")
            ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="tokens/s", title=f"prompt {n} tokens")
            ax.set_xticks(result["batches"], [str(b) for b in result["batches"]])
            ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
            ax.legend()
    return Path(out)


def plot_ratios(result: dict, out: str | Path) -> Path | None:
    """fidan ÷ transformers generate() per configuration (bars; 1 is parity)."""
    rows = [r for r in result["results"] if "fidan/generate" in r["ratios"]]
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
