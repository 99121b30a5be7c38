"""`fidan sft`: instruction tuning with a flat loop, response-only loss, packing and exact resume.

- The chat markers (<SYS> <INST> <RESP> ...) are added to a copy of the model's tokenizer, and the
  model's embeddings grow by that many rows, each set to the mean of the existing rows.
- The loss covers only what the assistant says (its tokens and each closing </RESP>); prompt positions
  are -100. In a multi-turn chat every assistant turn is supervised and every user turn is not.
- Short examples are packed into full sequences; ``doc_ids`` give attention a block-diagonal causal
  mask and restart positions at 0 per example, so packed examples never see each other.
- Held-out evaluation reports the response-only loss and bits per byte; with ``patience`` the run
  stops when the held-out loss has not improved for that many evaluations and keeps the best weights.
- Exact resume, as in pretraining: the schedule is a function of the step, the epoch order is a
  function of the seed, and the data cursor and RNG states are checkpointed.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from fidan import __version__
from fidan.core.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, encode_chat
from fidan.core.checkpoint import (
    checkpoint_dirs,
    clear_run,
    is_run,
    load_checkpoint_state,
    load_model,
    load_weights,
    read_metrics,
    read_model_config,
    save_checkpoint,
    save_weights,
)
from fidan.core.conversations import has_split, in_val_split, load_conversations
from fidan.core.gpt import GPT, GPTConfig
from fidan.core.io import append_jsonl, atomic_write_text, sha256_file
from fidan.core.optim import lr_at, make_adamw, set_lr
from fidan.core.plots import plot_loss
from fidan.core.runtime import peak_rss_mb, pick_device
from fidan.core.tokenizer_io import TokenizerBundle, load_tokenizer
from fidan.core.vocab import add_special_tokens, grow_embeddings
from fidan.errors import FidanError

Example = tuple[list[int], list[int]]  # (input ids, target ids with -100 where not supervised)


@dataclass
class SFTSettings:
    max_steps: int
    batch_size: int
    grad_accum: int
    lr: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    eval_every: int
    eval_examples: int
    patience: int
    checkpoint_every: int
    keep_checkpoints: int
    pack: bool
    seed: int


# ---------------------------------------------------------------------------------------------------
# Data: conversations → (inputs, targets) examples → rows of packed examples → batches


def tokenize_conversations(tok: TokenizerBundle, conversations: list[list[dict]], block_size: int
                           ) -> tuple[list[Example], int, int]:
    """Next-token examples; returns (examples, truncated, dropped).

    An example longer than the block is cut to its first ``block_size`` positions; one left with no
    supervised target (the answer fell past the cut) is dropped.
    """
    examples, truncated, dropped = [], 0, 0
    for messages in conversations:
        ids, labels = encode_chat(tok, messages)
        x, y = ids[:-1], labels[1:]
        if len(x) > block_size:
            x, y = x[:block_size], y[:block_size]
            truncated += 1
        if all(t == -100 for t in y):
            dropped += 1
            continue
        examples.append((x, y))
    return examples, truncated, dropped


def pack_rows(lengths: list[int], order: list[int], block_size: int, pack: bool = True) -> list[list[int]]:
    """Group example indices into rows of at most ``block_size`` tokens, greedily in ``order``.

    Without packing every example gets a row of its own.
    """
    rows: list[list[int]] = []
    row: list[int] = []
    used = 0
    for i in order:
        if row and (not pack or used + lengths[i] > block_size):
            rows.append(row)
            row, used = [], 0
        row.append(i)
        used += lengths[i]
    if row:
        rows.append(row)
    return rows


def make_batch(examples: list[Example], rows: list[list[int]], pad_id: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets and document ids (B, T) for a list of rows; T is the longest row.

    Example j of a row has document id j; padding is one more document whose targets are all -100.
    """
    T = max(sum(len(examples[i][0]) for i in row) for row in rows)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -100, dtype=torch.long)
    doc = torch.full((len(rows), T), len(max(rows, key=len)), dtype=torch.long)
    for b, row in enumerate(rows):
        at = 0
        for j, i in enumerate(row):
            ids, targets = examples[i]
            x[b, at:at + len(ids)] = torch.tensor(ids)
            y[b, at:at + len(ids)] = torch.tensor(targets)
            doc[b, at:at + len(ids)] = j
            at += len(ids)
    return x, y, doc


