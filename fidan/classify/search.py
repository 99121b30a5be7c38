"""`fidan classify train --search N`: hyper-parameter search with Optuna.

Trial 0 is the command's own settings (the defaults unless given), so the search says honestly whether
it beat them. Then Optuna's TPE sampler proposes settings; each trial is an ordinary `classify train`
run in ``OUT/search/trial-NNN`` (quiet, no baseline) scored by its validation macro-F1, and a neural
trial whose held-out macro-F1 falls below the median of earlier trials at the same evaluation is pruned
(stopped early). Every trial is logged to ``search/trials.jsonl``; the best settings are written as
``search/best.yaml`` (nested by group, as a run's config.yaml holds them; replay with
``fidan classify train --config OUT/search/best.yaml``) and the final model is trained with them in ``OUT``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import yaml

from fidan.classify.task import eval_hook
from fidan.errors import FidanError, MissingExtra
from fidan.runtime.io import atomic_write_text
from fidan.runtime.plots import figure
from fidan.training.run_folder import _plain  # YAML-safe values, as a run's config.yaml writes them
from fidan.training.settings import nested

SEARCH_DIR = "search"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise MissingExtra("--search needs Optuna: pip install 'fidan[classify]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def propose(trial, kind: str, base: dict) -> dict:
    """The settings one trial tries: a search space per kind of model, around the command's own values."""
    if kind == "tfidf":
        return {"tfidf_c": trial.suggest_float("tfidf_c", 0.1, 100.0, log=True),
                "tfidf_word_ngrams": trial.suggest_int("tfidf_word_ngrams", 1, 3),
                "tfidf_char_ngrams": trial.suggest_categorical("tfidf_char_ngrams", [0, 3, 4, 5, 6]),
                "class_weight": trial.suggest_categorical("class_weight", ["none", "balanced"])}
    lr = base["lr"]
    return {"lr": trial.suggest_float("lr", lr / 10, lr * 10, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [8, 16, 32]),
            "warmup_steps": trial.suggest_categorical("warmup_steps", [0, 10, 30, 60]),
            "weight_decay": trial.suggest_float("weight_decay", 1e-3, 0.1, log=True),
            "head_dropout": trial.suggest_float("head_dropout", 0.0, 0.3),
            "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.2),
            "class_weight": trial.suggest_categorical("class_weight", ["none", "sqrt", "balanced"])}


def defaults_of(kind: str, args: dict, lr: float) -> dict:
    """Trial 0: the command's own values of the searched settings."""
    if kind == "tfidf":
        keys = ("tfidf_c", "tfidf_word_ngrams", "tfidf_char_ngrams", "class_weight")
        return {k: args[k] for k in keys}
    keys = ("batch_size", "warmup_steps", "weight_decay", "head_dropout", "label_smoothing", "class_weight")
    return {"lr": lr, **{k: args[k] for k in keys}}


def search(train, args: dict, kind: str, lr: float, n_trials: int, run: Path, quiet: bool) -> dict:
    """Run ``n_trials`` trials of ``train`` (the `classify train` function); returns the best settings."""
    optuna = _optuna()
    folder = run / SEARCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "trials.jsonl"
    log.unlink(missing_ok=True)
    base = {"lr": lr}
    first = defaults_of(kind, args, lr)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args["seed"]),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    study.enqueue_trial(first)
    records: list[dict] = []

    def objective(trial) -> float:
        params = propose(trial, kind, base)
        out = folder / f"trial-{trial.number:03d}"
        t0 = time.time()

        def report(index: int, result: dict) -> None:
            trial.report(result["val_macro_f1"], index)
            if trial.should_prune():
                raise optuna.TrialPruned()

        token = eval_hook.set(report)
        state, value = "complete", math.nan
        try:
            summary = train(**{**args, **params, "out": str(out), "search": 0, "quiet": True, "force": True,
                               "resume": False, "baseline": False, "data": str(run / "split" / "train.jsonl"),
                               "val_data": str(run / "split" / "val.jsonl"), "test_data": None, "test_fraction": 0.0,
                               "text_column": "text", "label_column": "label"})
            value = summary["val_macro_f1"]
        except optuna.TrialPruned:
            state = "pruned"
            raise
        finally:
            eval_hook.reset(token)
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
            record = {"trial": trial.number, "state": state, "val_macro_f1": value, "params": params,
                      "seconds": round(time.time() - t0, 1)}
            records.append(record)
            with log.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            if not quiet:
                shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in params.items())
                score = f"val macro-F1 {value:.4f}" if not math.isnan(value) else state
                print(f"trial {trial.number:>3}: {score} ({record['seconds']:.0f} s) | {shown}")
        return value

    study.optimize(objective, n_trials=n_trials, catch=())
    done = [r for r in records if r["state"] == "complete"]
    if not done:
        raise FidanError(f"--search: no trial finished in {folder}; see {log}")
    best = max(done, key=lambda r: r["val_macro_f1"])
    default = records[0]
    result = {"trials": len(records), "pruned": sum(r["state"] == "pruned" for r in records),
              "best_trial": best["trial"], "best_val_macro_f1": best["val_macro_f1"],
              "default_val_macro_f1": default["val_macro_f1"], "improved": best["val_macro_f1"] > default["val_macro_f1"],
              "best_params": best["params"]}
    replay = nested(train, {**args, **best["params"], "search": 0, "force": True, "resume": False})
    atomic_write_text(folder / "best.yaml", yaml.safe_dump({"args": _plain(replay)}, sort_keys=False,
                                                           allow_unicode=True))
    (folder / "summary.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    _plot(records, folder / "trials.png")
    if not quiet:
        verdict = (f"better than the starting settings ({default['val_macro_f1']:.4f})" if result["improved"] else
                   f"no better than the starting settings ({default['val_macro_f1']:.4f}): they are kept")
        print(f"search: best val macro-F1 {best['val_macro_f1']:.4f} (trial {best['trial']}), {verdict}; "
              f"{result['pruned']} of {len(records)} trials pruned → {folder / 'best.yaml'}")
    return result


def _plot(records: list[dict], out: Path) -> None:
    done = [r for r in records if r["state"] == "complete"]
    if not done:
        return
    with figure(out, title="hyper-parameter search") as (_, axes):
        ax = axes[0, 0]
        ax.plot([r["trial"] for r in done], [r["val_macro_f1"] for r in done], "o", label="trial")
        best, running = [], -1.0
        for r in done:
            running = max(running, r["val_macro_f1"])
            best.append(running)
        ax.step([r["trial"] for r in done], best, where="post", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel("validation macro-F1")
        ax.legend()
