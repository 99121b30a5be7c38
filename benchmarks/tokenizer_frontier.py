"""Tokenizer frontier, out of domain: leave one built-in source out of training and measure on it.

    python benchmarks/tokenizer_frontier.py --work /tmp/frontier
    python benchmarks/tokenizer_frontier.py --work /tmp/frontier --plot docs/images/tokenizer_frontier.png

For each held-out source (tr-kenet, tr-manpages, tr-news by default):

1. `fidan data prepare` of every other built-in source (the training text) and of the held-out source alone
   (the test text: its documents after the same filters; every k-th one when it is longer than
   --max-test-bytes);
2. tokenizers at --vocab-size, all trained on the same text: `--plain` BPE, `--morph --min-frequency 1
   --morph-keep 1000` (the one-phase morphology-aware BPE), and the default design (merges inside
   morphemes + roots + whole words) at each --shares pair;
3. `fidan tokenizer eval` of all of them and Qwen on the held-out text (tokens per word, %Pure, %TR,
   boundary F1 against the analyzer, encode MB/s on one thread), plus a lossless round trip of every
   test document.

It prints one table per held-out source and the targets, and draws the Pareto frontier (tokens per word
against boundary F1 and against %Pure, one panel each, a marker per source). The default's rule: the
lowest mean tokens per word among the settings whose %Pure and F1 beat every reference on every held-out
source.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from fidan.tokenizer.train import ROOTS, WHOLE_WORDS  # noqa: E402  (the default's shares)

SOURCES = ("tr-speeches", "tr-treebank", "tr-kenet", "tr-manpages", "tr-news")


def fidan(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "fidan.cli", *args], check=True, stdout=subprocess.DEVNULL)


def prepare(work: Path, held: str, max_test_bytes: int) -> tuple[Path, Path]:
    """The training data folder (every source but ``held``) and the test text (a .jsonl file)."""
    from fidan.artifacts.datadir import iter_split

    train, alone, test = work / f"without-{held}", work / f"only-{held}", work / f"test-{held}.jsonl"
    if not (train / "manifest.json").exists():
        fidan("data", "prepare", *[a for s in SOURCES if s != held for a in ("--source", s)],
              "--out", str(train), "--val-fraction", "0", "--force")
    if not test.exists():
        if not (alone / "manifest.json").exists():
            fidan("data", "prepare", "--source", held, "--out", str(alone), "--val-fraction", "0", "--force")
        docs = list(iter_split(alone, "train"))
        step = max(1, -(-sum(len(d.encode()) for d in docs) // max_test_bytes))
        test.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs[::step]),
                        encoding="utf-8")
    return train, test


def settings(shares: list[str]) -> dict[str, dict]:
    """plain, today's --morph headline, and the default design at each ROOTS/WORDS pair of shares."""
    out = {"plain": {"plain": True}, "morph-keep1000": {"morph": True, "min_frequency": 1, "morph_keep": 1000}}
    for pair in shares:
        roots, words = (float(x) for x in pair.split("/"))
        out[f"default-r{roots:g}-w{words:g}"] = {"roots": roots, "whole_words": words}
    return out


def round_trip(path: Path, test: Path) -> bool:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok, hf = Tokenizer.from_file(str(path / "tokenizer.json")), AutoTokenizer.from_pretrained(str(path))
    docs = [json.loads(line)["text"] for line in test.read_text(encoding="utf-8").splitlines()]
    return all(tok.decode(tok.encode(d).ids) == d and hf(d)["input_ids"] == tok.encode(d).ids for d in docs)


