"""The compile decision: --compile / --no-compile, and the default that compiles a run long enough to repay
it (after timing the first steps), checks the toolchain first, and is replayed exactly on --resume."""

from __future__ import annotations

import pytest

import fidan.training.compiling as comp
from fidan.artifacts.runs import checkpoint_dirs, load_checkpoint_state, read_metrics
from fidan.training.compiling import CompileChoice, toolchain_problem
from fidan.training.pretrain import pretrain


@pytest.fixture
def toolchain_ok(monkeypatch):
    monkeypatch.setattr(comp, "toolchain_problem", lambda device: None)
    monkeypatch.setattr(comp, "_compiles", lambda device: None)


def feed(choice: CompileChoice, left: float, steps: int = 4) -> list[str]:
    notes = []
    for step in range(1, steps + 1):
        notes.append(choice.observe(step, 0, 0.1, lambda per_step: left))
    return [n for n in notes if n]


def test_asked_on_or_off_is_final():
    on, off = CompileChoice(True, "cpu", eligible=False), CompileChoice(False, "cpu", eligible=True)
    assert feed(on, 1e9) == [] and feed(off, 1e9) == []
    assert on.compiled_at(0) and not off.compiled_at(10**6)


def test_default_compiles_a_long_run_after_timing_its_first_steps(toolchain_ok):
    long, short = CompileChoice(None, "cpu", eligible=True), CompileChoice(None, "cpu", eligible=True)
    (note,) = feed(long, comp.PAYS_AFTER_S + 1)
    assert "compiling the model from step 4" in note and "--no-compile" in note
    assert not long.compiled_at(comp.AUTO_AFTER_STEPS - 1) and long.compiled_at(comp.AUTO_AFTER_STEPS)
    assert feed(short, comp.PAYS_AFTER_S - 1) == [] and not short.compiled_at(100)
    # fp32 on a CPU gains less from compiling (1.07x for ders): it waits for a longer run
    fp32 = CompileChoice(None, "cpu", eligible=True, precision="fp32")
    assert feed(fp32, comp.PAYS_AFTER_S + 1) == [] and not fp32.compiled_at(100)
    fp32 = CompileChoice(None, "cpu", eligible=True, precision="fp32")
    assert len(feed(fp32, comp.PAYS_AFTER_S_CPU_FP32 + 1)) == 1 and fp32.compiled_at(100)
    # not a fidan model trained in full on one process (adapters, transformers models, torchrun): eager
    other = CompileChoice(None, "cpu", eligible=False)
    assert feed(other, 1e9) == [] and not other.compiled_at(100)


def test_default_stays_eager_and_says_why_without_a_compiler(monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in toolchain_problem("cpu")
    choice = CompileChoice(None, "cpu", eligible=True)
    (note,) = feed(choice, 1e9)
    assert "not compiled: no C++ compiler" in note and not choice.compiled_at(100)


def test_resume_replays_the_decision_unless_a_flag_overrides_it():
    saved = {"asked": None, "decided": True, "from_step": 3}
    again = CompileChoice(None, "cpu", eligible=True)
    again.resume(saved)
    assert feed(again, 0.0) == []  # decided already: the time left no longer matters
    assert not again.compiled_at(2) and again.compiled_at(3)
    never = CompileChoice(None, "cpu", eligible=True)
    never.resume({"asked": None, "decided": True, "from_step": None})
    assert feed(never, 1e9) == [] and not never.compiled_at(100)
    forced = CompileChoice(False, "cpu", eligible=True)
    forced.resume(saved)
    assert not forced.compiled_at(100)


def test_a_default_run_compiles_mid_run_and_resumes_exactly(tmp_path, data_dir, tokenizer_dir, monkeypatch, capsys):
    """With the threshold at zero every run is 'long': the default compiles from step 4 on (dropout's masks
    then come from inductor, so the losses part from the eager run's), records it in the checkpoints, and a
    run stopped at step 5 and resumed compiles again and logs the uninterrupted run's losses."""
    pytest.importorskip("torch._inductor")
    if toolchain_problem("cpu"):
        pytest.skip(toolchain_problem("cpu"))
    monkeypatch.setattr(comp, "PAYS_AFTER_S_CPU_FP32", 0.0)
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), max_steps=7, precision="fp32", batch_size=4,
                  block_size=16, n_layer=1, eval_every=100, eval_windows=1, warmup_steps=2)  # one block: a short compile
    pretrain(out=str(tmp_path / "auto"), **common)
    assert "compiling the model from step 4" in capsys.readouterr().out
    pretrain(out=str(tmp_path / "eager"), compile=False, quiet=True, **common)
    pretrain(out=str(tmp_path / "split"), until_step=5, quiet=True, **common)
    pretrain(out=str(tmp_path / "split"), resume=True, quiet=True, **common)

    def losses(name):
        return [r["loss"] for r in read_metrics(tmp_path / name) if r["kind"] == "train"]

    auto, eager, split = losses("auto"), losses("eager"), losses("split")
    assert auto[:3] == eager[:3]  # the timed eager steps
    assert auto[3:] != pytest.approx(eager[3:], rel=1e-4)  # compiled steps: inductor's dropout masks
    assert split == pytest.approx(auto, rel=1e-6, abs=1e-6) and len(split) == 7
    pretrain(out=str(tmp_path / "asked"), max_steps=2, compile=True, quiet=True,
             **{k: v for k, v in common.items() if k != "max_steps"})
    assert losses("asked")[0] != pytest.approx(eager[0], rel=1e-4)  # --compile: compiled from the first step
    state = load_checkpoint_state(checkpoint_dirs(tmp_path / "split")[-1])
    assert state["compile"] == {"asked": None, "decided": True, "from_step": 3}


@pytest.mark.parametrize("command", ["pretrain", "sft", "bench speedrun"])
def test_the_flags_reach_the_run(command):
    from fidan.cli import parse_command

    need = {"pretrain": ["--data", "d", "--out", "o"], "sft": ["--model", "m", "--data", "d", "--out", "o"]}
    base = need.get(command, [])
    _, given = parse_command(command, [*base, "--compile"])
    _, refused = parse_command(command, [*base, "--no-compile"])
    _, left = parse_command(command, base)
    assert given["compile"] is True and refused["compile"] is False and "compile" not in left
