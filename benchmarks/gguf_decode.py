"""Decode speed: `fidan generate`'s engine against llama.cpp (llama-cpp-python) on the same exported weights.

    python benchmarks/gguf_decode.py                       # hizli and qwen3 presets, 2 threads each
    python benchmarks/gguf_decode.py --presets hizli --depth 12 --block-size 512

Needs llama-cpp-python (`pip install llama-cpp-python`, built from source: not in any fidan extra). A BPE
tokenizer is trained on the bundled Turkish speeches (fidan[tr-data]) so the GGUF carries a real vocabulary;
the weights are random (speed does not depend on them). Each model is exported with `fidan export gguf` at
f32, f16 and q8_0. A prompt of PROMPT tokens is continued by NEW greedy tokens at batch 1, with no stop
token on either side: fidan's engine (KV cache, fp32, what `fidan generate` runs) and llama.cpp's
`Llama.generate` (temperature 0), each with the same number of threads, run in turn A B A B after a warm-up:
new tokens / median seconds (prefill included on both sides), and the median over rounds of each round's
speed ratio to fidan (a busy machine slows both sides of a round alike). The greedy tokens of each
llama.cpp file are compared with fidan's (how many agree before the first difference).

Then the tokenizer: llama.cpp's own tokenization (the GGUF's ``llama-bpe`` pre-tokenizer) of every held-out
document of the speeches against fidan's: the share of documents with the same ids, the share of fidan's
tokens that llama.cpp's sequence keeps (difflib's matching blocks), and the token counts.

llama.cpp's extra weight layouts (AMX, repacking) stay off unless --extra-bufts: some virtual machines
report AMX without enabling it, and llama.cpp then dies of SIGILL on q8_0.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fidan.adapt.gguf import export_gguf
from fidan.artifacts.runs import copy_tokenizer, save_weights
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.corpus.prepare import prepare_data
from fidan.inference import Engine, Sampling
from fidan.model.gpt import GPT, config_from_preset
from fidan.runtime.environment import cpu_model
from fidan.tokenizer.train import train_tokenizer

GREEDY = Sampling(temperature=0.0)
TEXT = ("Türkiye Cumhuriyeti'nin kuruluşunun ardından Ankara'da toplanan meclis, yeni devletin temel "
        "kurumlarını birer birer oluşturdu.")


def quietly(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def open_llama(llama_cpp, path: Path, extra_bufts: bool, **options):
    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = extra_bufts
        return p

    llama_cpp.llama_cpp.llama_model_default_params = params
    try:
        return llama_cpp.Llama(model_path=str(path), verbose=False, **options)
    finally:
        llama_cpp.llama_cpp.llama_model_default_params = default


def tokenizer(root: Path, vocab: int) -> Path:
    quietly(prepare_data, source=["tr-speeches"], out=str(root / "data"))
    quietly(train_tokenizer, data=str(root / "data"), out=str(root / "tok"), vocab_size=vocab)
    return root / "tok"


def agreement(a: list[int], b: list[int]) -> int:
    """How many greedy tokens agree before the first difference."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def bench(llama_cpp, root: Path, tok_dir: Path, preset: str, args) -> list[dict]:
    tok = load_tokenizer(tok_dir)
    cfg = config_from_preset(preset, tok.vocab_size, depth=args.depth, block_size=args.block_size)
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():  # zero-init projections would make every block the identity
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.eval()
    run = root / f"run-{preset}"
    save_weights(model, run)
    copy_tokenizer(tok, run)
    prompt = (tok.encode(TEXT) * args.prompt_tokens)[: args.prompt_tokens]
    engine = Engine(model)

    def ours() -> list[int]:
        return engine.generate([prompt], args.new_tokens, GREEDY)[0].tokens

    contestants = {"fidan generate (fp32)": ours}
    for quant in ("f32", "f16", "q8_0"):
        out = root / f"{preset}-{quant}"
        quietly(export_gguf, model=str(run), out=str(out), quant=quant)
        llm = open_llama(llama_cpp, out / "model.gguf", args.extra_bufts, n_ctx=cfg.block_size,
                         n_batch=cfg.block_size, n_threads=args.threads, n_threads_batch=args.threads)

        def theirs(llm=llm) -> list[int]:
            got = []
            for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
                got.append(token)
                if len(got) == args.new_tokens:
                    return got
            return got

        contestants[f"llama.cpp {quant}"] = theirs
    times: dict[str, list[float]] = {name: [] for name in contestants}
    tokens = {name: fn() for name, fn in contestants.items()}  # warm-up, and the greedy tokens
    for _ in range(args.reps):
        for name, fn in contestants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = times["fidan generate (fp32)"]
    rows = []
    for name, ts in times.items():
        ratios = [b / t for b, t in zip(base, ts, strict=True)]  # same round: a busy machine slows both
        rows.append({"preset": preset, "params": model.num_params(), "who": name,
                     "tok_s": args.new_tokens / statistics.median(ts), "speedup": statistics.median(ratios),
                     "range": (min(ratios), max(ratios)),
                     "agree": agreement(tokens["fidan generate (fp32)"], tokens[name])})
    return rows


