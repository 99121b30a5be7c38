"""`fidan bench`: peak FLOP/s, the side-by-side training benchmark, and the speedrun report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fidan.bench.speedrun import bench_speedrun, time_to_target
from fidan.bench.train import bench_train
from fidan.cli import main
from fidan.errors import BadInput, FidanError, MissingExtra


def test_bench_peak_cli_writes_json(tmp_path):
    out = tmp_path / "peak.json"
    assert main(["bench", "peak", "--size", "128", "--seconds", "0.05", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["fp32_gflops"] > 0 and result["bf16_gflops"] > 0
    assert result["device"] == "cpu" and result["threads"] >= 1


def test_bench_peak_is_one_products_flops_over_its_fastest_time(monkeypatch):
    """With a clock whose ticks alternate 2 ms and 1 ms, every product seems to take 1 or 2 ms: the peak is
    2·n³ FLOPs over the 1 ms, the fastest time, for each precision."""
    import itertools

    import fidan.runtime.perf as perf
    from fidan.bench.peak import bench_peak

    ticks = itertools.accumulate(itertools.cycle([0.002, 0.001]))
    monkeypatch.setattr(perf.time, "perf_counter", lambda: next(ticks))
    result = bench_peak(device="cpu", size=256, seconds=0.05)
    assert result["fp32_gflops"] == result["bf16_gflops"] == round(2 * 256**3 / 0.001 / 1e9, 1)


@pytest.mark.parametrize("preset,kind", [("ders", "GPT2LMHeadModel"), ("hizli", "LlamaForCausalLM"),
                                         ("qwen3", "LlamaForCausalLM")])
def test_the_yardstick_has_the_presets_shape_and_size(preset, kind):
    """The plain loop trains transformers' model of the preset's kind (GPT-2 or Llama) with fidan's weight count."""
    from fidan.bench.train import yardstick, yardstick_name
    from fidan.model.gpt import GPT, config_from_preset

    cfg = config_from_preset(preset, 400)
    model = yardstick(cfg)
    assert type(model).__name__ == kind == yardstick_name(cfg)
    ours, theirs = GPT(cfg).num_params(), sum(p.numel() for p in model.parameters())
    assert abs(theirs - ours) / ours < 0.01, (ours, theirs)
    assert model.config.num_hidden_layers == cfg.n_layer and model.config.hidden_size == cfg.n_embd


def test_bench_train_side_by_side(tmp_path, data_dir, tokenizer_dir, capsys):
    out = tmp_path / "train.json"
    r = bench_train(data=str(data_dir), tokenizer=str(tokenizer_dir), batch_size=2, block_size=16, rounds=2,
                    steps=1, warmup=1, json=str(out))
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    names = set(r["tokens_per_s"])
    assert {"fidan", "hf-fp32"} <= names
    for name in names:
        assert r["tokens_per_s"][name] > 0 and 0 < r["mfu"][name] < 1 and r["peak_rss_mb"][name] > 50
    assert set(r["ratios"]) == {f"fidan/{n}" for n in names - {"fidan"}} == set(r["ratio_range"])
    assert all(v > 0 for v in r["ratios"].values())
    for key, (low, high) in r["ratio_range"].items():  # the median lies within the per-round range printed
        assert low <= r["ratios"][key] <= high and f"{key}: {r['ratios'][key]:.2f}x (median of 2 per-round " \
            f"ratios, {low:.2f}x to {high:.2f}x)" in printed
    assert r["flops_per_token"] > 0 and r["vocab_size"] == 400
    # Each MFU says which peak it is a share of: the fp32 loop's fp32 peak, a bf16 run's bf16 peak.
    assert r["mfu_peak"]["hf-fp32"] == "fp32" and r["mfu_peak"]["fidan"] == r["fidan_precision"]
    assert r.get("mfu_peak", {}).get("hf-bf16", "bf16") == "bf16"
    for name in names:
        p = r["mfu_peak"][name]
        assert f"| {name} | {r['tokens_per_s'][name]:,.0f} | {r['mfu'][name]:.1%} of {p} peak " \
               f"({r['peak_gflops'][p]:,.1f} GFLOP/s) |" in printed
    assert "MFUs under different peaks do not compare" in printed


def test_time_to_target():
    evals = [{"train_s": 10.0, "val_bpb": 3.0}, {"train_s": 20.0, "val_bpb": 2.5}, {"train_s": 30.0, "val_bpb": 2.6}]
    assert time_to_target(evals, 2.7) == 20.0
    assert time_to_target(evals, 3.0) == 10.0
    assert time_to_target(evals, 2.0) is None


FAKE_NANOGPT = """
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        (Path(__file__).parent / "built.json").write_text(json.dumps(asdict(config)))
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, idx, targets=None):
        logits = self.head(self.wte(idx))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        print("using fused AdamW: False")
        return torch.optim.AdamW(self.parameters(), lr=learning_rate, betas=betas, weight_decay=weight_decay)
"""


