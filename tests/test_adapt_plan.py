"""`fidan adapt plan`: memory by method from a model's config alone (its figures against measured peaks are
benchmarks/adapt_memory.py's; here, what each choice changes)."""

from __future__ import annotations

import json

import pytest

from fidan.adapt.plan import METHODS, model_shape, plan_memory
from fidan.cli import main as cli


def test_the_shape_is_counted_from_the_config(hf_qwen_dir):
    from fidan.artifacts.loader import load

    shape = model_shape(str(hf_qwen_dir))
    net = load(hf_qwen_dir).model.net
    assert shape.parameters == sum(p.numel() for p in net.parameters())
    assert shape.block_linear == sum(m.weight.numel() for n, m in net.named_modules()
                                     if n.startswith("model.layers.") and type(m).__name__ == "Linear")
    assert shape.embedding == net.get_input_embeddings().weight.numel()  # tied: the head is the same matrix
    assert (shape.layers, shape.width, shape.mlp_width, shape.vocab, shape.dtype) == (2, 64, 128, 416, "bf16")


def test_each_choice_moves_the_figure_it_should(hf_qwen_dir):
    plan = {m: plan_memory(str(hf_qwen_dir), seq=256, batch=2, method=m) for m in METHODS}
    assert plan["qlora"]["weights"] < plan["lora"]["weights"] < plan["full"]["weights"]
    assert plan["full"]["optimizer_state"] == 8 * plan["full"]["trained_weights"]
    eight = plan_memory(str(hf_qwen_dir), seq=256, batch=2, method="full", optimizer="adamw8bit")
    assert eight["optimizer_state"] == 2 * eight["trained_weights"]
    ckpt = plan_memory(str(hf_qwen_dir), seq=256, batch=2, method="lora", checkpointing=True)
    assert ckpt["activations"] < plan["lora"]["activations"]
    longer = plan_memory(str(hf_qwen_dir), seq=512, batch=2, method="lora")
    assert longer["activations"] == 2 * plan["lora"]["activations"]
    on_cpu = plan_memory(str(hf_qwen_dir), seq=256, batch=2, method="full", optimizer="adamw8bit", device="cpu")
    assert on_cpu["optimizer_state"] > eight["optimizer_state"]  # bitsandbytes' CPU step holds fp32 temporaries
    fp32 = plan_memory(str(hf_qwen_dir), seq=256, batch=2, method="lora", load_dtype="fp32")
    assert fp32["weights"] > plan["lora"]["weights"]  # the checkpoint is bf16: auto loads it so


def test_the_command_prints_every_method_and_what_fits(hf_qwen_dir, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert cli(["adapt", "plan", "--model", str(hf_qwen_dir), "--seq", "128", "--gpu-gb", "24", "--json-out",
                str(out)]) == 0
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert {r["method"] for r in rows} == set(METHODS) and all(r["fits"] for r in rows)
    assert "qlora" in capsys.readouterr().out
    assert cli(["adapt", "plan", "--model", str(hf_qwen_dir), "--seq", "128", "--gpu-gb", "0.001", "--json-out",
                str(out)]) == 0
    assert not any(r["fits"] for r in json.loads(out.read_text(encoding="utf-8")))
    assert cli(["adapt", "plan", "--model", str(hf_qwen_dir), "--seq", "0"]) == 2


@pytest.mark.parametrize("name", ["fidan"])
def test_a_fidan_run_is_planned_too(name, tmp_path, data_dir, tokenizer_dir):
    from fidan.training.pretrain import pretrain

    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(tmp_path / "r"), max_steps=1, block_size=32,
             eval_every=10, quiet=True)
    shape = model_shape(str(tmp_path / "r"))
    assert shape.dtype == "fp32" and shape.layers >= 1 and shape.vocab == 400
