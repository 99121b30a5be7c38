"""Inference precision: bf16 and int8 give nearly the fp32 model, int8 really quantizes, bad values are one line."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fidan.adapt.export import to_transformers
from fidan.cli import main
from fidan.errors import BadInput
from fidan.inference import Engine, Sampling, apply_precision
from fidan.inference.precision import INT8_MIN_WEIGHTS, quantized_linears
from fidan.model.gpt import GPT, config_from_preset
from fidan.runtime.device import set_threads

GREEDY = Sampling(temperature=0.0)
VOCAB = 64


def sequences(n: int, length: int, seed: int) -> torch.Tensor:
    """Learnable text: each row counts up by a row-specific step (mod VOCAB) from a random start."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    step = torch.randint(1, 4, (n, 1), generator=g)
    return (start + step * torch.arange(length)) % VOCAB


@pytest.fixture(scope="module", params=["ders", "hizli"])
def trained(request) -> GPT:
    """A tiny model trained for a few seconds, so that its predictions are sharp, not uniform."""
    torch.manual_seed(0)
    cfg = config_from_preset(request.param, VOCAB, n_layer=2, n_embd=64, n_head=2, block_size=32, dropout=0.0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for i in range(120):
        x = sequences(16, 33, seed=i)
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def held_out_loss(model: torch.nn.Module, hf: bool = False) -> float:
    x = sequences(32, 33, seed=10_000)
    with torch.inference_mode():
        logits = model(input_ids=x[:, :-1]).logits if hf else model(x[:, :-1])[0]
    return F.cross_entropy(logits.float().reshape(-1, VOCAB), x[:, 1:].reshape(-1)).item()


def greedy(model: torch.nn.Module, n: int = 12) -> list[list[int]]:
    prompts = sequences(4, 6, seed=77).tolist()
    return [c.tokens for c in Engine(model).generate(prompts, n, GREEDY)]


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precision_stays_close_to_fp32(trained, precision):
    base_loss, base_text = held_out_loss(trained), greedy(trained)
    assert base_loss < 1.0  # the model has learned the sequences
    low = apply_precision(copy.deepcopy(trained), precision, min_int8_weights=0)  # every Linear, even tiny ones
    assert abs(held_out_loss(low) - base_loss) <= 0.05 * base_loss + 0.02
    same = sum(a == b for ra, rb in zip(greedy(low), base_text, strict=True) for a, b in zip(ra, rb, strict=True))
    assert same >= 0.9 * sum(map(len, base_text))


def test_int8_replaces_the_linear_layers_and_bf16_casts(trained):
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in trained.modules())
    q = apply_precision(copy.deepcopy(trained), "int8", min_int8_weights=0)
    assert quantized_linears(q) == n_linear > 0
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    assert quantized_linears(trained) == 0  # the original is untouched
    # By default only layers of at least INT8_MIN_WEIGHTS weights: here the output head alone.
    wide = GPT(config_from_preset("ders", INT8_MIN_WEIGHTS // 64, n_layer=1, n_embd=64, n_head=2, block_size=16))
    q = apply_precision(wide, "int8")
    assert quantized_linears(q) == 1 and quantized_linears(q.lm_head) == 1
    b = apply_precision(copy.deepcopy(trained), "bf16")
    assert {p.dtype for p in b.parameters()} == {torch.bfloat16}
    assert apply_precision(trained, "fp32") is trained


def test_transformers_models_take_the_same_precisions(trained):
    hf = to_transformers(trained, eos_id=0)  # GPT-2 (Conv1D projections) for ders, Qwen3 for hizli
    base = held_out_loss(hf, hf=True)
    q = apply_precision(copy.deepcopy(hf), "int8", min_int8_weights=0)
    assert not any(type(m).__name__ == "Conv1D" for m in q.modules())
    assert quantized_linears(q) >= 1 + 4 * trained.config.n_layer  # head, attention and MLP projections
    assert abs(held_out_loss(q, hf=True) - base) <= 0.05 * base + 0.02
    b = apply_precision(copy.deepcopy(hf), "bf16")
    assert abs(held_out_loss(b, hf=True) - base) <= 0.05 * base + 0.02
    # The engine drives the quantized transformers model as it drives fidan's: nearly the fp32 greedy text.
    low, full = greedy(q), greedy(hf)
    same = sum(a == b for ra, rb in zip(low, full, strict=True) for a, b in zip(ra, rb, strict=True))
    assert same >= 0.9 * sum(map(len, full))


def test_bad_values_are_refused():
    with pytest.raises(BadInput, match="unknown --precision 'fp8'; choose one of auto, fp32, bf16, int8"):
        apply_precision(torch.nn.Linear(2, 2), "fp8")
    with pytest.raises(BadInput, match="load the model in fp32"):
        apply_precision(torch.nn.Linear(2, 2).to(torch.bfloat16), "int8")
    with pytest.raises(BadInput, match="--threads"):
        set_threads(-1)
    before = torch.get_num_threads()
    assert set_threads(None) == before and set_threads(0) == before


@pytest.mark.parametrize("command", [["generate", "--prompt", "a"], ["chat"], ["eval bpb", "--text", "notes.txt"]])
def test_cli_bad_precision_is_one_line_exit_2(command, tmp_path, capsys):
    name, *rest = command
    code = main([*name.split(), "--model", str(tmp_path / "missing"), *rest, "--precision", "fp8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--precision: invalid choice: 'fp8' (choose from 'auto', 'fp32', 'bf16', 'int8')" in err


def test_generate_and_eval_bpb_run_in_int8(tmp_path, data_dir, tokenizer_dir, capsys):
    from fidan.evaluation.bpb import eval_bpb
    from fidan.inference.generate import generate
    from fidan.training.pretrain import pretrain

    run = tmp_path / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=20, batch_size=4,
             block_size=32, depth=1, eval_every=20, eval_windows=2, lr=3e-3, quiet=True, precision="fp32")
    texts = {p: generate(model=str(run), prompt="Ankara", max_new_tokens=6, temperature=0, stream=False,
                         precision=p, threads=1) for p in ("fp32", "int8", "bf16")}
    assert all(t[0].startswith("Ankara") for t in texts.values())
    scores = {p: eval_bpb(model=str(run), text=str(data_dir), out=str(tmp_path / f"{p}.json"), precision=p,
                          block_size=32, batch_size=4)["bpb"] for p in ("fp32", "int8")}
    assert abs(scores["int8"] - scores["fp32"]) <= 0.05 * scores["fp32"]
