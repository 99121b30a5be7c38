"""`fidan pretrain`: next-token prediction on a tokenized data folder, as a task of the one training loop.

The task draws, per step, one global batch of random window starts from a seeded generator (its state
is the task's checkpointed state); each process reads only its own rows from the memory-mapped tokens.
Held-out figures use the sliding-window rule of fidan.model.scoring: at every evaluation a capped
number of windows spread evenly over the validation split, and the whole split once at the end, so a
run's final bits per byte equals `fidan eval bpb` on the same split. Speed: bf16 autocast where the hardware computes bf16 natively,
fused AdamW, torch.compile when the run is long enough to repay it, Muon for the hidden matrices (``--optimizer muon``).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import torch

from fidan import __version__
from fidan.artifacts.datadir import load_manifest
from fidan.artifacts.extension import EXTENSION_FILE, new_token_ids
from fidan.artifacts.runs import check_vocab, copy_tokenizer, load_weights, read_model_config
from fidan.artifacts.tokenizer import TokenizerBundle, load_tokenizer
from fidan.artifacts.tokens import TokenSplit, encode_splits
from fidan.errors import FidanError
from fidan.inference import Engine, Sampling
from fidan.model.gpt import GPT, config_from_preset
from fidan.model.hf import is_hf_folder
from fidan.model.scoring import count_windows, documents_in_tokens, model_nll, score_token_documents
from fidan.runtime import distributed as dist_util
from fidan.runtime.device import pick_device
from fidan.runtime.perf import autocast
from fidan.training.args import (
    CheckpointArgs,
    EvalArgs,
    LoadArgs,
    LogArgs,
    LoraArgs,
    RunArgs,
    ShapeArgs,
    TrainArgs,
)
from fidan.training.estimate import estimate_step_seconds
from fidan.training.loop import dropout_seed, fit
from fidan.training.run_folder import open_run, start_fresh
from fidan.training.settings import record, stage_settings
from fidan.training.starting_point import (
    adapt_with_lora,
    base_record,
    copy_hf_tokenizer,
    load_start,
    lora_request,
    master_weights_fp32,
    merged_for_saving,
    resume_adapted,
    stored_dtype,
    train_only_rows,
    train_precision,
    trained_weights,
)

__all__ = ["pretrain", "PretrainTask", "estimate_step_seconds", "dropout_seed", "PRESET_OPTIMIZER", "PRESET_LR"]

SAMPLE_PROMPT = "Türkiye"
# The optimizer each preset was tuned with (``--optimizer auto``), and its learning rates (``--lr``,
# ``--muon-lr`` when not given). hizli's were picked from 2-minute speedruns (benchmarks/RESULTS.md).
PRESET_OPTIMIZER = {"ders": "adamw", "hizli": "muon", "qwen3": "muon"}
PRESET_LR = {"ders": (1e-3, 0.02), "hizli": (3e-3, 0.04), "qwen3": (3e-3, 0.04)}


class PretrainTask:
    stage = "pretrain"
    evaluate_first = False

    def __init__(self, model: GPT, tok: TokenizerBundle, train: TokenSplit, val: TokenSplit, args: TrainArgs,
                 eval_windows: int, dist, device: str):
        self.model, self.tok, self.train, self.val = model, tok, train, val
        self.block = model.config.block_size
        self.args, self.eval_windows, self.dist, self.device = args, eval_windows, dist, device
        self.global_batch = args.batch_size * args.grad_accum * dist.world_size
        self.gen = torch.Generator().manual_seed(args.seed + 1)
        self.token_bytes = tok.token_bytes()
        self.eval_ctx = autocast(device, args.precision) if args.precision != "fp32" else None
        self.starts = torch.empty(0, dtype=torch.long)
        self.val_windows: int | None = None  # counted on first use
        self.stride = max(1, self.block // 2)

    def begin_step(self) -> None:
        # One draw of window starts for the whole global batch; each rank reads only its own rows.
        self.starts = torch.randint(0, len(self.train) - self.block - 1, (self.global_batch,), generator=self.gen)

    def micro_batch(self, index: int) -> dict:
        bs = self.args.batch_size
        row = (index * self.dist.world_size + self.dist.rank) * bs
        x, y = self.train.windows(self.starts[row:row + bs], self.block)
        return {"x": x.to(self.device, non_blocking=True), "y": y.to(self.device, non_blocking=True)}

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, float, int]:
        _, loss = model(batch["x"], batch["y"], return_logits=False)
        share = loss / self.args.grad_accum
        return share, share.item(), batch["x"].numel()

    def _score(self, max_windows: int | None) -> dict:
        if len(self.val) == 0:
            return {}
        select = None
        if max_windows is not None:  # windows spread evenly over the whole split, the same ones every time
            if self.val_windows is None:
                self.val_windows = count_windows(documents_in_tokens(self.val.tokens, self.tok.eos_id),
                                                 self.tok.eos_id, self.block, self.stride)
            select = {int(i) for i in np.linspace(0, self.val_windows - 1, min(max_windows, self.val_windows))}
        docs = documents_in_tokens(self.val.tokens, self.tok.eos_id)
        return score_token_documents(model_nll(self.model, self.eval_ctx), docs, self.tok.eos_id, self.token_bytes,
                                     self.block, self.stride, self.args.batch_size, select)

    def evaluate(self) -> dict:
        result = self._score(self.eval_windows)
        if result:
            result["sample"] = self.sample()
        return result

    def final_evaluation(self) -> dict | None:
        return self._score(None) or None

    def sample(self) -> str:
        gen = torch.Generator(device=self.device).manual_seed(self.args.seed)
        with self.eval_ctx or contextlib.nullcontext():  # a half-precision base with fp32 trained rows mixes dtypes
            out = Engine(self.model, self.tok.decode).generate([self.tok.encode(SAMPLE_PROMPT)], 48,
                                                               Sampling(temperature=0.8, top_k=50), gen,
                                                               stop_ids={self.tok.eos_id})
        return SAMPLE_PROMPT + out[0].text

    def record(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"batch_rng": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["batch_rng"])


@stage_settings()
def pretrain(
    data: str,
    out: str,
    tokenizer: str | None = None,
    init: str | None = None,
    only_new_embeddings: bool = False,
    eval_windows: int = 64,
    *,
    shape: ShapeArgs,
    lora: LoraArgs,
    train: TrainArgs,
    eval: EvalArgs,
    checkpoint: CheckpointArgs,
    load: LoadArgs,
    log: LogArgs,
    run: RunArgs,
) -> dict:
    """Pretrain a GPT on a tokenized data folder, or continue pretraining a fidan or transformers model.

    Args:
        data: a data folder made by `fidan data prepare` (it is tokenized on first use).
        out: the run folder (checkpoints, metrics.jsonl, plots/, model.safetensors).
        tokenizer: a tokenizer folder made by `fidan tokenizer train` (default with --init: the model's own).
        init: continue from these weights: a fidan run folder, a transformers causal-LM folder or hub name
            (from the local Hugging Face cache; then the run folder is a transformers folder too).
        only_new_embeddings: train only the embedding rows that `fidan vocab extend` added, everything else
            frozen (the first phase of adapting an extended model; needs --init).
        eval_windows: held-out windows scored per evaluation (the last evaluation scores the whole split).
        lora_r: train LoRA adapters of this rank instead of the weights (0: off; needs --init); the run
            saves the adapters merged into an ordinary model, and unmerged as a peft folder in RUN/adapter.
        lora_alpha: LoRA scale: updates are multiplied by alpha / r.
        lora_targets: comma-separated linear layers that get adapters (default: every attention and MLP layer).
        qlora: load the transformers base with its block linear layers in 4-bit NF4 (double quantization, bf16
            compute; bitsandbytes, CPU or CUDA) and train LoRA adapters over it (needs --lora-r).
        lr: peak learning rate of AdamW (with --optimizer muon, of the embeddings, head and norms);
            default: the preset's (1e-3 for ders, 3e-3 for hizli).
        optimizer: adamw, muon (Muon for block matrices + AdamW for the rest), or auto (the preset's).
        muon_lr: peak learning rate of the Muon matrices (default: the preset's, 0.04 for hizli).
    """
    command_args = record({"data": data, "tokenizer": tokenizer, "out": out, "init": init,
                           "only_new_embeddings": only_new_embeddings, "eval_windows": eval_windows},
                          shape, lora, train, eval, checkpoint, load, log, run)
    if tokenizer is None and init is None:
        raise FidanError("pretrain needs --tokenizer (a new model) or --init (continue a model with its tokenizer)")
    if only_new_embeddings and init is None:
        raise FidanError("--only-new-embeddings needs --init: the extended model whose new rows should train")
    device = pick_device(run.device)
    qlora = lora.qlora
    lora = lora_request(lora)
    if lora is not None and (init is None or only_new_embeddings):
        raise FidanError("LoRA adapts an existing model: pass --init, and not --only-new-embeddings")
    if init is None and (load.load_dtype != "auto" or load.trust_remote_code):
        raise FidanError("--load-dtype and --trust-remote-code apply to a base model: pass --init too")
    preset = shape.preset
    default_lr, default_muon_lr = PRESET_LR.get(preset, (1e-3, 0.02))
    base_dtype = stored_dtype(init, load.load_dtype) if init is not None else "fp32"
    args = train.settled(eval, checkpoint, lr=default_lr, muon_lr=default_muon_lr,
                         # Muon's split knows fidan's blocks only
                         optimizer="adamw" if init is not None else PRESET_OPTIMIZER.get(preset, "adamw"),
                         precision=train_precision(train.precision, device, base_dtype, qlora))
    if eval_windows <= 0:
        raise FidanError(f"--eval-windows must be positive, got {eval_windows}")
    if init is not None and shape.sized():
        raise FidanError("--depth, --n-layer, --n-head, --n-embd and --mlp-ratio size a new model; with --init the "
                         "model keeps its own shape: leave them out")
    quiet, block_size = log.quiet, shape.block_size
    load_opts = {"dtype": load.load_dtype, "four_bit": qlora, "block_size": block_size,
                 "trust_remote_code": load.trust_remote_code}
    dist = dist_util.init_distributed(device)
    resume, force, run = run.resume, run.force, Path(out)
    try:
        manifest = load_manifest(data)
        ckpt = open_run(run, resume, force, dist.is_main, quiet)
        start = None
        if init is not None:  # continue a model: from the run's own checkpoint when resuming
            if ckpt is not None and lora is not None:
                start = resume_adapted(ckpt, device=dist.device, **load_opts)
            elif ckpt is not None:
                run_tok = str(run) if is_hf_folder(ckpt) else None  # HF runs keep it beside the weights
                start = load_start(str(ckpt), tokenizer or run_tok, device=dist.device, **load_opts)
            else:
                start = load_start(init, tokenizer, device=dist.device, **load_opts)
            tok, cfg = start.tok, start.model.config
        else:
            tok = load_tokenizer(tokenizer)
            if ckpt is not None:
                cfg = read_model_config(ckpt)
                check_vocab(cfg, tok, ckpt)
            else:
                cfg = config_from_preset(preset, tok.vocab_size, depth=shape.depth, block_size=block_size,
                                         dropout=shape.dropout, n_layer=shape.n_layer, n_head=shape.n_head,
                                         n_embd=shape.n_embd, mlp_ratio=shape.mlp_ratio)
        if dist.is_main:
            token_dir = encode_splits(data, tok)
        dist_util.barrier(dist)  # the other ranks wait until rank 0 has encoded the tokens
        token_dir = encode_splits(data, tok) if not dist.is_main else token_dir
        train_split, val_split = TokenSplit(token_dir, "train"), TokenSplit(token_dir, "val")
        train_split.check_block(cfg.block_size, "train")
        if len(val_split):
            val_split.check_block(cfg.block_size, "val")
        elif not quiet and dist.is_main:
            print("note: the data folder has no validation split; held-out evaluation is off")

        torch.manual_seed(args.seed)
        if start is not None:
            model = start.model.train()
            if only_new_embeddings:
                new_ids = new_token_ids(start.folder if ckpt is None else run)
                n = train_only_rows(model, new_ids)
                if not quiet and dist.is_main:
                    print(f"training only the {len(new_ids):,} new embedding rows ({n:,} weights); the rest is frozen")
            if lora is not None and ckpt is None:
                trained, total = adapt_with_lora(model, lora, base=start.describe()["source"])
                if not quiet and dist.is_main:
                    print(f"LoRA r={lora.r}, alpha={lora.alpha:g}: training {trained:,} of {total:,} weights "
                          f"({trained / total:.2%})" + (" over a 4-bit NF4 base" if qlora else ""))
            if master_weights_fp32(model) and ckpt is not None and lora is None:
                load_weights(model, ckpt)  # the trained tensors' saved fp32 values, not their half rounding
        else:
            model = GPT(cfg).to(dist.device)
            if ckpt is not None:
                load_weights(model, ckpt, dist.device)
        if ckpt is None and dist.is_main:
            start_fresh(run)
        if dist.is_main:
            copy_tokenizer(tok, run)
            if start is not None and start.kind == "hf":
                copy_hf_tokenizer(tok, run)
            if start is not None and (start.folder / EXTENSION_FILE).exists() and ckpt is None:
                shutil.copy2(start.folder / EXTENSION_FILE, run / EXTENSION_FILE)
        config = {"fidan_version": __version__, "stage": "pretrain", "data": str(Path(data).resolve()),
                  "data_sha256": [f["sha256"] for s in manifest["splits"].values() for f in s["files"]],
                  "tokenizer": str(tok.path.resolve()), "tokenizer_sha256": tok.sha256,
                  "init": init if init and not Path(init).exists() else str(Path(init).resolve()) if init else None,
                  "base": base_record(start, init, load_opts) if start is not None else None,
                  "model": cfg.to_dict(), "parameters": model.num_params(),
                  "preset": None if init else preset, "lora": lora.to_dict() if lora else None,
                  "trainable_parameters": trained_weights(model)}
        task = PretrainTask(model, tok, train_split, val_split, args, eval_windows, dist, dist.device)
        summary = fit(task, run, args, eval, checkpoint, dist=dist, device=dist.device, resume_from=ckpt, config=config,
                      command_args=command_args, logger=log.logger, quiet=quiet,
                      title=f"{Path(init).name if init else preset} · {model.num_params():,} parameters")
        if lora is not None and dist.is_main:
            merged_for_saving(model, run, start.dtype)
    finally:
        dist_util.shutdown(dist)
    if dist.is_main and not quiet:
        why = " (time limit)" if summary["stopped_early"] else ""
        bpb = f"val bits/byte {summary['val_bpb']:.3f}, val loss {summary['val_loss']:.3f}" \
            if summary["val_bpb"] is not None else "no held-out data"
        print(f"done: step {summary['step']}/{summary['max_steps']}{why}, {bpb} → {run}")
    return summary