def encode_speed(paths: dict[str, Path], test: Path, repeats: int) -> dict[str, float]:
    """MB/s of each tokenizer on one thread, one call per document, timed in turn (A B C A B C ...) so
    that the load of a shared machine falls on all alike; the median of ``repeats``."""
    import statistics
    import time

    from tokenizers import Tokenizer

    docs = [json.loads(line)["text"] for line in test.read_text(encoding="utf-8").splitlines()]
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    toks = {name: Tokenizer.from_file(str(p / "tokenizer.json")) for name, p in paths.items()}
    times: dict[str, list[float]] = {name: [] for name in toks}
    for _ in range(repeats + 1):  # the first round warms up
        for name, tok in toks.items():
            start = time.perf_counter()
            for d in docs:
                tok.encode(d, add_special_tokens=False)
            times[name].append(time.perf_counter() - start)
    return {name: mb / statistics.median(t[1:]) for name, t in times.items()}


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (lower first value, higher second)."""
    return [i for i, (x, y) in enumerate(points)
            if not any(x2 <= x and y2 >= y and (x2, y2) != (x, y) for x2, y2 in points)]


def plot(rows: list[dict], out: Path, default: str | None = None) -> None:
    """Both panels; Qwen in black, ``default`` larger, ringed in black and named in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 5.4))
    markers = {h: m for h, m in zip(sorted({r["held"] for r in rows}), "osD^v", strict=False)}
    names = [n for n in dict.fromkeys(r["name"] for r in rows) if n != "qwen"]
    tab = plt.get_cmap("tab20")
    colors = {n: tab(2 * i % 20 + (2 * i >= 20)) for i, n in enumerate(names)} | {"qwen": "k"}
    labels = {n: f"{n} (the default)" if n == default else n for n in [*names, "qwen"]}
    for ax, key, label in ((axes[0], "f1", "boundary F1 (analyzer)"), (axes[1], "pure", "%Pure")):
        for held, marker in markers.items():
            pts = [r for r in rows if r["held"] == held]
            xy = [(r["fertility"], r[key]) for r in pts]
            front = sorted((xy[i] for i in pareto(xy)), key=lambda p: p[0])
            ax.plot(*zip(*front, strict=True), color="0.6", lw=1, zorder=1)
            for r in pts:
                big = r["name"] == default
                ax.scatter(r["fertility"], r[key], marker=marker, s=110 if big else 46, zorder=3 if big else 2,
                           color=colors[r["name"]], edgecolors="k" if big else "none", linewidths=1.5)
        for n, text in labels.items():
            ax.scatter([], [], color=colors[n], label=text)
        for held, marker in markers.items():
            ax.scatter([], [], marker=marker, color="0.5", label=f"held out: {held}")
        ax.axvline(1.75, color="r", ls=":", lw=1)
        ax.set_xlabel("tokens per word (lower is better)")
        ax.set_ylabel(f"{label} (higher is better)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Out-of-domain tokenizer frontier (grey line: each held-out source's Pareto frontier)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="folder for data, tokenizers and results")
    ap.add_argument("--held-out", nargs="+", default=["tr-kenet", "tr-manpages", "tr-news"])
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--shares", nargs="+", default=["0.3125/0", "0.25/0", "0.1875/0", "0.25/0.03125", "0.1875/0.03125",
                                                    "0.125/0.0625", "0.125/0.125", "0.0625/0.1875"],
                    help="the default design's settings, ROOTS/WORDS shares of the vocabulary")
    ap.add_argument("--max-test-bytes", type=int, default=500_000)
    ap.add_argument("--repeats", type=int, default=5, help="encode timings per tokenizer, in turn (median)")
    ap.add_argument("--plot", default=None, help="PNG of the frontier (default: WORK/frontier.png)")
    ap.add_argument("--speed-only", nargs="*", metavar="NAME",
                    help="only time these tokenizers of an earlier run (default: plain, morph-keep1000 and the "
                         "default's settings) on each held-out text, --repeats rounds in turn")
    args = ap.parse_args()
    if args.speed_only is not None:
        names = args.speed_only or ["plain", "morph-keep1000", f"default-r{ROOTS:g}-w{WHOLE_WORDS:g}"]
        print(f"load {os.getloadavg()[0]:.2f}")
        for held in args.held_out:
            speed = encode_speed({n: Path(args.work) / held / n for n in names},
                                 Path(args.work) / f"test-{held}.jsonl", args.repeats)
            print(held, ", ".join(f"{n} {v:.2f} MB/s" for n, v in speed.items()))
        print(f"load {os.getloadavg()[0]:.2f}")
        return

    from fidan.tokenizer.evaluate import evaluate_tokenizers
    from fidan.tokenizer.train import train_tokenizer

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load {load[0]:.2f}")
    rows: list[dict] = []
    for held in args.held_out:
        train, test = prepare(work, held, args.max_test_bytes)
        paths = {}
        for name, kw in settings(args.shares).items():
            paths[name] = work / held / name
            if not (paths[name] / "tokenizer.json").exists():
                train_tokenizer(data=str(train), out=str(paths[name]), vocab_size=args.vocab_size, force=True, **kw)
        results = evaluate_tokenizers([*map(str, paths.values()), "qwen"], str(test), morph=True, treebank=False,
                                      repeats=3)
        speed = encode_speed(paths, test, args.repeats)
        for r in results:
            name = Path(r["name"]).name if r["name"] != "qwen" else "qwen"
            r["encode_mb_s"] = speed.get(name, r["encode_mb_s"])  # Qwen's: tiktoken, from the evaluation
            rows.append({"held": held, "name": name, "fertility": r["fertility"], "pure": 100 * r["pure"],
                         "tr": 100 * r["tr"], "f1": r["boundaries_morph"]["f1"], "mb_s": r["encode_mb_s"],
                         "lossless": round_trip(paths[name], test) if name in paths else None})
    (work / "frontier.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(table(rows))
    print(verdict(rows))
    plot(rows, Path(args.plot) if args.plot else work / "frontier.png", default=choose(rows))


def table(rows: list[dict]) -> str:
    lines = ["| held out | tokenizer | tokens/word | %Pure | %TR | F1 morph | MB/s | lossless, same ids in HF |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = {True: "yes", False: "NO", None: "n/a"}[r["lossless"]]
        lines.append(f"| {r['held']} | {r['name']} | {r['fertility']:.3f} | {r['pure']:.1f} | {r['tr']:.1f} "
                     f"| {r['f1']:.3f} | {r['mb_s']:.2f} | {ok} |")
    return "\n".join(lines)


REFERENCES = ("plain", "morph-keep1000", "qwen")


def rule(rows: list[dict]) -> tuple[str, list[str], dict[str, float], list[str]]:
    """(the default, the settings that qualify, each setting's mean tokens/word, those that would qualify
    under the weaker rule)."""
    helds = sorted({r["held"] for r in rows})
    by = {(r["held"], r["name"]): r for r in rows}
    candidates = sorted({r["name"] for r in rows if r["name"].startswith("default-")})

    def beats_all(name: str) -> bool:
        return all(by[h, name][k] > by[h, ref][k] for h in helds for ref in REFERENCES for k in ("pure", "f1"))

    def beats_plain_and_qwen(name: str) -> bool:
        return all(by[h, name]["pure"] >= 1.5 * by[h, "qwen"]["pure"]
                   and by[h, name]["f1"] > max(by[h, "plain"]["f1"], by[h, "qwen"]["f1"]) for h in helds)

    ok = [n for n in candidates if beats_all(n)]
    mean = {n: sum(by[h, n]["fertility"] for h in helds) / len(helds) for n in candidates}
    best = min(ok, key=mean.get) if ok else max(candidates, key=lambda n: min(by[h, n]["f1"] for h in helds))
    return best, ok, mean, [n for n in candidates if beats_plain_and_qwen(n)]


def choose(rows: list[dict]) -> str:
    return rule(rows)[0]


def verdict(rows: list[dict]) -> str:
    """The default by the rule, and the targets for it on every held-out source."""
    helds = sorted({r["held"] for r in rows})
    by = {(r["held"], r["name"]): r for r in rows}
    best, ok, mean, weaker = rule(rows)
    candidates = sorted(mean)
    refs = REFERENCES
    out = [f"\nrule: lowest mean tokens/word among the default's settings whose %Pure and F1 beat "
           f"{', '.join(refs)} on every held-out source -> {best}"
           + ("" if ok else " (none qualifies: the highest F1 shown)"),
           "mean tokens/word: " + ", ".join(f"{n} {mean[n]:.3f}{' (qualifies)' if n in ok else ''}"
                                            for n in candidates),
           "with %Pure >= 1.5x Qwen's and F1 above plain's and Qwen's only, the lowest would be "
           + (min(weaker, key=mean.get) if weaker else "none")]
    for h in helds:
        r, q = by[h, best], by[h, "qwen"]
        others = max(by[h, n]["f1"] for n in ("plain", "morph-keep1000", "qwen"))
        checks = [("tokens/word <= 1.75", f"{r['fertility']:.3f}", r["fertility"] <= 1.75),
                  ("%Pure >= 1.5x qwen", f"{r['pure']:.1f} = {r['pure'] / q['pure']:.2f}x", r["pure"] >= 1.5 * q["pure"]),
                  ("F1 above every other", f"{r['f1']:.3f} vs {others:.3f}", r["f1"] > others),
                  ("encode >= 2 MB/s", f"{r['mb_s']:.2f}", r["mb_s"] >= 2),
                  ("lossless", str(r["lossless"]), bool(r["lossless"]))]
        out.append(f"{h}: " + "; ".join(f"{'met' if m else 'MISSED'} {n}: {v}" for n, v, m in checks))
    return "\n".join(out)


if __name__ == "__main__":
    main()
