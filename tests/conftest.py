"""Shared fixtures: a tiny Turkish corpus, data folder and tokenizer built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# No tqdm monitor thread: several tests fork, and a child forked while that thread holds tqdm's lock
# would wait for it forever at its first progress bar.
import tqdm  # noqa: E402

tqdm.tqdm.monitor_interval = 0



@pytest.fixture(autouse=True)
def one_thread():
    """Tiny test models run fastest on one thread, and a busy machine cannot stall a second one. Set again
    for every test: a command run in the test process (`--threads 2` in a page of the docs) must not leave
    torch's thread pool wider for later tests, whose forked children would hang in it."""
    import torch

    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


TURKISH_LINES = [
    "Türkiye Cumhuriyeti 1923 yılında kuruldu ve başkenti Ankara oldu.",
    "Evlerimizden çıkıp İstanbul'un güzel sokaklarında yürüdük.",
    "Öğretmenler çocuklara ılık süt ve çörek ikram ettiler.",
    "Ağaçların gölgesinde oturan yaşlı adam gazetesini okuyordu.",
    "Bilim ve sanat bir milletin en büyük hazinesidir, dedi konuşmacı.",
    "Ankara'da kış soğuk geçer; İzmir'de ise hava ılıktır.",
    "Kütüphanedeki kitapların çoğu Osmanlıca ve Türkçe yazılmıştı.",
    "Çiftçiler tarlalarını sürdü, buğday ektiler ve yağmuru beklediler.",
]


def make_docs(n: int = 240) -> list[str]:
    """Distinct little documents (so deduplication keeps them) from the lines above."""
    docs = []
    for i in range(n):
        a, b, c = (TURKISH_LINES[(i * k) % len(TURKISH_LINES)] for k in (1, 3, 5))
        docs.append(f"{a} {b} {c} Belge numarası {i}.")
    return docs


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    import json

    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in make_docs()), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, corpus_file):
    from fidan.corpus.prepare import prepare_data

    out = tmp_path_factory.mktemp("data") / "d"
    prepare_data(source=[str(corpus_file)], out=str(out), val_fraction=0.2, near_dup=0)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, data_dir):
    from fidan.tokenizer.train import train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "t"
    train_tokenizer(data=str(data_dir), out=str(out), vocab_size=400)
    return out


@pytest.fixture(scope="session")
def hf_llama(tmp_path_factory):
    """A tiny random Llama (grouped-query attention), saved and loaded back as transformers does."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    net = LlamaForCausalLM(LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                       bos_token_id=1, eos_token_id=2))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.2)
    out = tmp_path_factory.mktemp("hf") / "llama"
    net.save_pretrained(out)
    return AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True).eval()


def write_hf_causal_lm(out, tokenizer_dir, *, vocab: int = 416, tied: bool = True, dtype: str = "bfloat16",
                       shard: str | None = "200KB", seed: int = 0, layers: int = 2):
    """A tiny random Qwen3 folder as a hub checkpoint looks: grouped-query attention, embedding rows padded
    past the tokenizer (416 > 400), weights in ``dtype``, sharded safetensors with their index, and the
    tokenizer files (fidan's test tokenizer, end-of-text as BOS, EOS and padding)."""
    import json
    import shutil

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                      tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    net = Qwen3ForCausalLM(cfg).to(getattr(torch, dtype))
    net.save_pretrained(str(out), max_shard_size=shard) if shard else net.save_pretrained(str(out))
    shutil.copy2(tokenizer_dir / "tokenizer.json", out / "tokenizer.json")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
              "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 128}
    source = tokenizer_dir / "tokenizer_config.json"
    if source.exists() and "chat_template" in json.loads(source.read_text(encoding="utf-8")):
        config["chat_template"] = json.loads(source.read_text(encoding="utf-8"))["chat_template"]
    (out / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def hf_qwen_dir(tmp_path_factory, tokenizer_dir):
    """A bf16, sharded, tied-embedding Qwen3 stand-in with fidan's test tokenizer (see write_hf_causal_lm)."""
    return write_hf_causal_lm(tmp_path_factory.mktemp("hfq") / "qwen3", tokenizer_dir)
