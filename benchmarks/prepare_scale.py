"""`fidan data prepare` on a generated corpus of about 1 GB: one worker against two, peak memory, and a run
killed halfway then resumed.

    python benchmarks/prepare_scale.py --size-mb 1024 --workers 2

The corpus is written once (under --dir, reused when present): .jsonl files of web-like documents made
from the bundled Turkish text with perturbations: paragraphs of the speeches drawn at random with about
3% of their words replaced or dropped, and, in the shares a crawl has them, a cookie banner and a menu
line repeated in many documents, reference lists, English and German paragraphs, exact copies and
near-copies. Each file is larger than a unit (64 MB), so files are read in byte ranges.

Then, side by side, with the default settings (quality filters on, language filter included):
1. `fidan data prepare --workers 1`,
2. `fidan data prepare --workers N`,
3. the same command as 2, killed with SIGKILL once half of the filter pass's units are done, then run
   again: it resumes, and its manifest (less the "run" record) and shards must equal run 2's.
Each run is a subprocess; its peak memory is polled from the process tree every 0.2 s (the largest
single process, and the sum over the tree at its highest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from fidan.text.bundled import speeches

BANNER = "Bu sitede çerezler kullanılmaktadır. Siteyi kullanmaya devam ederek çerez politikamızı kabul etmiş olursunuz."
MENU = "Ana Sayfa | Gündem | Ekonomi | Spor | Kültür Sanat | Yazarlar | İletişim | Künye | Reklam"
ENGLISH = ("The city council approved the new budget on Monday after a long debate about public transport, "
           "schools and the renovation of the old harbour, which has been closed to visitors for two years.")
GERMAN = ("Der Stadtrat hat am Montag nach einer langen Debatte über den öffentlichen Verkehr und die Schulen "
          "den neuen Haushalt beschlossen, der im kommenden Jahr in Kraft treten soll.")


def generate(folder: Path, size_mb: int, file_mb: int, seed: int = 0) -> None:
    """Write about ``size_mb`` MB of .jsonl documents in files of ``file_mb`` MB."""
    paras = [p.strip() for d in speeches() for p in d["text"].split("\n\n") if len(p.strip()) > 80]
    vocab = [w for p in paras[:2000] for w in p.split()]
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recent: list[str] = []
    target, written, index = size_mb * 2**20, 0, 0
    while written < target:
        path = folder / f"part-{index:03d}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            size = 0
            while size < file_mb * 2**20 and written + size < target:
                doc = _document(rng, paras, vocab, recent)
                recent = (recent + [doc])[-200:]
                line = json.dumps({"text": doc, "url": f"https://ornek.com.tr/{rng.randrange(10**9)}"},
                                  ensure_ascii=False) + "\n"
                f.write(line)
                size += len(line.encode("utf-8"))
        written += size
        index += 1


def _document(rng: random.Random, paras: list[str], vocab: list[str], recent: list[str]) -> str:
    r = rng.random()
    if r < 0.02 and recent:  # an exact copy of a recent document
        return rng.choice(recent)
    if r < 0.04 and recent:  # a near-copy
        words = rng.choice(recent).split()
        return " ".join(rng.choice(vocab) if rng.random() < 0.1 else w for w in words)
    if r < 0.06:  # another language
        return "\n".join([ENGLISH if r < 0.05 else GERMAN] * rng.randint(1, 4))
    body = []
    for p in rng.sample(paras, rng.randint(2, 8)):
        words = [w for w in p.split() if rng.random() > 0.015]
        body.append(" ".join(rng.choice(vocab) if rng.random() < 0.015 else w for w in words))
    if rng.random() < 0.1:  # a reference list
        body.append(", ".join(f"(C-{rng.choice(['I', 'II', 'III'])}){rng.randint(1, 400)}" for _ in range(40)))
    if rng.random() < 0.3:
        body.insert(0, MENU)
    if rng.random() < 0.3:
        body.append(BANNER)
    return "\n\n".join(body)


def run(cmd: list[str], kill_when=None) -> dict:
    """Run ``cmd``; its wall time, peak memory and exit status (killed with SIGKILL when ``kill_when()``)."""
    start = time.time()
    log = tempfile.TemporaryFile()  # not a pipe: the progress bar would fill it and block the run
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    top = psutil.Process(proc.pid)
    peak_one = peak_sum = 0
    killed = False
    while proc.poll() is None:
        try:
            procs = [top, *top.children(recursive=True)]
            rss = [p.memory_info().rss for p in procs]
            peak_one, peak_sum = max(peak_one, max(rss)), max(peak_sum, sum(rss))
        except psutil.Error:
            pass
        if kill_when is not None and not killed and kill_when():
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    log.seek(0)
    out = log.read().decode("utf-8", "replace").replace("\r", "\n")
    return {"seconds": time.time() - start, "rc": proc.returncode, "peak_rss_mb": peak_one / 2**20,
            "peak_tree_rss_mb": peak_sum / 2**20, "killed": killed, "tail": out[-600:]}


def digest(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    shards = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.jsonl"))}
    return {"manifest": {k: v for k, v in manifest.items() if k != "run"}, "shards": shards,
            "run": manifest["run"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--file-mb", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/fidan-prepare-scale")
    ap.add_argument("--skip", default="", help="comma-separated runs to leave out: one,many,kill")
    args = ap.parse_args()
    root = Path(args.dir)
    corpus = root / f"corpus-{args.size_mb}mb"
    if not corpus.exists():
        t = time.time()
        generate(corpus.with_suffix(".tmp"), args.size_mb, args.file_mb)
        corpus.with_suffix(".tmp").rename(corpus)
        print(f"generated {corpus} in {time.time() - t:.0f} s")
    size = sum(p.stat().st_size for p in corpus.iterdir())
    print(f"corpus: {size / 2**20:,.0f} MB in {len(list(corpus.iterdir()))} files; cpus: {os.cpu_count()}")
    base = [sys.executable, "-m", "fidan", "data", "prepare", "--source", str(corpus), "--force"]
    skip = set(filter(None, args.skip.split(",")))
    results = {}
    for name, workers in (("one", 1), ("many", args.workers)):
        if name in skip:
            continue
        out = root / f"data-{name}"
        r = run([*base, "--out", str(out), "--workers", str(workers)])
        r["mb_per_s"] = size / 2**20 / r["seconds"]
        results[name] = r
        print(f"workers {workers}: {r['seconds']:.0f} s, {r['mb_per_s']:.2f} MB/s, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(one process), {r['peak_tree_rss_mb']:.0f} MB (all), exit {r['rc']}\n{r['tail']}", flush=True)
    if "one" in results and "many" in results:
        print(f"speed-up with {args.workers} workers: {results['one']['seconds'] / results['many']['seconds']:.2f}x")
    if "kill" not in skip:
        out = root / "data-kill"
        work = root / f".{out.name}.work"
        shutil.rmtree(work, ignore_errors=True)
        many = [*base, "--out", str(out), "--workers", str(args.workers)]
        done_many = root / "data-many" / "manifest.json"
        units = json.loads(done_many.read_text())["run"]["units"] if done_many.exists() else 16

        def half_filtered() -> bool:
            done = [p for p in (work / "filter").glob("*") if not p.name.endswith(".tmp")] if work.exists() else []
            return len(done) >= units // 2

        killed = run(many, kill_when=half_filtered)
        print(f"killed run: {killed['seconds']:.0f} s, killed={killed['killed']}, exit {killed['rc']}; "
              f"work folder kept: {work.exists()}")
        resumed = run(many)
        print(f"resumed run: {resumed['seconds']:.0f} s, exit {resumed['rc']}, peak RSS {resumed['peak_rss_mb']:.0f} MB"
              f"\n{resumed['tail']}")
        if (root / "data-many").exists():
            a, b = digest(root / "data-many"), digest(out)
            same = a["manifest"] == b["manifest"] and a["shards"] == b["shards"]
            print(f"resumed == uninterrupted (manifest less 'run', shard sha256): {same}; "
                  f"units resumed: {b['run']['units_resumed']}")


if __name__ == "__main__":
    main()
