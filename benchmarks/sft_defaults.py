"""Tuning defaults: held-out questions answered exactly, with `fidan sft`'s defaults against the old ones.

    python benchmarks/sft_defaults.py                 # builds what it needs under runs/bench-sft-defaults

A `ders` base is pretrained on the bundled corpus (300 steps), then tuned twice for 300 steps on the same
500 question-answer pairs about the speeches (year, place and kind of a speech, from its metadata):

- old defaults: `--lr 1e-4` and the base's dropout (0.1), as `fidan sft` had them;
- current defaults: nothing given, so the rate and dropout follow the base (twice its pretraining rate,
  dropout 0).

Each tuned model answers 100 held-out questions greedily through the chat session; an answer counts when
it equals the reference exactly. The figure is the count, per question kind too.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path


def kind_of(question: str) -> str:
    for ending, kind in (("hangi yıla aittir?", "year"), ("nerede yapılmıştır?", "place"),
                         ("ne tür bir metindir?", "kind")):
        if question.endswith(ending):
            return kind
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench-sft-defaults"))
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--tune-steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--questions", type=int, default=100)
    args = parser.parse_args()

    from fidan.artifacts.conversations import read_conversations
    from fidan.artifacts.loader import load_model
    from fidan.bench.bundled import bundled_data
    from fidan.conversation.repl import ChatSession
    from fidan.corpus.instructions import build_instructions
    from fidan.training.pretrain import pretrain
    from fidan.training.sft import sft

    work = args.work
    data, tok = bundled_data(work)
    base, inst = work / "base", work / "qa"
    if not (base / "model.safetensors").exists():
        pretrain(data=str(data), tokenizer=str(tok), out=str(base), preset="ders", max_steps=args.pretrain_steps,
                 eval_every=args.pretrain_steps, force=True, quiet=True)
    if not inst.exists():
        build_instructions(out=str(inst / "all"), source=["speeches"], val_fraction=0.2)
        train = read_conversations(inst / "all" / "train.jsonl")[:args.pairs]
        val = read_conversations(inst / "all" / "val.jsonl")[:args.questions]
        for name, convs in (("train", train), ("val", val)):
            (inst / f"{name}.jsonl").write_text(
                "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in convs), encoding="utf-8")
    val = read_conversations(inst / "val.jsonl")
    common = dict(model=str(base), data=str(inst), max_steps=args.tune_steps, force=True, quiet=True, device="cpu")
    runs = {"old defaults (lr 1e-4, base dropout 0.1)": dict(lr=1e-4, dropout=0.1),
            "current defaults (nothing given)": {}}
    print(f"{len(read_conversations(inst / 'train.jsonl'))} training pairs, {len(val)} held-out questions, "
          f"base: ders, {args.pretrain_steps} steps; tuning: {args.tune_steps} steps")
    print("| tuning | lr | dropout | exact answers | by kind | held-out answer loss | seconds |")
    print("|---|---|---|---|---|---|---|")
    for i, (name, extra) in enumerate(runs.items()):
        out = work / f"tuned-{i}"
        t0 = time.time()
        summary = sft(out=str(out), **common, **extra)
        net, chat_tok = load_model(out)
        right: collections.Counter = collections.Counter()
        total: collections.Counter = collections.Counter()
        for conv in val:
            question, reference = conv[0]["content"], conv[1]["content"]
            answer = ChatSession(net, chat_tok, temperature=0.0, max_new_tokens=32).reply(question)
            total[kind_of(question)] += 1
            right[kind_of(question)] += answer.strip() == reference.strip()
        import yaml

        cfg = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
        kinds = ", ".join(f"{k} {right[k]}/{total[k]}" for k in sorted(total))
        print(f"| {name} | {cfg['train']['lr']:g} | {cfg['model']['dropout']:g} | {sum(right.values())}/{len(val)} | "
              f"{kinds} | {summary['val_loss']:.3f} | {time.time() - t0:.0f} |", flush=True)


if __name__ == "__main__":
    main()
