"""QLoRA on the CPU: a transformers base loaded with 4-bit NF4 linear layers (bitsandbytes), LoRA adapters
trained over it, saved merged and as a peft adapter folder, resumed exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from fidan.artifacts.loader import load
from fidan.artifacts.runs import read_metrics
from fidan.errors import FidanError
from fidan.training.pretrain import pretrain
from fidan.training.sft import sft

pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

BLOCK_LINEARS = 7  # q, k, v, o, gate, up, down in each Qwen3 layer
COMMON = dict(max_steps=4, eval_every=2, checkpoint_every=2, batch_size=4, block_size=32, eval_windows=2, seed=3,
              warmup_steps=1, quiet=True)


def losses(run) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run) if r["kind"] == "train"}


def test_four_bit_loading_gives_linear4bit_layers(hf_qwen_dir):
    loaded = load(hf_qwen_dir, four_bit=True)
    names = {type(m).__name__ for n, m in loaded.model.net.named_modules() if n.endswith(("q_proj", "down_proj"))}
    assert names == {"Linear4bit"}
    summary = loaded.describe()["four_bit_layers"]
    assert summary["layers"] == 2 * BLOCK_LINEARS
    assert 0.5 <= summary["bytes_per_weight"] < 0.6  # NF4: half a byte per weight, plus the (quantized) scales
    full = load(hf_qwen_dir)
    assert loaded.describe()["weight_bytes"] < 0.7 * full.describe()["weight_bytes"]
    assert loaded.model.net.get_input_embeddings().weight.dtype == torch.bfloat16  # the checkpoint's own


def test_qlora_pretrain_trains_adapters_over_a_4bit_base(tmp_path, hf_qwen_dir, data_dir):
    run = tmp_path / "q"
    summary = pretrain(init=str(hf_qwen_dir), data=str(data_dir), out=str(run), lora_r=4, qlora=True, **COMMON)
    assert summary["step"] == 4
    config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    base = config["base"]
    assert base["four_bit"] is True and base["dtype"] == "bfloat16"
    assert base["four_bit_layers"]["layers"] == 2 * BLOCK_LINEARS
    assert 0.5 <= base["four_bit_layers"]["bytes_per_weight"] < 0.6
    assert config["train"]["precision"] == "bf16"  # auto: a 4-bit base computes in bf16
    trained = losses(run)
    assert trained[4] < trained[1]
    # The run folder: a merged, ordinary transformers model and the unmerged peft adapter folder.
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(run), local_files_only=True).eval()
    assert not any(type(m).__name__ == "Linear4bit" for m in merged.modules())
    assert "quantization_config" not in (run / "config.json").read_text(encoding="utf-8")
    assert (run / "adapter" / "adapter_config.json").exists()
    # peft loads the adapter folder as it is, over the 4-bit base; fidan's loader gives the same logits.
    from peft import PeftModel

    base4 = load(hf_qwen_dir, four_bit=True).model.net
    peft_model = PeftModel.from_pretrained(base4, str(run / "adapter")).eval()
    ours = load(run / "adapter", four_bit=True)
    assert ours.adapter is not None and any("lora_" in n for n, _ in ours.model.named_parameters())
    x = torch.randint(0, 400, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = peft_model(input_ids=x).logits.float()
        b = ours.model(x)[0].float()
        with peft_model.disable_adapter():
            before = peft_model(input_ids=x).logits.float()
        c = merged(input_ids=x).logits.float()
    assert torch.allclose(a, b, atol=2e-2)  # the same adapters over the same 4-bit base (bf16 rounding apart)
    assert (a - before).abs().max() > 1e-2  # the adapters learned something
    assert (c - a).abs().max() < 0.25 * (a - before).abs().max() + 5e-2  # merged ≈ adapted, not the base
    from fidan.reporting.report import report

    text = report(str(run)).read_text(encoding="utf-8")
    assert "14 linear layers in 4-bit NF4" in text and "unmerged in `adapter/`" in text


def test_qlora_resume_is_exact(tmp_path, hf_qwen_dir, data_dir):
    args = dict(init=str(hf_qwen_dir), data=str(data_dir), lora_r=4, qlora=True, **COMMON)
    pretrain(out=str(tmp_path / "whole"), **args)
    pretrain(out=str(tmp_path / "cut"), until_step=2, **args)
    assert (tmp_path / "cut" / "checkpoints" / "step-000002" / "adapter" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "cut" / "checkpoints" / "step-000002" / "model.safetensors").exists()  # no base copy
    pretrain(out=str(tmp_path / "cut"), resume=True, **args)
    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")


def test_qlora_sft_and_chat_with_the_adapter_folder(tmp_path, hf_qwen_dir):
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(f'{{"instruction": "Başkent neresi {i}?", "output": "Ankara {i}."}}\n'
                            for i in range(40)), encoding="utf-8")
    run = tmp_path / "chat"
    sft(model=str(hf_qwen_dir), data=str(data), out=str(run), lora_r=4, qlora=True, max_steps=3, eval_every=3,
        quiet=True)
    assert (run / "adapter" / "new_rows.safetensors").exists()  # the chat markers' trained rows
    proc = subprocess.run([sys.executable, "-m", "fidan", "generate", "--model", str(run / "adapter"), "--prompt",
                           "Başkent", "--max-new-tokens", "4", "--seed", "1", "--no-stream"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("Başkent")


def test_qlora_refuses_what_it_cannot_do(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "fidan-base"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=2, block_size=32,
             eval_every=10, quiet=True)
    with pytest.raises(FidanError, match=r"/fidan-base is a fidan run: 4-bit loading \(--qlora\) takes a "
                                         r"transformers model; export it"):
        pretrain(init=str(run), data=str(data_dir), out=str(tmp_path / "x"), lora_r=4, qlora=True, max_steps=2,
                 quiet=True)
    with pytest.raises(FidanError, match="--qlora trains LoRA adapters over a 4-bit base: pass --lora-r too"):
        pretrain(init=str(run), data=str(data_dir), out=str(tmp_path / "y"), qlora=True, max_steps=2, quiet=True)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_qlora_classifier_over_a_causal_lm_resumes_exactly_and_saves_merged(tmp_path, hf_qwen_dir):
    """User story 5 at small scale: a causal LM in 4 bits with adapters and a pooled head."""
    import json

    from fidan.classify.predict import Predictor
    from fidan.classify.train import classify_train

    rows = [{"text": f"{'Takım maçı kazandı' if i % 2 else 'Annem çorba pişirdi'} {i}.",
             "label": "spor" if i % 2 else "yemek"} for i in range(80)]
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    common = dict(data=str(data), model=str(hf_qwen_dir), lora_r=4, qlora=True, max_steps=4, batch_size=4,
                  max_length=16, eval_every=2, checkpoint_every=2, warmup_steps=1, pooling="last", quiet=True,
                  baseline=False, patience=0)
    classify_train(out=str(tmp_path / "whole"), **common)
    classify_train(out=str(tmp_path / "cut"), until_step=2, **common)
    ckpt = tmp_path / "cut" / "checkpoints" / "step-000002"
    assert (ckpt / "trained.safetensors").exists() and not (ckpt / "model.safetensors").exists()
    classify_train(out=str(tmp_path / "cut"), resume=True, **common)
    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")
    config = yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text(encoding="utf-8"))
    assert config["train"]["precision"] == "bf16"
    spec = json.loads((tmp_path / "whole" / "classifier.json").read_text(encoding="utf-8"))
    assert spec["four_bit"] is False  # saved merged: an ordinary classifier
    probs = Predictor(tmp_path / "whole", device="cpu").probs(["Takım maçı kazandı 7."])
    assert probs.shape == (1, 2)


def test_adamw8bit_keeps_8bit_moments_and_resumes_exactly(tmp_path, data_dir, tokenizer_dir):
    """--optimizer adamw8bit: bitsandbytes' AdamW with blockwise 8-bit moments (tensors of 4096 weights or more),
    saved in checkpoints and resumed exactly."""
    common = dict(data=str(data_dir), tokenizer=str(tokenizer_dir), preset="hizli", block_size=32, max_steps=4,
                  batch_size=4, eval_every=10, checkpoint_every=2, warmup_steps=1, optimizer="adamw8bit",
                  precision="fp32", quiet=True)
    pretrain(out=str(tmp_path / "whole"), **common)
    pretrain(out=str(tmp_path / "cut"), until_step=2, **common)
    pretrain(out=str(tmp_path / "cut"), resume=True, **common)
    assert losses(tmp_path / "whole") == losses(tmp_path / "cut")
    state = torch.load(tmp_path / "whole" / "checkpoints" / "step-000004" / "state.pt", weights_only=True)
    packed = [s.get("__bnb_optimizer_quant_state__", s) for s in state["optimizer"]["state"].values()]
    moments = [v for s in packed for k, v in s.items() if k in ("state1", "state2")]
    assert moments and any(m.dtype == torch.uint8 for m in moments)
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text(encoding="utf-8"))["train"]["optimizer"] \
        == "adamw8bit"