class EpochBatches:
    """Rows in a seeded order per epoch, served batch by batch; (epoch, cursor) is the whole state."""

    def __init__(self, examples: list[Example], block_size: int, pack: bool, seed: int):
        self.examples, self.block_size, self.pack, self.seed = examples, block_size, pack, seed
        self.lengths = [len(x) for x, _ in examples]
        self.epoch, self.cursor = 0, 0
        self._rows_epoch, self._rows = -1, []

    def rows(self) -> list[list[int]]:
        if self._rows_epoch != self.epoch:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            order = torch.randperm(len(self.examples), generator=g).tolist()
            self._rows, self._rows_epoch = pack_rows(self.lengths, order, self.block_size, self.pack), self.epoch
        return self._rows

    def next(self, batch_size: int) -> list[list[int]]:
        out: list[list[int]] = []
        while len(out) < batch_size:
            rows = self.rows()
            take = rows[self.cursor:self.cursor + batch_size - len(out)]
            out += take
            self.cursor += len(take)
            if self.cursor >= len(rows):
                self.epoch, self.cursor = self.epoch + 1, 0
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


@torch.no_grad()
def evaluate_responses(model: torch.nn.Module, examples: list[Example], token_bytes: np.ndarray, block_size: int,
                       batch_size: int, pad_id: int, device: str = "cpu") -> dict:
    """Response-only held-out loss (nats per supervised token) and bits per byte.

    The loss averages over every supervised token, the closing </RESP> included; bits per byte count
    only tokens that are text (special tokens have no bytes), as in pretraining.
    """
    was_training = model.training
    model.eval()
    tb = torch.from_numpy(token_bytes.astype(np.int64))
    rows = pack_rows([len(x) for x, _ in examples], list(range(len(examples))), block_size)
    nats = text_nats = 0.0
    tokens = nbytes = 0
    for i in range(0, len(rows), batch_size):
        x, y, doc = make_batch(examples, rows[i:i + batch_size], pad_id)
        _, loss = model(x.to(device), y.to(device), reduction="none", doc_ids=doc.to(device))
        loss, y = loss.float().cpu().reshape(-1), y.reshape(-1)
        keep = y != -100
        nats += float(loss[keep].sum())
        tokens += int(keep.sum())
        b = tb[y.clamp(min=0)] * keep
        text_nats += float(loss[b > 0].sum())
        nbytes += int(b.sum())
    model.train(was_training)
    mean = nats / max(tokens, 1)
    return {"val_loss": mean, "val_bpb": text_nats / math.log(2) / max(nbytes, 1),
            "val_ppl": math.exp(min(mean, 50)), "val_tokens": tokens}


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop metrics logged after the checkpoint (they will be logged again)."""
    if path.exists():
        keep = [line for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_text(path, "".join(line + "\n" for line in keep))


def _with_dropout(model: GPT, dropout: float | None) -> GPT:
    if dropout is None or dropout == model.config.dropout:
        return model
    fresh = GPT(GPTConfig.from_dict({**model.config.to_dict(), "dropout": dropout}))
    fresh.load_state_dict(model.state_dict())
    return fresh


# ---------------------------------------------------------------------------------------------------


def sft(
    model: str,
    data: str,
    out: str,
    val_data: str | None = None,
    val_fraction: float = 0.05,
    max_steps: int = 500,
    until_step: int | None = None,
    max_minutes: float | None = None,
    batch_size: int = 8,
    grad_accum: int = 1,
    lr: float = 1e-4,
    min_lr_ratio: float = 0.1,
    warmup_steps: int = 20,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    dropout: float | None = None,
    pack: bool = True,
    eval_every: int = 50,
    eval_examples: int = 500,
    patience: int = 0,
    checkpoint_every: int = 100,
    keep_checkpoints: int = 2,
    seed: int = 1337,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    quiet: bool = False,
) -> dict:
    """Instruction-tune a model on chat or Alpaca-style data, with loss on the answers only.

    Args:
        model: a run folder made by `fidan pretrain` (or `fidan sft`), or one of its checkpoints.
        data: a .jsonl file (Alpaca instruction/input/output or chat messages), a folder with train.jsonl
            (and val.jsonl), or hf:NAME for a Hugging Face dataset.
        out: the new run folder (checkpoints, metrics.jsonl, plots/, model.safetensors, tokenizer/).
        val_data: held-out conversations (default: the folder's val.jsonl, else a hashed share of --data).
        val_fraction: share of --data held out when there is no separate validation data (0 disables).
        max_steps: length of the learning-rate schedule, in optimizer steps.
        until_step: stop and checkpoint at this step (continue later with --resume).
        max_minutes: stop and checkpoint after this many minutes of training.
        batch_size: rows (packed sequences) per micro-batch.
        grad_accum: micro-batches per optimizer step.
        lr: peak learning rate (lower than pretraining: the model already knows the language).
        min_lr_ratio: the cosine schedule ends at lr * min_lr_ratio.
        warmup_steps: linear warmup steps.
        weight_decay: AdamW weight decay on matrices and embeddings.
        grad_clip: clip the global gradient norm to this (0 disables).
        dropout: dropout rate while tuning (default: the model's).
        pack: pack several short examples into each sequence (attention never crosses examples).
        eval_every: evaluate the held-out response loss every N steps.
        eval_examples: held-out conversations used per evaluation, at most.
        patience: stop after this many evaluations without a better held-out loss and keep the best
            weights (0 disables early stopping).
        checkpoint_every: write a checkpoint every N steps.
        keep_checkpoints: keep the newest K checkpoints.
        seed: seed for the data order and dropout.
        device: auto, cpu or cuda.
        resume: continue exactly from the newest checkpoint in --out.
        force: replace an existing run folder.
        quiet: no progress bar.
    """
    for name, value in (("max_steps", max_steps), ("batch_size", batch_size), ("grad_accum", grad_accum),
                        ("eval_every", eval_every), ("checkpoint_every", checkpoint_every),
                        ("eval_examples", eval_examples)):
        if value <= 0:
            raise FidanError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if lr <= 0:
        raise FidanError(f"--lr must be positive, got {lr}")
    if not 0 <= val_fraction < 1:
        raise FidanError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    device = pick_device(device)
    run = Path(out)
    settings = SFTSettings(max_steps, batch_size, grad_accum, lr, min_lr_ratio, warmup_steps, weight_decay,
                           grad_clip, eval_every, eval_examples, patience, checkpoint_every, keep_checkpoints,
                           pack, seed)

    # The model: a fresh start grows a pretrained model for the chat tokens; a resume reads the checkpoint.
    ckpt = None
    if resume:
        ckpts = checkpoint_dirs(run)
        if not ckpts:
            raise FidanError(f"--resume: no checkpoint in {run}/checkpoints; start without --resume")
        ckpt = ckpts[-1]
        tok = load_tokenizer(run / "tokenizer")
        net = GPT(read_model_config(ckpt))
        load_weights(net, ckpt)
    else:
        if is_run(run) and not force:
            raise FidanError(f"run folder {run} already exists; pass --resume to continue it, --force to replace it, "
                             "or choose another --out")
        net, base_tok = load_model(model, device="cpu")
        clear_run(run)
        run.mkdir(parents=True, exist_ok=True)
        tok = add_special_tokens(base_tok.path, run / "tokenizer", CHAT_TOKENS, CHAT_TEMPLATE)
        added = tok.vocab_size - net.config.vocab_size
        grow_embeddings(net, tok.vocab_size)
        net = _with_dropout(net, dropout)
        if not quiet and added:
            print(f"tokenizer: added {added} chat tokens ({' '.join(CHAT_TOKENS)}); embeddings grown to "
                  f"{tok.vocab_size} rows, new rows = mean of the old")
    cfg = net.config
    net.to(device)

    # The data.
    train_convs = load_conversations(data, "train")
    if val_data is not None:
        val_convs = load_conversations(val_data, "val")
    elif has_split(data, "val"):
        val_convs = load_conversations(data, "val")
    elif val_fraction > 0:
        val_convs = [c for c in train_convs if in_val_split(c, val_fraction)]
        train_convs = [c for c in train_convs if not in_val_split(c, val_fraction)]
    else:
        val_convs = []
    if not train_convs:
        raise FidanError(f"no training conversations left in {data} after holding out --val-fraction {val_fraction}")
    train_ex, truncated, dropped = tokenize_conversations(tok, train_convs, cfg.block_size)
    val_ex, _, _ = tokenize_conversations(tok, val_convs[:eval_examples], cfg.block_size)
    if not train_ex:
        raise FidanError(f"every conversation in {data} is longer than the block size {cfg.block_size} before its "
                         "answer; shorten the prompts")
    if not quiet:
        sup = sum(sum(t != -100 for t in y) for _, y in train_ex)
        note = f" ({truncated} cut to the block size, {dropped} dropped)" if truncated or dropped else ""
        print(f"data: {len(train_ex):,} train conversations, {sup:,} supervised tokens{note}; "
              f"{len(val_ex):,} held out")
        if not val_ex:
            print("note: no held-out conversations; evaluation and early stopping are off")
    token_bytes = tok.token_bytes()
    pad_id = tok.eos_id

    # Optimizer, data order and RNG: everything that an exact resume restores.
    optimizer = make_adamw(net, lr, weight_decay, (0.9, 0.95))
    batches = EpochBatches(train_ex, cfg.block_size, pack, seed)
    torch.manual_seed(seed)
    step = 0
    best = {"loss": float("inf"), "step": -1, "bad_evals": 0}
    if ckpt is not None:
        state = load_checkpoint_state(ckpt)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if device.startswith("cuda") and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        batches.load_state(state["data"])
        best = state["best"]
        step = state["step"]
        _truncate_metrics(run / "metrics.jsonl", step)

    resolved = {
        "fidan_version": __version__,
        "stage": "sft",
        "base_model": str(Path(model).resolve()),
        "data": str(data) if str(data).startswith("hf:") else str(Path(data).resolve()),
        "data_sha256": sha256_file(data) if Path(data).is_file() else None,
        "val_data": val_data,
        "tokenizer_sha256": tok.sha256,
        "model": cfg.to_dict(),
        "parameters": net.num_params(),
        "train": asdict(settings),
        "train_conversations": len(train_ex),
        "val_conversations": len(val_ex),
        "device": device,
        "torch": str(torch.__version__),
    }
    atomic_write_text(run / "config.yaml", yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    metrics_path = run / "metrics.jsonl"
    best_dir = run / "checkpoints" / "best"
    train_start = time.time()

    def log(record: dict) -> None:
        append_jsonl(metrics_path, {**record, "elapsed_s": round(time.time() - train_start, 3)})

    def evaluate() -> dict:
        return evaluate_responses(net, val_ex, token_bytes, cfg.block_size, batch_size, pad_id, device)

    def state_dict() -> dict:
        return {"step": step, "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state() if device.startswith("cuda") else None,
                "data": batches.state(), "best": best, "settings": asdict(settings)}

    before = None
    if ckpt is None and val_ex:
        before = evaluate()
        log({"kind": "eval", "step": 0, **before})
        best = {"loss": before["val_loss"], "step": 0, "bad_evals": 0}
        if patience > 0:  # tuning might only make things worse: the starting weights are a candidate too
            save_weights(net, best_dir, {"fidan_step": 0, "fidan_stage": "sft"})
        if not quiet:
            print(f"before tuning: held-out response loss {before['val_loss']:.3f}, {before['val_bpb']:.3f} bits/byte")

    stop_at = min(until_step or max_steps, max_steps)
    deadline = time.time() + max_minutes * 60 if max_minutes else None
    last_eval: dict = {}
    last_eval_step = -1
    stopped = ""
    net.train()
    bar = tqdm(total=stop_at, initial=step, desc="sft", unit="step", disable=quiet, dynamic_ncols=True)
    while step < stop_at:
        t0 = time.time()
        set_lr(optimizer, lr_at(step, max_steps, lr, warmup_steps, min_lr_ratio))
        loss_sum, n_tokens = 0.0, 0
        for _ in range(grad_accum):
            x, y, doc = make_batch(train_ex, batches.next(batch_size), pad_id)
            _, loss = net(x.to(device), y.to(device), doc_ids=doc.to(device))
            (loss / grad_accum).backward()
            loss_sum += loss.item()
            n_tokens += x.numel()
        grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip if grad_clip > 0 else float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        record = {"kind": "train", "step": step, "loss": loss_sum / grad_accum, "lr": optimizer.param_groups[0]["lr"],
                  "grad_norm": float(grad_norm), "tokens_per_s": n_tokens / (time.time() - t0),
                  "epoch": batches.epoch}
        log(record)
        bar.update()
        bar.set_postfix(loss=f"{record['loss']:.3f}", epoch=batches.epoch, refresh=False)
        out_of_time = deadline is not None and time.time() >= deadline
        # Evaluations that steer early stopping happen on a fixed grid of steps, so a resumed run makes
        # the same decisions as one that never stopped.
        if val_ex and (step % eval_every == 0 or step == max_steps):
            last_eval, last_eval_step = evaluate(), step
            log({"kind": "eval", "step": step, **last_eval})
            if last_eval["val_loss"] < best["loss"]:
                best = {"loss": last_eval["val_loss"], "step": step, "bad_evals": 0}
                if patience > 0:
                    save_weights(net, best_dir, {"fidan_step": step, "fidan_stage": "sft"})
            else:
                best["bad_evals"] += 1
            if not quiet:
                bar.write(f"step {step}: held-out response loss {last_eval['val_loss']:.3f}, "
                          f"{last_eval['val_bpb']:.3f} bits/byte")
            if patience > 0 and best["bad_evals"] >= patience:
                stopped = f"early stop: no better held-out loss in {patience} evaluations"
        if step % checkpoint_every == 0 or step == stop_at or out_of_time or stopped:
            save_checkpoint(run, step, net, state_dict(), keep_checkpoints)
        if stopped:
            break
        if out_of_time and step < stop_at:
            stopped = "time limit"
            break
    bar.close()

    if val_ex and last_eval_step != step:  # ended between evaluations: measure where it stopped
        last_eval = evaluate()
        log({"kind": "eval", "step": step, **last_eval})
        if last_eval["val_loss"] < best["loss"]:  # (the checkpoint above already holds the resumable state)
            best = {"loss": last_eval["val_loss"], "step": step, "bad_evals": 0}
    if patience > 0 and 0 <= best["step"] != step and (best_dir / "model.safetensors").exists():
        load_weights(net, best_dir, device)  # keep the weights that did best on held-out data
        last_eval = evaluate()
        if not quiet:
            print(f"kept the best weights, from step {best['step']}")
    final = last_eval
    save_weights(net, run, {"fidan_step": step, "fidan_stage": "sft", "fidan_best_step": best["step"]})
    plot_loss(read_metrics(run), run / "plots" / "loss.png", title=f"sft · {net.num_params():,} parameters")
    if before is None:
        before = next((r for r in read_metrics(run) if r.get("kind") == "eval" and r["step"] == 0), None)
    summary = {"step": step, "max_steps": max_steps, "stopped": stopped or None,
               "val_loss": final.get("val_loss"), "val_bpb": final.get("val_bpb"),
               "val_loss_before": before and before["val_loss"], "val_bpb_before": before and before["val_bpb"],
               "best_step": best["step"], "train_conversations": len(train_ex), "val_conversations": len(val_ex),
               "train_seconds": round(time.time() - train_start, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
               "run": str(run)}
    if not quiet:
        why = f" ({stopped})" if stopped else ""
        after = f", held-out response loss {final['val_loss']:.3f}" if final else ""
        print(f"done: step {step}/{max_steps}{why}{after} → {run}")
    return summary


def estimate_sft_step_seconds(cfg: GPTConfig, batch_size: int, device: str = "cpu", steps: int = 3) -> float:
    """Time a few packed training steps (document-masked attention) of a throwaway model."""
    model = GPT(cfg).to(device)
    opt = make_adamw(model, 1e-4, 0.0, (0.9, 0.95))
    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size), device=device)
    doc = (torch.arange(cfg.block_size, device=device) // 24).expand(batch_size, -1)
    times = []
    for i in range(steps + 1):
        t0 = time.time()
        _, loss = model(x, x, doc_ids=doc)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators and kernels
            times.append(time.time() - t0)
    return sorted(times)[len(times) // 2]