def tokenization(llama_cpp, gguf: Path, tok_dir: Path, data: Path, extra_bufts: bool) -> dict:
    tok = load_tokenizer(tok_dir)
    llm = open_llama(llama_cpp, gguf, extra_bufts, vocab_only=True)
    docs = [json.loads(line)["text"] for line in (data / "val-00000.jsonl").open(encoding="utf-8")]
    same = kept = ours_n = theirs_n = 0
    for doc in docs:
        ours, theirs = tok.encode(doc), llm.tokenize(doc.encode("utf-8"), add_bos=False, special=False)
        same += ours == theirs
        blocks = difflib.SequenceMatcher(None, ours, theirs, autojunk=False).get_matching_blocks()
        kept += sum(b.size for b in blocks)
        ours_n, theirs_n = ours_n + len(ours), theirs_n + len(theirs)
    return {"docs": len(docs), "same": same, "kept": kept / ours_n, "ours": ours_n, "theirs": theirs_n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["hizli", "qwen3"])
    parser.add_argument("--depth", type=int, default=None, help="rescale the presets (width 64 per layer)")
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=96)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and for llama.cpp")
    parser.add_argument("--extra-bufts", action="store_true", help="let llama.cpp use AMX/repacked weights")
    args = parser.parse_args()
    import llama_cpp

    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_model()}, {args.threads} threads; torch {torch.__version__}, "
          f"llama-cpp-python {llama_cpp.__version__}")
    print(f"{args.prompt_tokens}-token prompt + {args.new_tokens} greedy tokens, batch 1, vocab {args.vocab_size}, "
          f"median of {args.reps} rounds after a warm-up")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok_dir = tokenizer(root, args.vocab_size)
        print("| preset | parameters | decoder | new tokens/s | vs fidan (rounds' range) | greedy tokens equal to fidan's |")
        print("|---|---:|---|---:|---:|---:|")
        for preset in args.presets:
            for r in bench(llama_cpp, root, tok_dir, preset, args):
                print(f"| {r['preset']} | {r['params'] / 1e6:.2f}M | {r['who']} | {r['tok_s']:.0f} | "
                      f"{r['speedup']:.2f}x ({r['range'][0]:.2f}-{r['range'][1]:.2f}) | {r['agree']}/{args.new_tokens} |",
                      flush=True)
        t = tokenization(llama_cpp, root / f"{args.presets[0]}-f16" / "model.gguf", tok_dir, root / "data",
                         args.extra_bufts)
        print(f"\ntokenization of {t['docs']} held-out documents by llama.cpp (llama-bpe) against fidan: "
              f"{t['same']} identical, {t['kept']:.2%} of fidan's tokens kept, {t['theirs']:,} tokens against "
              f"{t['ours']:,} ({t['theirs'] / t['ours'] - 1:+.2%})")


if __name__ == "__main__":
    main()
