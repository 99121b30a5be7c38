"""Adapting a transformers model: vocabulary extension as BPE merges, embedding initialisation,
continued pretraining (only the new rows, then everything) and tuning, on tiny models built here."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

from fidan.adapt.extend import extend_vocab
from fidan.adapt.vocab import extend_tokenizer, learn_extension
from fidan.artifacts.datadir import iter_split
from fidan.cli import main as cli
from fidan.errors import FidanError

transformers = pytest.importorskip("transformers")


def tiny_hf(folder, tokenizer_dir, vocab: int, tie: bool = True):
    cfg = transformers.Qwen3Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                   max_position_embeddings=64, tie_word_embeddings=tie)
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(cfg).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokenizer_dir / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer_dir):
    vocab = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).get_vocab_size()
    return tiny_hf(tmp_path_factory.mktemp("hf") / "base", tokenizer_dir, vocab, tie=False)


def test_new_merges_shorten_text_and_round_trip(tokenizer_dir, data_dir):
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    train, val = list(iter_split(data_dir, "train")), list(iter_split(data_dir, "val"))
    ext = learn_extension(tok, train, 40)
    assert len(ext.new_tokens) == 40
    new, ids = extend_tokenizer(tok, ext)
    assert ids == list(range(tok.get_vocab_size(), tok.get_vocab_size() + 40))  # after every existing id
    for token, i in zip(ext.new_tokens, ids, strict=True):
        assert new.token_to_id(token.token) == i
        assert new.decode(token.pieces) == new.decode([i])  # a new token is exactly the pieces it replaces
    before = sum(len(tok.encode(t).ids) for t in val)
    after = sum(len(new.encode(t).ids) for t in val)
    assert after < 0.95 * before  # the merges fire on held-out text, not only where they were learned
    for text in val + ["Çok güzel! İyi günler, 2024.", "ğüşiöç ĞÜŞİÖÇ  \n\t emoji 🙂"]:
        assert new.decode(new.encode(text).ids) == text
    # text the data never showed keeps the base segmentation
    odd = "xqzw"
    assert new.encode(odd).ids == tok.encode(odd).ids


def test_special_tokens_after_the_vocabulary_keep_their_ids(tokenizer_dir, data_dir, tmp_path):
    from fidan.artifacts.tokenizer import add_special_tokens

    add_special_tokens(tokenizer_dir, tmp_path / "tok", ["<A>", "<B>", "<C>"])  # appended, as Qwen's are
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    special = {t: tok.token_to_id(t) for t in ("<A>", "<B>", "<C>")}
    new, ids = extend_tokenizer(tok, learn_extension(tok, iter_split(data_dir, "train"), 20))
    assert {t: new.token_to_id(t) for t in special} == special
    assert min(ids) > max(special.values())
    text = "<A> Türkiye Cumhuriyeti <C>"
    assert new.decode(new.encode(text).ids, skip_special_tokens=False) == text
    for text in iter_split(data_dir, "val"):
        assert new.decode(new.encode(text).ids) == text and not set(new.encode(text).ids) & set(special.values())


def test_extend_writes_a_model_with_initialised_rows(base, data_dir, tmp_path):
    out = tmp_path / "ext"
    record = extend_vocab(base=str(base), data=str(data_dir), add=30, out=str(out), quiet=True)
    assert (out / "extension.json").exists() and (out / "tokenizer.json").exists()
    held = record["held_out"]
    assert held["tokens_after"] < held["tokens_before"]
    assert set(held["bpb"]) == {"base", "subtoken-mean", "mean", "random"}
    old, new = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    rows = old["model.embed_tokens.weight"].size(0)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):  # untied: both matrices grow
        assert new[name].size(0) == rows + 30
        assert torch.equal(new[name][:rows], old[name])  # old rows untouched
        for entry in record["new_tokens"][:5]:
            assert torch.allclose(new[name][entry["id"]], old[name][entry["pieces"]].mean(0), atol=1e-6)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    text = next(iter(iter_split(data_dir, "val")))
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == Tokenizer.from_file(
        str(out / "tokenizer.json")).encode(text).ids
    model = transformers.AutoModelForCausalLM.from_pretrained(str(out))
    assert model.get_input_embeddings().weight.size(0) == rows + 30


def test_extend_refuses_bad_input_and_leaves_nothing(base, data_dir, tmp_path, tokenizer_dir, capsys):
    out = tmp_path / "ext"
    with pytest.raises(FidanError, match="supplies only"):
        extend_vocab(base=str(base), data=str(data_dir), add=100_000, out=str(out), quiet=True)
    assert not out.exists()
    small = tiny_hf(tmp_path / "small", tokenizer_dir, vocab=100)  # the tokenizer has more tokens than rows
    with pytest.raises(FidanError, match="embedding rows"):
        extend_vocab(base=str(small), data=str(data_dir), add=5, out=str(out), quiet=True)
    encoder = tmp_path / "encoder"
    transformers.BertModel(transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, intermediate_size=32)).save_pretrained(str(encoder))
    shutil.copy2(tokenizer_dir / "tokenizer.json", encoder / "tokenizer.json")
    code = cli(["vocab", "extend", "--base", str(encoder), "--data", str(data_dir), "--add", "5", "--out", str(out)])
    assert code == 2 and "not a causal language model" in capsys.readouterr().err
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FidanError, match="already exists"):
        extend_vocab(base=str(base), data=str(data_dir), add=5, out=str(out), quiet=True)
    assert (out / "keep.txt").read_text() == "mine"


def test_continued_pretraining_of_new_rows_then_everything(base, data_dir, tmp_path):
    from fidan.training.pretrain import pretrain

    ext = tmp_path / "ext"
    record = extend_vocab(base=str(base), data=str(data_dir), add=20, out=str(ext), compare=False, quiet=True)
    common = dict(data=str(data_dir), max_steps=6, batch_size=2, block_size=32, eval_every=3, quiet=True,
                  lr=1e-2, warmup_steps=1)
    pretrain(init=str(ext), out=str(tmp_path / "phase1"), only_new_embeddings=True, **common)
    before, after = load_file(str(ext / "model.safetensors")), load_file(str(tmp_path / "phase1" / "model.safetensors"))
    new_ids = torch.tensor(record["new_ids"])
    old_ids = torch.ones(before["lm_head.weight"].size(0), dtype=torch.bool)
    old_ids[new_ids] = False
    for name, w in before.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(after[name][old_ids], w[old_ids])  # old rows exactly where they were
            assert not torch.equal(after[name][new_ids], w[new_ids])  # new rows trained
        else:
            assert torch.equal(after[name], w), name  # everything else frozen
    # phase two: everything trains, from phase one's folder (a transformers folder with its tokenizer)
    pretrain(init=str(tmp_path / "phase1"), out=str(tmp_path / "phase2"), **common)
    final = load_file(str(tmp_path / "phase2" / "model.safetensors"))
    assert not torch.equal(final["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "phase2"))
    assert model.config.vocab_size == before["lm_head.weight"].size(0)
    from fidan.reporting.report import report

    text = report(str(tmp_path / "phase2")).read_text(encoding="utf-8")
    assert "## Vocabulary extension" in text and "fewer tokens" in text and "transformers qwen3" in text


def test_continued_pretraining_of_a_transformers_model_resumes_exactly(base, data_dir, tmp_path):
    from fidan.training.pretrain import pretrain

    common = dict(data=str(data_dir), init=str(base), max_steps=8, batch_size=2, block_size=32, eval_every=4,
                  checkpoint_every=2, quiet=True)
    pretrain(out=str(tmp_path / "a"), **common)
    pretrain(out=str(tmp_path / "b"), until_step=4, **common)
    pretrain(out=str(tmp_path / "b"), resume=True, **common)

    def losses(run):
        return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r.get("kind") == "train"]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_only_new_embeddings_needs_an_extended_model(base, data_dir, tmp_path):
    from fidan.training.pretrain import pretrain

    with pytest.raises(FidanError, match="extension.json"):
        pretrain(data=str(data_dir), init=str(base), out=str(tmp_path / "r"), only_new_embeddings=True,
                 max_steps=2, batch_size=2, block_size=32, quiet=True)
    with pytest.raises(FidanError, match="--tokenizer"):
        pretrain(data=str(data_dir), out=str(tmp_path / "r2"), max_steps=2, quiet=True)


def test_lora_tuning_of_a_transformers_model(base, tmp_path, capsys):
    from fidan.training.sft import sft

    data = tmp_path / "chat.jsonl"
    rows = [{"instruction": f"Soru {i}: {w} nedir?", "output": f"{w} güzel bir kelimedir."}
            for i, w in enumerate(["kitap", "ağaç", "deniz", "güneş", "çiçek", "ev"] * 6)]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    common = dict(model=str(base), data=str(data), max_steps=6, batch_size=2, eval_every=3, checkpoint_every=3,
                  lora_r=2, lora_alpha=4, quiet=True)
    sft(out=str(tmp_path / "a"), **common)
    sft(out=str(tmp_path / "b"), until_step=3, **common)
    sft(out=str(tmp_path / "b"), resume=True, **common)

    def losses(run):
        return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r.get("kind") == "train"]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")  # exact resume with adapters
    merged = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert not any("lora" in k for k in merged)  # saved merged: an ordinary transformers model
    original = load_file(str(base / "model.safetensors"))
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           original["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(merged["model.norm.weight"], original["model.norm.weight"])  # not a LoRA target
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "a"))
    assert model.get_input_embeddings().weight.size(0) == original["model.embed_tokens.weight"].size(0) + 6

    assert cli(["sft", "--model", str(base), "--data", str(data), "--out", str(tmp_path / "t"), "--lora-r", "4",
                "--lora-targets", "nope"]) == 2
    assert "match no linear layer" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # nothing written


@pytest.mark.parametrize("kind", ["qwen3", "gpt2"])
def test_packed_rows_of_a_transformers_model_equal_separate_examples(kind):
    from fidan.model.hf import HFCausalLM

    torch.manual_seed(0)
    if kind == "qwen3":
        net = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
            vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=64))
    else:
        net = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=2,
                                                                   n_positions=64, bos_token_id=0, eos_token_id=0))
    model = HFCausalLM(net.eval())
    x, y = torch.randint(0, 50, (1, 20)), torch.randint(0, 50, (1, 20))
    doc = torch.tensor([[0] * 8 + [1] * 12])
    packed = model(x, y, reduction="none", doc_ids=doc)[1].view(1, 20)
    alone = torch.cat([model(x[:, :8], y[:, :8], reduction="none")[1], model(x[:, 8:], y[:, 8:], reduction="none")[1]])
    assert torch.allclose(packed.view(-1), alone, atol=1e-5)
    full = model(x, y)[1]  # the chunked training loss equals the plain one
    assert torch.allclose(model(x, y, return_logits=False)[1], full, atol=1e-5)
