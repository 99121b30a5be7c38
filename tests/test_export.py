"""`fidan export hf`: every preset exports to a standard transformers architecture with equal logits."""

from __future__ import annotations

import pytest
import torch

from fidan.adapt.export import architecture, export_hf
from fidan.artifacts.runs import copy_tokenizer, save_weights
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.cli import main as cli
from fidan.errors import FidanError
from fidan.model.gpt import GPT, GPTConfig, config_from_preset

transformers = pytest.importorskip("transformers")

TEXT = "Türkiye Cumhuriyeti 1923 yılında kuruldu; İstanbul'un güzel sokaklarında yürüdük."


def make_run(folder, tokenizer_dir, cfg: GPTConfig):
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():  # away from the initialisation (zero-init projections would hide mapping bugs)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_weights(model, folder)
    copy_tokenizer(load_tokenizer(tokenizer_dir), folder)
    return model.eval()


def configs(vocab: int) -> dict[str, GPTConfig]:
    small = dict(n_layer=2, n_embd=64, n_head=2, block_size=64)
    return {
        "ders": config_from_preset("ders", vocab, **small),
        "hizli": config_from_preset("hizli", vocab, **small),
        "qwen3": config_from_preset("qwen3", vocab, **small),
        "llama": GPTConfig(vocab_size=vocab, **small, bias=False, pos_emb="rope", norm="rmsnorm", mlp="swiglu"),
        "llama-bias-relu2": GPTConfig(vocab_size=vocab, **small, pos_emb="rope", norm="rmsnorm", mlp="relu2"),
        "gpt2-tied-relu2": GPTConfig(vocab_size=vocab, **small, bias=False, mlp="relu2", tie_embeddings=True),
    }


