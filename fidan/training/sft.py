"""`fidan sft`: instruction tuning with answer-only loss and packing, as a task of the one training loop.

- The chat markers (<SYS> <INST> <RESP> ...) are added to a copy of the model's tokenizer, and the
  model's embeddings grow by that many rows, each set to the mean of the existing rows.
- The loss of a step is the mean over every supervised token of the global batch, however the batch is
  split into micro-batches and processes, so `torchrun` tuning equals one process.
- Held-out evaluation reports the answer-only loss and bits per byte (fidan.model.scoring' sums); with
  ``patience`` the run stops when the held-out loss has not improved for that many evaluations and
  keeps the best weights.
- Defaults follow the base model (see :func:`tuning_defaults`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from fidan import __version__
from fidan.artifacts.conversations import has_split, in_val_split, load_conversations
from fidan.artifacts.loader import locate
from fidan.artifacts.run_config import RUN_CONFIG, RunConfig
from fidan.artifacts.runs import load_weights, run_record
from fidan.artifacts.tokenizer import add_special_tokens, load_tokenizer
from fidan.errors import BadInput, FidanError
from fidan.model.context import grow_context
from fidan.model.gpt import GPT, GPTConfig
from fidan.model.lora import check_targets
from fidan.model.new_rows import grow_embeddings
from fidan.model.scoring import BitsPerByte, model_nll
from fidan.runtime import distributed as dist_util
from fidan.runtime.device import pick_device
from fidan.runtime.io import sha256_file
from fidan.runtime.perf import autocast
from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, ChatFormat, template_source
from fidan.training.args import CheckpointArgs, EvalArgs, LoadArgs, LogArgs, LoraArgs, RunArgs, TrainArgs
from fidan.training.estimate import estimate_step_seconds
from fidan.training.loop import fit
from fidan.training.run_folder import open_run, start_fresh
from fidan.training.settings import record, stage_settings
from fidan.training.sft_data import (
    EpochBatches,
    Example,
    TuneArgs,
    make_batch,
    pack_rows,
    tokenize_conversations,
)
from fidan.training.starting_point import (
    adapt_with_lora,
    base_record,
    base_source,
    copy_hf_tokenizer,
    load_start,
    lora_request,
    master_weights_fp32,
    merged_for_saving,
    resume_adapted,
    stored_dtype,
    train_precision,
    trained_weights,
)

__all__ = ["sft", "SFTTask", "tuning_defaults", "evaluate_responses", "estimate_sft_step_seconds",
           "make_batch", "pack_rows", "tokenize_conversations"]

# Tuning rate = this x the base's pretraining AdamW rate: a small model tuned on a few hundred answers
# learns them at a rate near its pretraining rate, not 10x below it (docs/sft-chat.md has the figures).
TUNE_LR_SCALE = 2.0
FALLBACK_LR = 1e-4  # bases without a readable config.yaml
# LoRA adapters start at zero and hold few weights, so they train faster (RESULTS.md, "LoRA rates"): 10x the
# fallback over a base of unknown rate, 2.5x the tuning rate over a fidan base (ders: 2e-2 = 10x was too high).
LORA_LR_SCALE = 10.0
LORA_LR_SCALE_RECORDED = 2.5


def tuning_defaults(model: str | Path) -> dict:
    """Learning rate, optimizer and dropout for tuning a base, read from the base run's config.yaml.

    Rule: the base's optimizer; AdamW at 2x the base's pretraining peak rate (a tuned base keeps its own
    tuning rate); Muon matrices at the base's Muon rate; dropout 0.
    """
    candidate = run_record(locate(model).folder)  # a fidan run, checkpoint or export; None for other models
    if candidate is not None:
        try:
            config = RunConfig.load(candidate)
        except BadInput:  # an unreadable record: tune with the defaults for a base of unknown rate
            config = RunConfig()
        train = config.train
        if "lr" in train:
            scale = 1.0 if config.stage == "sft" else TUNE_LR_SCALE
            return {"optimizer": train.get("optimizer", "adamw"), "lr": float(train["lr"]) * scale,
                    "muon_lr": float(train.get("muon_lr", 0.02)), "dropout": 0.0, "from": str(candidate)}
    return {"optimizer": "adamw", "lr": FALLBACK_LR, "muon_lr": 0.02, "dropout": 0.0, "from": None}


@torch.no_grad()
def evaluate_responses(model: torch.nn.Module, examples: list[Example], token_bytes, block_size: int,
                       batch_size: int, pad_id: int, device: str = "cpu", autocast_ctx=None) -> dict:
    """Answer-only held-out loss (nats per supervised token, </RESP> included) and bits per byte (text
    tokens only: special tokens have no bytes)."""
    meter = BitsPerByte(token_bytes)
    nll = model_nll(model, autocast_ctx)
    rows = pack_rows([len(x) for x, _ in examples], list(range(len(examples))), block_size)
    for i in range(0, len(rows), batch_size):
        x, y, doc = make_batch(examples, rows[i:i + batch_size], pad_id)
        meter.add(nll(x, y, doc), y)
    return meter.result()


class SFTTask:
    stage = "sft"
    evaluate_first = True

    def __init__(self, model: GPT, train_ex: list[Example], val_ex: list[Example], pad_id: int, token_bytes,
                 args: TrainArgs, pack: bool, dist, device: str):
        self.model, self.train_ex, self.val_ex, self.pad_id = model, train_ex, val_ex, pad_id
        self.token_bytes, self.args, self.dist, self.device = token_bytes, args, dist, device
        self.block = model.config.block_size
        self.batches = EpochBatches(train_ex, self.block, pack, args.seed)
        self.rows: list[list[int]] = []
        self.supervised = 1
        self.eval_ctx = autocast(device, args.precision) if args.precision != "fp32" else None

    def begin_step(self) -> None:
        global_rows = self.args.batch_size * self.args.grad_accum * self.dist.world_size
        self.rows = self.batches.next(global_rows)
        # Normalize by the step's supervised tokens, so the loss does not depend on how rows are split.
        self.supervised = max(1, sum(sum(t != -100 for t in self.train_ex[i][1]) for row in self.rows for i in row))

    def micro_batch(self, index: int) -> dict:
        bs = self.args.batch_size
        start = (index * self.dist.world_size + self.dist.rank) * bs
        x, y, doc = make_batch(self.train_ex, self.rows[start:start + bs], self.pad_id)
        return {"x": x.to(self.device), "y": y.to(self.device), "doc": doc.to(self.device)}

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, float, int]:
        _, mean = model(batch["x"], batch["y"], doc_ids=batch["doc"], return_logits=False)
        n = int((batch["y"] != -100).sum())
        share = mean * (n / self.supervised)  # this micro-batch's part of the step's token mean
        # DDP averages gradients over processes; scaling by the world size makes that a sum of the parts.
        return share * self.dist.world_size, share.item() * self.dist.world_size, batch["x"].numel()

    def evaluate(self) -> dict:
        if not self.val_ex:
            return {}
        return evaluate_responses(self.model, self.val_ex, self.token_bytes, self.block, self.args.batch_size,
                                  self.pad_id, self.device, self.eval_ctx)

    def final_evaluation(self) -> dict | None:
        return None  # every evaluation already covers the whole held-out set

    def record(self) -> dict:
        return {"epoch": self.batches.epoch}

    def state_dict(self) -> dict:
        return {"data": self.batches.state()}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state(state["data"])


def _with_dropout(model: GPT, dropout: float) -> GPT:
    if dropout == model.config.dropout:
        return model
    fresh = GPT(GPTConfig.from_dict({**model.config.to_dict(), "dropout": dropout}))
    fresh.load_state_dict(model.state_dict())
    return fresh


@stage_settings(batch_size=8, warmup_steps=20, weight_decay=0.01, eval_every=50, checkpoint_every=100,
                keep_checkpoints=2, max_steps=500)
def sft(model: str, data: str, out: str, *, tune: TuneArgs, lora: LoraArgs, train: TrainArgs, eval: EvalArgs,
        checkpoint: CheckpointArgs, load: LoadArgs, log: LogArgs, run: RunArgs) -> dict:
    """Instruction-tune a model on chat or Alpaca-style data, with loss on the answers only.

    Args:
        model: a run folder made by `fidan pretrain` (or `fidan sft`), one of its checkpoints, a transformers
            causal-LM folder, or a hub name from the local Hugging Face cache.
        data: a .jsonl file (Alpaca instruction/input/output or chat messages), a folder with train.jsonl
            (and val.jsonl), or hf:NAME for a Hugging Face dataset.
        out: the new run folder (checkpoints, metrics.jsonl, plots/, model.safetensors, tokenizer/).
        lora_r: train LoRA adapters of this rank (and the chat tokens' embedding rows) instead of every
            weight (0: off); the run saves the adapters merged into an ordinary model, and unmerged as a peft
            folder in RUN/adapter.
        lora_alpha: LoRA scale: updates are multiplied by alpha / r.
        lora_targets: comma-separated linear layers that get adapters (default: every attention and MLP layer).
        qlora: load the transformers base with its block linear layers in 4-bit NF4 (double quantization, bf16
            compute; bitsandbytes, CPU or CUDA) and train LoRA adapters over it (needs --lora-r).
        batch_size: rows (packed sequences) per micro-batch (per process under torchrun).
        lr: peak learning rate (default: twice the base's pretraining rate, from its config.yaml; with
            --lora-r 2.5 times that, or 1e-3 over a base with no fidan record).
        optimizer: adamw, muon, or auto (the base's optimizer).
        muon_lr: peak learning rate of the Muon matrices (default: the base's).
        eval_every: evaluate the held-out answer loss every N steps.
        seed: seed for the data order and dropout.
    """
    command_args = record({"model": model, "data": data, "out": out}, tune, lora, train, eval, checkpoint, load,
                          log, run)
    tune.check()
    device = pick_device(run.device)
    spec = lora_request(lora)
    folder = Path(out)
    # a resumed run keeps its own resolved settings; one killed before it wrote them starts as a new run would
    continued = run.resume and (folder / "config.yaml").exists()
    defaults = _resumed_defaults(folder) if continued else tuning_defaults(model)
    lora_scale = LORA_LR_SCALE_RECORDED if defaults["from"] else LORA_LR_SCALE
    rate = ("given" if train.lr is not None else f"from the base: {defaults['from']}" if defaults["from"] else
            f"default {FALLBACK_LR:g}: the base records no fidan training")
    if spec is not None and train.lr is None:
        rate += f", x{lora_scale:g} for LoRA"
    scale = lora_scale if spec is not None and not continued else 1.0
    args = train.settled(eval, checkpoint, lr=defaults["lr"] * scale, optimizer=defaults["optimizer"],
                         muon_lr=defaults["muon_lr"],
                         precision=train_precision(train.precision, device, stored_dtype(model, load.load_dtype),
                                                   lora.qlora))
    grow_to = tune.block_size if tune.block_size is not None and base_source(model).kind == "fidan" else None
    load_opts = {"dtype": load.load_dtype, "four_bit": lora.qlora,
                 "block_size": None if grow_to is not None else tune.block_size,
                 "trust_remote_code": load.trust_remote_code}
    dist = dist_util.init_distributed(device)
    try:
        summary, net, n_train, n_val, base_dtype = _tune(
            model, data, folder, tune, args, eval, checkpoint, log, run, spec=spec, dist=dist, defaults=defaults,
            rate=rate, command_args=command_args, load_opts=load_opts, grow_to=grow_to)
        if spec is not None and dist.is_main:
            merged_for_saving(net, folder, base_dtype)
    finally:
        dist_util.shutdown(dist)
    if not dist.is_main:
        return summary
    summary.update(train_conversations=n_train, val_conversations=n_val)
    if not log.quiet:
        why = f" ({summary['stopped']})" if summary["stopped"] else ""
        after = f", held-out answer loss {summary['val_loss']:.3f}" if summary["val_loss"] is not None else ""
        print(f"done: step {summary['step']}/{summary['max_steps']}{why}{after} → {folder}")
    return summary


def _chat_ids(tok) -> list[int]:
    """fidan's chat markers, whose embedding rows train beside LoRA adapters (none with a base's own template)."""
    ids = [tok.tokenizer.token_to_id(t) for t in CHAT_TOKENS]
    return [] if None in ids else ids


def _resumed_defaults(run: Path) -> dict:
    """The resolved settings of the run being continued (its config.yaml), for options not given again."""
    saved = RunConfig.read(run) or RunConfig()
    train = saved.train
    return {"optimizer": train.get("optimizer", "adamw"), "lr": train.get("lr", FALLBACK_LR),
            "muon_lr": train.get("muon_lr", 0.02), "dropout": saved.model.get("dropout", 0.0),
            "from": str(run / RUN_CONFIG)}


def _tune(model: str, data: str, run: Path, tune: TuneArgs, args: TrainArgs, evals: EvalArgs, ckpts: CheckpointArgs,
          log: LogArgs, opts: RunArgs, *, spec, dist, defaults: dict, rate: str, command_args: dict, load_opts: dict,
          grow_to: int | None):
    main, lora, val_data, val_fraction = dist.is_main, spec, tune.val_data, tune.val_fraction
    quiet = log.quiet or not main
    chat_template = tune.chat_template
    ckpt = open_run(run, opts.resume, opts.force, dist.is_main, quiet)
    # the data first: a bad file is refused before anything is printed about the model or written
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
    start = None
    if ckpt is not None:  # a resume reads the grown model and tokenizer from the run itself
        tok = load_tokenizer(run / "tokenizer")
        if lora is not None:
            start = resume_adapted(ckpt, device=dist.device, trainable_rows=_chat_ids(tok), **load_opts)
        else:
            start = load_start(str(ckpt), str(run / "tokenizer"), device=dist.device, **load_opts)
        net = start.model
        if master_weights_fp32(net) and lora is None:
            load_weights(net, ckpt)  # the trained tensors' saved fp32 values, not their half rounding
    else:
        start = load_start(model, None, device=dist.device, **load_opts)
        net, base_tok = start.model, start.tok
        if grow_to is not None:
            if grow_to < net.config.block_size:
                raise FidanError(f"--block-size {grow_to} is shorter than {model}'s block size "
                                 f"{net.config.block_size}; leave it out to tune at the base's, or give a longer one")
            grown = grow_context(net, grow_to)
        if lora is not None:
            check_targets(net, lora)  # before anything is written
        own_template = template_source(base_tok) is not None and ChatFormat(base_tok).kind == "template" and \
            (chat_template == "base" or (chat_template == "auto" and start.kind == "hf"))
        if chat_template == "base" and not own_template:
            raise FidanError(f"--chat-template base: {model} has no chat template of its own; leave the option out "
                             "to tune with fidan's <INST>…</INST><RESP>…</RESP>")
        if main:
            start_fresh(run)
            if own_template:  # the base's tokenizer as it is, its template kept in tokenizer_config.json
                add_special_tokens(base_tok.path, run / "tokenizer", [], template_source(base_tok))
            else:
                add_special_tokens(base_tok.path, run / "tokenizer", CHAT_TOKENS, CHAT_TEMPLATE)
        dist_util.barrier(dist)
        tok = load_tokenizer(run / "tokenizer")
        rows = net.config.vocab_size
        grow_embeddings(net, max(rows, tok.vocab_size))  # padded rows may already hold the new ids
        added = tok.vocab_size - base_tok.vocab_size
        if start.kind == "fidan":
            net = _with_dropout(net, defaults["dropout"] if tune.dropout is None else tune.dropout)
        if not quiet:
            print(f"tuning: lr {args.lr:g} ({rate}), {args.optimizer}, dropout {net.config.dropout:g}")
            if grow_to is not None:
                print(f"context: {grown}")
            if added:
                print(f"tokenizer: added {added} chat tokens ({' '.join(CHAT_TOKENS)}); embeddings "
                      f"{rows} → {net.config.vocab_size} rows, new rows = mean of the old")
        if lora is not None:
            torch.manual_seed(args.seed)  # the adapters' starting values, the same on every run
            trained, total = adapt_with_lora(net, lora, _chat_ids(tok), base=start.describe()["source"],
                                             tokenizer=tok.path)
            if not quiet:
                print(f"LoRA r={lora.r}, alpha={lora.alpha:g}: training {trained:,} of {total:,} weights "
                      f"({trained / total:.2%}: the adapters and the chat tokens' embedding rows)"
                      + (" over a 4-bit NF4 base" if load_opts["four_bit"] else ""))
        master_weights_fp32(net)
    hf = start.kind == "hf"
    if main and hf:
        copy_hf_tokenizer(tok, run)
    cfg = net.config
    net.to(dist.device)

    chat_format = ChatFormat(tok)
    if not quiet and ckpt is None:
        print(f"chat format: {'the base model' + chr(39) + 's own template' if chat_format.kind == 'template' else 'fidan'}"
              f"{'' if chat_format.kind == 'template' else ' <INST>…</INST><RESP>…</RESP>'}")
    train_ex, truncated, dropped = tokenize_conversations(tok, train_convs, cfg.block_size, chat_format)
    val_ex, _, _ = tokenize_conversations(tok, val_convs[:tune.eval_examples], cfg.block_size, chat_format)
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

    config = {"fidan_version": __version__, "stage": "sft",
              "base_model": model if not Path(model).exists() else str(Path(model).resolve()),
              "data": str(data) if str(data).startswith("hf:") else str(Path(data).resolve()),
              "data_sha256": sha256_file(data) if Path(data).is_file() else None, "val_data": val_data,
              "tokenizer_sha256": tok.sha256, "model": cfg.to_dict(), "parameters": net.num_params(),
              "pack": tune.pack, "train_conversations": len(train_ex), "val_conversations": len(val_ex),
              "chat_format": chat_format.kind,
              "lora": lora.to_dict() if lora else None, "base": base_record(start, model, load_opts),
              "trainable_parameters": trained_weights(net)}
    task = SFTTask(net, train_ex, val_ex, tok.eos_id, tok.token_bytes(), args, tune.pack, dist, dist.device)
    summary = fit(task, run, args, evals, ckpts, dist=dist, device=dist.device, resume_from=ckpt, config=config,
                  command_args=command_args, logger=log.logger, quiet=quiet,
                  title=f"sft · {net.num_params():,} parameters")
    return summary, net, len(train_ex), len(val_ex), start.dtype


def estimate_sft_step_seconds(cfg: GPTConfig, batch_size: int, device: str = "cpu", steps: int = 3,
                              precision: str = "fp32") -> float:
    """Time a few packed training steps (document-masked attention) of a throwaway model."""
    return estimate_step_seconds(cfg, batch_size, device=device, steps=steps, precision=precision, packed=True)
