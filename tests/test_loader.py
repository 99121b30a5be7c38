"""The one model loader: run folders, transformers folders (sharded, GQA, tied or untied, padded rows), hub
names from the local cache, LoRA adapter folders; load precision; tokenizers whose ids do not fit."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import write_hf_causal_lm

from fidan.artifacts.loader import load, locate
from fidan.cli import main as cli
from fidan.errors import BadInput, FidanError
from fidan.training.pretrain import pretrain


def fake_hub_cache(home, name: str, folder) -> None:
    """``folder`` as huggingface_hub keeps a downloaded model: models--org--name/{refs/main, snapshots/REV/}."""
    repo = home / "hub" / ("models--" + name.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd", encoding="utf-8")
    shutil.copytree(folder, repo / "snapshots" / "0123abcd")


def ids(n: int = 12) -> torch.Tensor:
    return torch.randint(0, 400, (2, n), generator=torch.Generator().manual_seed(0))


def test_a_sharded_gqa_checkpoint_loads_in_its_own_dtype_with_transformers_logits(hf_qwen_dir):
    from transformers import AutoModelForCausalLM

    assert (hf_qwen_dir / "model.safetensors.index.json").exists()  # sharded, as large checkpoints are
    loaded = load(hf_qwen_dir)
    assert loaded.kind == "hf" and loaded.dtype == torch.bfloat16  # auto: the checkpoint's own
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    theirs = AutoModelForCausalLM.from_pretrained(str(hf_qwen_dir), local_files_only=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(ids())[0], theirs(input_ids=ids()).logits)
    fp32 = load(hf_qwen_dir, dtype="fp32")
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    assert fp32.describe()["weight_bytes"] == pytest.approx(2 * loaded.describe()["weight_bytes"], rel=1e-3)
    assert loaded.model.config.vocab_size == 416 and loaded.tok.vocab_size == 400  # padded rows past the tokenizer


def test_an_untied_fp32_checkpoint(tmp_path, tokenizer_dir):
    from transformers import AutoModelForCausalLM

    folder = write_hf_causal_lm(tmp_path / "untied", tokenizer_dir, tied=False, dtype="float32", shard=None)
    loaded = load(folder)
    net = loaded.model.net
    assert loaded.dtype == torch.float32
    assert net.get_output_embeddings().weight.data_ptr() != net.get_input_embeddings().weight.data_ptr()
    theirs = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        assert torch.equal(loaded.model(ids())[0], theirs(input_ids=ids()).logits)
    half = load(folder, dtype="bf16")
    assert half.dtype == torch.bfloat16
    assert half.describe()["weight_bytes"] * 2 == pytest.approx(loaded.describe()["weight_bytes"], rel=1e-3)


def test_a_hub_name_resolves_through_the_local_cache(tmp_path, hf_qwen_dir, monkeypatch, capsys):
    fake_hub_cache(tmp_path / "hf-home", "fidan-test/tiny-qwen3", hf_qwen_dir)
    fake_hub_cache(tmp_path / "hf-home", "tiny-qwen3-bare", hf_qwen_dir)  # a bare name, as bert-base-multilingual-cased
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = locate("fidan-test/tiny-qwen3")
    assert source.kind == "hf" and source.hub == "fidan-test/tiny-qwen3" and source.folder.name == "0123abcd"
    loaded = load("fidan-test/tiny-qwen3")
    assert loaded.describe()["source"] == "fidan-test/tiny-qwen3"
    assert locate("tiny-qwen3-bare").hub == "tiny-qwen3-bare"
    assert cli(["generate", "--model", "fidan-test/tiny-qwen3", "--prompt", "Ankara", "--max-new-tokens", "3",
                "--no-stream"]) == 0
    assert capsys.readouterr().out.startswith("Ankara")
    # not cached, offline: one line that says where it looked and how to fetch it
    with pytest.raises(BadInput, match=r"^fidan-test/absent: no such folder, and the model is not in the Hugging "
                                       r"Face cache \(.*hf-home/hub\); HF_HUB_OFFLINE is set, so nothing is fetched: "
                                       r"fetch it where a hub is reachable \(`hf download fidan-test/absent`"):
        locate("fidan-test/absent")
    assert cli(["generate", "--model", "fidan-test/absent"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hf download fidan-test/absent" in err
    # a missing local folder that cannot be a hub name is named as such
    with pytest.raises(BadInput, match="model not found: ./runs/none"):
        locate("./runs/none")


def test_adapter_folders_name_their_base(tmp_path, hf_qwen_dir):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}), encoding="utf-8")
    with pytest.raises(BadInput, match="names no base model"):
        locate(folder)


def test_init_with_a_tokenizer_that_does_not_fit_is_refused(tmp_path, data_dir, tokenizer_dir, corpus_file, capsys):
    from fidan.tokenizer.train import train_tokenizer

    base = tmp_path / "base"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(base), max_steps=2, block_size=32,
             eval_every=10, quiet=True)
    smaller = tmp_path / "small-tok"
    train_tokenizer(data=str(data_dir), out=str(smaller), vocab_size=300)
    capsys.readouterr()
    assert cli(["pretrain", "--init", str(base), "--tokenizer", str(smaller), "--data", str(data_dir), "--out",
                str(tmp_path / "a"), "--max-steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "has a vocabulary of" in err and err.count("\n") == 1, err
    # the same size, other ids (another pre-tokenizer, so other merges): the model would read wrong ids
    foreign = tmp_path / "foreign-tok"
    train_tokenizer(data=str(data_dir), out=str(foreign), vocab_size=400, pretokenizer="bytelevel")
    with pytest.raises(FidanError, match=r"does not give the tokens of .* own tokenizer the same ids"):
        pretrain(init=str(base), tokenizer=str(foreign), data=str(data_dir), out=str(tmp_path / "b"), max_steps=2,
                 quiet=True)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_half_precision_bases_and_fp32_compute_do_not_mix(tmp_path, hf_qwen_dir, data_dir):
    with pytest.raises(FidanError, match=r"the base is loaded in bf16 .* use --precision bf16 or auto, or "
                                         r"--load-dtype fp32"):
        pretrain(init=str(hf_qwen_dir), data=str(data_dir), out=str(tmp_path / "a"), precision="fp32", max_steps=2,
                 quiet=True)
    with pytest.raises(FidanError, match="--load-dtype and --trust-remote-code apply to a base model"):
        pretrain(tokenizer="x", data=str(data_dir), out=str(tmp_path / "b"), load_dtype="bf16", quiet=True)


def test_full_tuning_of_a_bf16_loaded_base_matches_fp32_loading(tmp_path, tokenizer_dir, data_dir):
    """Trained weights are fp32 master weights whatever the load dtype: within 5% of the fp32-loaded run's
    held-out loss (the bf16 run starts from the bf16-rounded weights, the rest is the same)."""
    import yaml

    base = write_hf_causal_lm(tmp_path / "base", tokenizer_dir, dtype="float32", shard=None)
    common = dict(init=str(base), data=str(data_dir), block_size=32, max_steps=12, batch_size=4, eval_every=12,
                  eval_windows=8, lr=3e-3, warmup_steps=2, precision="bf16", quiet=True, seed=3)
    a = pretrain(out=str(tmp_path / "fp32"), load_dtype="fp32", **common)
    b = pretrain(out=str(tmp_path / "bf16"), load_dtype="bf16", **common)
    from fidan.artifacts.runs import read_metrics

    trained = [r["loss"] for r in read_metrics(tmp_path / "bf16") if r["kind"] == "train"]
    assert trained[-1] < 0.9 * trained[0]  # it learned
    assert abs(b["val_loss"] - a["val_loss"]) <= 0.05 * a["val_loss"]
    config = yaml.safe_load((tmp_path / "bf16" / "config.yaml").read_text(encoding="utf-8"))
    assert config["base"]["dtype"] == "bfloat16" and config["base"]["load_dtype"] == "bf16"
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}  # the trained weights, kept in fp32


CUSTOM_CONFIG = """from transformers import LlamaConfig