def test_bench_train_against_a_nanogpt_checkout(tmp_path, data_dir, tokenizer_dir, capsys):
    """--against nanogpt:DIR runs that checkout's model.py at fidan's size and precision, beside the others;
    --precision sets fidan's (and its) precision."""
    checkout = tmp_path / "nanoGPT"
    checkout.mkdir()
    (checkout / "model.py").write_text(FAKE_NANOGPT, encoding="utf-8")
    r = bench_train(data=str(data_dir), tokenizer=str(tokenizer_dir), batch_size=2, block_size=16, rounds=2,
                    steps=1, warmup=1, precision="fp32", against=f"nanogpt:{checkout}")
    built = json.loads((checkout / "built.json").read_text())
    assert built["vocab_size"] == 400 and built["block_size"] == 16 and built["n_layer"] == r["n_layer"]
    assert r["fidan_precision"] == "fp32" and r["mfu_peak"]["nanogpt"] == "fp32"
    assert r["tokens_per_s"]["nanogpt"] > 0 and r["ratios"]["fidan/nanogpt"] > 0
    assert "fidan/nanogpt" in capsys.readouterr().out
    with pytest.raises(BadInput, match="nanoGPT checkout holding model.py"):
        bench_train(data=str(data_dir), tokenizer=str(tokenizer_dir), against=f"nanogpt:{tmp_path / 'none'}")
    # a contestant that dies is reported, not waited for
    (checkout / "model.py").write_text(FAKE_NANOGPT.replace("super().__init__()", "raise ValueError('broken')"))
    with pytest.raises(FidanError, match="bench worker nanogpt stopped"):
        bench_train(data=str(data_dir), tokenizer=str(tokenizer_dir), batch_size=2, block_size=16, rounds=1,
                    steps=1, warmup=1, against=f"nanogpt:{checkout}")


def test_speedrun_reports_bpb_against_time(tmp_path, data_dir, tokenizer_dir, monkeypatch):
    # A fixed step-time estimate places the evaluations the same way whatever the machine's load.
    import fidan.bench.speedrun as speedrun

    monkeypatch.setattr(speedrun, "estimate_step_seconds", lambda *a, **k: 0.05)
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), work=str(tmp_path), block_size=32, batch_size=4,
                  depth=1, eval_windows=4)
    first = bench_speedrun(preset="hizli", minutes=0.05, out=str(tmp_path / "a"), **common)
    # The run fills its 3 s of training (evaluations excluded) whatever the estimate said.
    assert first["train_seconds"] >= 0.05 * 60 * 0.8 and len(first["curve"]) >= 10
    slow_guess = 1.0  # an estimate 20x too slow plans 20 steps; the run re-plans and takes more
    monkeypatch.setattr(speedrun, "estimate_step_seconds", lambda *a, **k: slow_guess)
    guessed = bench_speedrun(preset="hizli", minutes=0.05, out=str(tmp_path / "g"), **common)
    assert guessed["first_guess_steps"] == 20 and guessed["steps"] > 20
    assert guessed["train_seconds"] >= 0.05 * 60 * 0.8
    monkeypatch.setattr(speedrun, "estimate_step_seconds", lambda *a, **k: 0.05)
    assert [t for t, _ in first["curve"]] == sorted(t for t, _ in first["curve"])
    assert first["curve"][-1][1] < first["curve"][0][1]  # bits per byte went down
    target = first["curve"][3][1] + 1e-9
    second = bench_speedrun(preset="hizli", minutes=0.05, out=str(tmp_path / "b"), target_bpb=target,
                            compare=[str(tmp_path / "a")], **common)
    assert second["seconds_to_target"] is not None and second["seconds_to_target"] <= second["train_seconds"]
    assert (tmp_path / "b" / "plots" / "speedrun.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "b" / "speedrun.json").read_text())
    assert saved["final_bpb"] == second["final_bpb"] and saved["target_bpb"] == target


def test_speedrun_held_out_source_is_left_out_of_training_and_measured(tmp_path, monkeypatch):
    """--held-out: the data and the tokenizer come from the other sources only, and the final model is
    measured on the held-out source's documents, beside its in-domain figure."""
    import fidan.bench.speedrun as speedrun

    pytest.importorskip("turkish_treebanks")
    try:
        from fidan.text.bundled import news

        next(news())
    except MissingExtra as e:
        pytest.skip(str(e))
    from itertools import islice

    from fidan.corpus.sources import BUILTIN

    for name, n in (("tr-treebank", 600), ("tr-news", 30)):  # the first documents of each: seconds, not minutes
        real = BUILTIN[name]
        monkeypatch.setitem(BUILTIN, name, real._replace(read=lambda real=real, n=n: islice(real.read(), n)))
    monkeypatch.setattr(speedrun, "estimate_step_seconds", lambda *a, **k: 0.05)
    r = bench_speedrun(preset="hizli", minutes=0.01, source=["tr-treebank", "tr-news"], held_out="tr-news",
                       work=str(tmp_path), vocab_size=300, block_size=32, batch_size=4, depth=1, eval_windows=4)
    assert r["training_sources"] == ["tr-treebank"] and r["held_out"] == "tr-news"
    manifest = json.loads((tmp_path / "data-tr-treebank" / "manifest.json").read_text())
    assert [s["spec"] for s in manifest["sources"]] == ["tr-treebank"]  # the tokenizer was trained on this
    held = json.loads((tmp_path / "held-out-tr-news" / "manifest.json").read_text())
    assert [s["spec"] for s in held["sources"]] == ["tr-news"]
    measured = json.loads((Path(r["run"]) / "eval" / "bpb-held-out-tr-news-val.json").read_text())
    assert measured["bpb"] == r["held_out_bpb"] and r["held_out_bpb"] != r["final_bpb"]
    with pytest.raises(FidanError, match="not a built-in source"):
        bench_speedrun(held_out="tr-nope", work=str(tmp_path))
