"""`fidan bench speedrun`: how fast does a preset reach a held-out bits per byte on this machine?

Trains on the bundled Turkish corpus for a time budget (the learning-rate schedule is re-planned to it from
the measured step times), evaluates held-out bits per byte along the way, and reports bpb against
training seconds (evaluation time excluded) and the time to reach ``--target-bpb``, with a plot.
With ``--held-out SOURCE`` one built-in source is left out of training (tokenizer included) and the
final model is also measured on it: in-domain and out-of-domain bits per byte side by side.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fidan.artifacts.runs import read_metrics
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.bench.bundled import bundled_data, held_out_split
from fidan.errors import FidanError
from fidan.model.gpt import config_from_preset
from fidan.runtime.device import pick_device
from fidan.runtime.io import atomic_write_json, require_path
from fidan.runtime.plots import figure
from fidan.training.pretrain import PRESET_OPTIMIZER, estimate_step_seconds, pretrain

EVALS_PER_RUN = 20


def time_to_target(evals: list[dict], target: float) -> float | None:
    """Training seconds at the first evaluation whose bits per byte is at or below ``target``."""
    return next((e["train_s"] for e in evals if e["val_bpb"] <= target), None)


def plot_speedrun(curves: dict[str, list[tuple[float, float]]], out: Path, target: float | None = None) -> Path:
    """Held-out bits per byte against training minutes, one line per run."""
    with figure(out, size=(7, 4.5)) as (_, axes):
        ax = axes[0, 0]
        for label, points in curves.items():
            ax.plot([p[0] / 60 for p in points], [p[1] for p in points], "o-", ms=3, label=label)
        if target is not None:
            ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target:.3f}")
        ax.set(xlabel="training minutes (evaluation excluded)", ylabel="held-out bits per byte", title="speedrun")
        ax.legend()
    return out


def bench_speedrun(
    preset: str = "hizli",
    minutes: float = 2.0,
    target_bpb: float | None = None,
    data: str | None = None,
    tokenizer: str | None = None,
    source: list[str] | None = None,
    held_out: str | None = None,
    work: str = "runs/speedrun",
    out: str | None = None,
    vocab_size: int = 8000,
    batch_size: int = 32,
    depth: int | None = None,
    block_size: int | None = None,
    lr: float | None = None,
    muon_lr: float | None = None,
    optimizer: str = "auto",
    precision: str = "auto",
    compile: bool | None = None,
    eval_windows: int = 256,
    compare: list[str] | None = None,
    seed: int = 1337,
    device: str = "auto",
    force: bool = False,
) -> dict:
    """Train a preset for a time budget; report held-out bits per byte against training time.

    Args:
        preset: model preset (hizli, ders).
        minutes: training-time budget; the learning-rate schedule is sized to it.
        target_bpb: report the training time at which held-out bits per byte first reaches this.
        data: a data folder (default: the bundled Turkish corpus, prepared once under --work).
        tokenizer: a tokenizer folder (default: one trained on the bundled corpus under --work).
        source: the built-in sources to train on (repeatable; default tr-speeches and tr-treebank, or with
            --held-out every built-in source but that one).
        held_out: a built-in source left out of training and of the tokenizer; the final model's bits per
            byte on it (a fifth of its documents) is reported beside the in-domain figure.
        work: folder for the bundled corpus, tokenizer and runs.
        out: the run folder (default: WORK/speedrun-PRESET).
        vocab_size: vocabulary of the default tokenizer.
        batch_size: sequences per step.
        depth: the size dial (layers; width 64 per layer).
        block_size: sequence length (default: the preset's).
        lr: peak AdamW learning rate (default: the preset's).
        muon_lr: peak Muon learning rate with --optimizer muon (default: the preset's).
        optimizer: auto (the preset's), adamw or muon.
        precision: auto, fp32 or bf16.
        compile: compile the model with torch.compile (default: when 5 minutes or more are left; False: never).
        eval_windows: held-out windows per evaluation.
        compare: earlier speedrun folders to draw on the same plot (repeatable).
        seed: random seed.
        device: auto, cpu or cuda.
        force: replace an existing run folder.
    """
    if minutes <= 0:
        raise FidanError(f"--minutes must be positive, got {minutes}")
    device = pick_device(device)
    held_data = None
    if held_out is not None:
        if data is not None or tokenizer is not None:
            raise FidanError("--held-out builds its own data and tokenizer from the other sources; "
                             "leave out --data and --tokenizer")
        source, held_data = held_out_split(work, held_out, source)
    if data is None or tokenizer is None:
        bundled = bundled_data(work, vocab_size, source)
        data, tokenizer = data or bundled[0], tokenizer or bundled[1]
    run = Path(out or Path(work) / f"speedrun-{preset}")
    tok = load_tokenizer(tokenizer)
    cfg = config_from_preset(preset, tok.vocab_size, depth=depth, block_size=block_size)
    opt_name = PRESET_OPTIMIZER.get(preset, "adamw") if optimizer == "auto" else optimizer
    step_s = estimate_step_seconds(cfg, batch_size, device=device, precision=precision, optimizer=opt_name)
    # The estimate only places the evaluations: the run re-plans its length from its measured step times,
    # so the schedule ends when `minutes` of training (evaluations excluded) are spent.
    max_steps = max(20, int(minutes * 60 / step_s))
    print(f"speedrun {preset}: {cfg.n_layer} layers x {cfg.n_embd}, ~{step_s:.3f} s/step → about {max_steps} "
          f"steps for {minutes:g} min of training")
    summary = pretrain(
        data=data, tokenizer=tokenizer, out=str(run), preset=preset, depth=depth, block_size=block_size,
        max_steps=max_steps, budget_minutes=minutes, budget_counts="training", max_minutes=minutes * 4 + 2,
        batch_size=batch_size, lr=lr, muon_lr=muon_lr,
        optimizer=opt_name, precision=precision, compile=compile, warmup_steps=max(1, max_steps // 20),
        eval_every=max(1, max_steps // EVALS_PER_RUN), eval_windows=eval_windows, checkpoint_every=max_steps,
        keep_checkpoints=1, seed=seed, device=device, force=force, quiet=True,
    )
    evals = [r for r in read_metrics(run) if r["kind"] == "eval"]
    train_s = evals[-1]["train_s"]
    result = {"preset": preset, "minutes": minutes, "steps": summary["step"], "first_guess_steps": max_steps,
              "train_seconds": train_s, "final_bpb": summary["val_bpb"], "final_loss": summary["val_loss"],
              "target_bpb": target_bpb, "seconds_to_target": None, "peak_rss_mb": summary["peak_rss_mb"],
              "parameters": sum(p.numel() for p in _model_params(cfg)), "optimizer": opt_name,
              "curve": [(e["train_s"], e["val_bpb"]) for e in evals], "run": str(run),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(f"{preset}: held-out {result['final_bpb']:.4f} bits/byte after {train_s:.0f} s of training "
          f"({summary['step']} steps, peak RSS {summary['peak_rss_mb']:,.0f} MiB)")
    if held_data is not None:
        from fidan.evaluation.bpb import eval_bpb

        ood = eval_bpb(model=str(run), text=held_data, split="val", batch_size=16, device=device, force=True,
                       quiet=True)
        result.update(held_out=held_out, held_out_bpb=ood["bpb"], training_sources=source)
        print(f"{preset}: in domain {result['final_bpb']:.4f}, out of domain ({held_out}, never trained on) "
              f"{ood['bpb']:.4f} bits/byte")
    if target_bpb is not None:
        result["seconds_to_target"] = time_to_target(evals, target_bpb)
        reached = result["seconds_to_target"]
        print(f"target {target_bpb:.4f} bits/byte: " + (f"reached after {reached:.0f} s of training" if reached is not None
                                                          else "not reached"))
    curves = {f"{preset} ({minutes:g} min)": result["curve"]}
    for other in compare or []:
        prior = require_path(Path(other) / "speedrun.json", "speedrun result", "run `fidan bench speedrun` first")
        import json

        r = json.loads(prior.read_text(encoding="utf-8"))
        curves[f"{r['preset']} ({r['minutes']:g} min)"] = [tuple(p) for p in r["curve"]]
    result["plot"] = str(plot_speedrun(curves, run / "plots" / "speedrun.png", target_bpb))
    atomic_write_json(run / "speedrun.json", result)
    return result


def _model_params(cfg):
    from fidan.model.gpt import GPT

    return GPT(cfg).parameters()