@pytest.mark.parametrize("name", ["ders", "hizli", "qwen3", "llama", "llama-bias-relu2", "gpt2-tied-relu2"])
def test_export_gives_equal_logits(name, tokenizer_dir, tmp_path):
    vocab = load_tokenizer(tokenizer_dir).vocab_size
    cfg = configs(vocab)[name]
    model = make_run(tmp_path / "run", tokenizer_dir, cfg)
    export_hf(model=str(tmp_path / "run"), out=str(tmp_path / "hf"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert type(hf).__name__ == architecture(cfg)
    x = torch.randint(0, vocab, (2, cfg.block_size))
    with torch.no_grad():
        diff = (hf(x).logits - model(x)[0]).abs().max().item()
    assert diff <= 1e-4, diff
    assert hf.config.tie_word_embeddings == cfg.tie_embeddings
    shared = hf.get_output_embeddings().weight.data_ptr() == hf.get_input_embeddings().weight.data_ptr()
    assert shared == cfg.tie_embeddings  # an untied head stays its own matrix after loading
    assert hf.config.bos_token_id == hf.config.eos_token_id == hf.config.pad_token_id == model_eos(tokenizer_dir)
    written = {p.name for p in (tmp_path / "hf").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json", "README.md"} <= written


def model_eos(tokenizer_dir) -> int:
    return load_tokenizer(tokenizer_dir).eos_id


def test_exported_folder_works_with_transformers_and_fidan(tokenizer_dir, data_dir, tmp_path):
    from fidan.evaluation.bpb import eval_bpb

    vocab = load_tokenizer(tokenizer_dir).vocab_size
    make_run(tmp_path / "run", tokenizer_dir, configs(vocab)["hizli"])
    export_hf(model=str(tmp_path / "run"), out=str(tmp_path / "hf"))
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert hf_tok(TEXT, add_special_tokens=False)["input_ids"] == load_tokenizer(tokenizer_dir).encode(TEXT)
    assert hf_tok.eos_token == "<|endoftext|>"
    out = transformers.pipeline("text-generation", model=str(tmp_path / "hf"))("Türkiye", max_new_tokens=5,
                                                                             do_sample=False)
    assert out[0]["generated_text"].startswith("Türkiye")
    ours = eval_bpb(model=str(tmp_path / "run"), text=str(data_dir), split="val", out=str(tmp_path / "a.json"))
    theirs = eval_bpb(model=str(tmp_path / "hf"), text=str(data_dir), split="val", out=str(tmp_path / "b.json"))
    assert abs(ours["bpb"] - theirs["bpb"]) <= 1e-4


def test_exported_tokenizer_keeps_the_chat_template(tokenizer_dir, tmp_path):
    from fidan.artifacts.tokenizer import add_special_tokens
    from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, encode_chat

    chat_tok = add_special_tokens(tokenizer_dir, tmp_path / "chat-tok", CHAT_TOKENS, CHAT_TEMPLATE)
    cfg = GPTConfig(vocab_size=chat_tok.vocab_size, n_layer=1, n_embd=32, n_head=2, block_size=32, bias=False,
                    pos_emb="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True, tie_embeddings=True)
    make_run(tmp_path / "run", tmp_path / "chat-tok", cfg)
    export_hf(model=str(tmp_path / "run"), out=str(tmp_path / "hf"))
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    messages = [{"role": "system", "content": "Kısa yanıt ver."}, {"role": "user", "content": "Başkent neresi?"},
                {"role": "assistant", "content": "Ankara."}, {"role": "user", "content": "Peki en büyük şehir?"}]
    ids = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(ids) == encode_chat(chat_tok, messages, add_generation_prompt=True)[0]



def test_an_exported_chat_model_stops_at_the_end_of_its_answer_in_transformers(tokenizer_dir, tmp_path):
    """generate() and pipeline() stop at </RESP> (every end token is in generation_config.json), and the
    tokenizer's model_max_length is the model's block, so a pipeline never indexes past the window."""
    from fidan.artifacts.tokenizer import add_special_tokens
    from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, RESP_END

    chat_tok = add_special_tokens(tokenizer_dir, tmp_path / "chat-tok", CHAT_TOKENS, CHAT_TEMPLATE)
    cfg = GPTConfig(vocab_size=chat_tok.vocab_size, n_layer=1, n_embd=32, n_head=2, block_size=32)
    make_run(tmp_path / "run", tmp_path / "chat-tok", cfg)
    export_hf(model=str(tmp_path / "run"), out=str(tmp_path / "hf"))
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert hf_tok.model_max_length == 32
    end = chat_tok.tokenizer.token_to_id(RESP_END)
    net = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert set(net.generation_config.eos_token_id) == {chat_tok.eos_id, end}
    with torch.no_grad():  # rig the model: every position's hidden state is v, and </RESP>'s row is 10 v
        v = torch.randn(32, generator=torch.Generator().manual_seed(0))
        net.transformer.ln_f.weight.zero_()
        net.transformer.ln_f.bias.copy_(v)
        net.get_output_embeddings().weight[end] = 10 * v
    prompt = hf_tok.apply_chat_template([{"role": "user", "content": "Başkent neresi?"}], add_generation_prompt=True,
                                        tokenize=True, return_dict=True, return_tensors="pt")
    out = net.generate(**prompt, max_new_tokens=10, do_sample=False)
    assert out[0, prompt["input_ids"].size(1):].tolist() == [end]  # one token, the end of the answer, then stop
    pipe = transformers.pipeline("text-generation", model=net, tokenizer=hf_tok)
    text = pipe("<INST>Başkent neresi?</INST><RESP>", max_new_tokens=10, do_sample=False,
                return_full_text=False)[0]["generated_text"]
    assert text in ("", RESP_END)  # stopped at once, whether or not the pipeline shows the end token

def test_export_in_half_precision(tokenizer_dir, tmp_path):
    vocab = load_tokenizer(tokenizer_dir).vocab_size
    model = make_run(tmp_path / "run", tokenizer_dir, configs(vocab)["ders"])
    result = export_hf(model=str(tmp_path / "run"), out=str(tmp_path / "hf"), dtype="bf16")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    assert result["dtype"] == "bf16" and hf.dtype == torch.bfloat16
    x = torch.randint(0, vocab, (1, 32))
    with torch.no_grad():
        ours, theirs = model(x)[0], hf(x).logits.float()
    assert (ours - theirs).abs().max().item() < 0.1 * ours.abs().max().item()  # rounded, not remapped


def test_export_refuses_bad_input(tokenizer_dir, tmp_path, capsys):
    vocab = load_tokenizer(tokenizer_dir).vocab_size
    assert cli(["export", "hf", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "hf")]) == 2
    make_run(tmp_path / "run", tokenizer_dir, configs(vocab)["ders"])
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("mine")
    assert cli(["export", "hf", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "hf" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["keep.txt"]
    assert cli(["export", "hf", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "hf"), "--force"]) == 0
    assert not (tmp_path / "hf" / "keep.txt").exists() and (tmp_path / "hf" / "model.safetensors").exists()
    assert cli(["export", "hf", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "run"), "--force"]) == 2
    assert "would replace the run" in capsys.readouterr().err and (tmp_path / "run" / "config.json").exists()
    assert cli(["export", "hf", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "x"), "--dtype", "int8"]) == 2
    assert "--dtype" in capsys.readouterr().err and not (tmp_path / "x").exists()
    odd = GPTConfig(vocab_size=vocab, n_layer=1, n_embd=32, n_head=2, block_size=16, pos_emb="rope", norm="rmsnorm")
    make_run(tmp_path / "odd", tokenizer_dir, odd)  # rotary positions with a GELU MLP: no exact equivalent
    assert cli(["export", "hf", "--model", str(tmp_path / "odd"), "--out", str(tmp_path / "odd-hf")]) == 2
    assert "mlp=gelu" in capsys.readouterr().err and not (tmp_path / "odd-hf").exists()
    with pytest.raises(FidanError, match="layernorm"):
        architecture(GPTConfig(vocab_size=10, n_layer=1, n_embd=8, n_head=2, pos_emb="rope", mlp="swiglu"))


def test_an_export_keeps_its_training_record_and_lora_tunes_at_its_rate(tokenizer_dir, tmp_path):
    """The run's config.yaml travels with the export, so `fidan sft --lora-r` on the transformers folder tunes
    at the run's own rate (2x its pretraining rate, x2.5 for LoRA), not at the rate for unknown models."""
    import yaml

    from fidan.artifacts.runs import EXPORTED_RECORD
    from fidan.training.sft import FALLBACK_LR, LORA_LR_SCALE, LORA_LR_SCALE_RECORDED, TUNE_LR_SCALE, sft

    vocab = load_tokenizer(tokenizer_dir).vocab_size
    make_run(tmp_path / "run", tokenizer_dir, configs(vocab)["ders"])
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({"stage": "pretrain", "train": {
        "lr": 3e-3, "optimizer": "adamw"}}), encoding="utf-8")
    export_hf(model=str(tmp_path / "run"), out=str(tmp_path / "hf"))
    assert (tmp_path / "hf" / EXPORTED_RECORD).read_text() == (tmp_path / "run" / "config.yaml").read_text()
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(f'{{"instruction": "Başkent neresi {i}?", "output": "Ankara {i}."}}\n'
                            for i in range(20)), encoding="utf-8")
    sft(model=str(tmp_path / "hf"), data=str(data), out=str(tmp_path / "tuned"), lora_r=2, max_steps=1,
        eval_every=1, batch_size=2, precision="fp32", quiet=True)
    lr = yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text())["train"]["lr"]
    assert lr == pytest.approx(3e-3 * TUNE_LR_SCALE * LORA_LR_SCALE_RECORDED)
    assert lr != pytest.approx(FALLBACK_LR * LORA_LR_SCALE)