class TinyCustomConfig(LlamaConfig):
    model_type = "fidan_tiny_custom"
"""
CUSTOM_MODEL = """from transformers import LlamaForCausalLM

from .configuration_tiny import TinyCustomConfig


class TinyCustomForCausalLM(LlamaForCausalLM):
    config_class = TinyCustomConfig
"""


def test_remote_code_runs_only_with_the_flag(tmp_path, tokenizer_dir, data_dir, monkeypatch):
    """A model whose folder brings its own Python code: refused with one line, loaded with --trust-remote-code."""
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    folder = tmp_path / "custom"
    net = LlamaForCausalLM(LlamaConfig(vocab_size=416, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
    net.save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(model_type="fidan_tiny_custom", architectures=["TinyCustomForCausalLM"],
                  auto_map={"AutoConfig": "configuration_tiny.TinyCustomConfig",
                            "AutoModelForCausalLM": "modeling_tiny.TinyCustomForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "configuration_tiny.py").write_text(CUSTOM_CONFIG, encoding="utf-8")
    (folder / "modeling_tiny.py").write_text(CUSTOM_MODEL, encoding="utf-8")
    shutil.copy2(tokenizer_dir / "tokenizer.json", folder / "tokenizer.json")
    with pytest.raises(FidanError, match="is not a transformers model folder"):
        load(folder)
    loaded = load(folder, trust_remote_code=True)
    assert type(loaded.model.net).__name__ == "TinyCustomForCausalLM"
    summary = pretrain(init=str(folder), data=str(data_dir), out=str(tmp_path / "run"), trust_remote_code=True,
                       block_size=32, max_steps=1, eval_every=10, batch_size=2, quiet=True)
    assert summary["step"] == 1
