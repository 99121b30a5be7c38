"""Evaluation: bits per byte with a sliding window, multiple choice by likelihood, fixed-seed samples.

Scores are checked against a direct computation on the same tiny model (fidan and a tiny HF GPT-2 built
here), and the multiple-choice accounting by construction: a model that prefers the right answers gets
100%, one that prefers wrong answers 0%, and chance is the mean of 1 / number of choices.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from fidan.artifacts.runs import copy_tokenizer, save_weights
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.cli import main
from fidan.errors import FidanError
from fidan.evaluation.bpb import eval_bpb, sliding_windows
from fidan.evaluation.harmony import forms, harmony_items
from fidan.evaluation.lm import LanguageModel, load_lm
from fidan.evaluation.mc import choice_logprobs, continuation_ids, eval_mc, mc_accuracy
from fidan.evaluation.samples import eval_samples
from fidan.model.gpt import GPT, GPTConfig

TEXT = ("Ankara'da kış soğuk geçer; İzmir'de ise hava ılıktır. Öğretmenler çocuklara ılık süt ve çörek ikram "
        "ettiler. Çiftçiler tarlalarını sürdü, buğday ektiler ve yağmuru beklediler.")



@pytest.fixture(scope="module")
def fidan_run(tmp_path_factory, tokenizer_dir):
    """A run folder holding a tiny random fidan GPT (block 16) and its tokenizer."""
    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    run = tmp_path_factory.mktemp("evalrun") / "run"
    save_weights(model, run)
    copy_tokenizer(tok, run)
    return run


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, tokenizer_dir):
    """A tiny GPT-2 made from a config and saved locally with the fidan tokenizer (no hub)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    net = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                     bos_token_id=tok.eos_id, eos_token_id=tok.eos_id))
    out = tmp_path_factory.mktemp("hf") / "gpt2"
    net.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy2(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, tokenizer_dir):
    """A tiny Llama (rotary positions, BOS first) saved locally with the fidan tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    net = LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                       max_position_embeddings=24, bos_token_id=tok.eos_id, eos_token_id=tok.eos_id))
    out = tmp_path_factory.mktemp("llama") / "llama"
    net.save_pretrained(out)
    for f in tokenizer_dir.iterdir():
        shutil.copy2(f, out / f.name)
    return out


def direct_nats(lm: LanguageModel, ids: list[int], context: int) -> float:
    """Σ -log p(ids[t] | ids[max(0, t - context):t]) for t >= 1, one forward pass per token."""
    total = 0.0
    for t in range(1, len(ids)):
        x = torch.tensor([ids[max(0, t - context):t]])
        logp = torch.log_softmax(lm.logits(x)[0, -1].float(), -1)
        total -= float(logp[ids[t]])
    return total


@pytest.mark.parametrize("block,stride", [(8, 8), (8, 3), (8, 1), (5, 4)])
def test_sliding_windows_score_every_token_once_with_context(block, stride):
    ids = list(range(1, 40))
    pieces = [ids[i:i + 7] for i in range(0, len(ids), 7)]  # arrives in pieces, as a streamed file does
    seen = []
    for x, y, first in sliding_windows(iter(pieces), 0, block, stride):
        assert len(x) == len(y) <= block
        stream = [0] + ids
        start = stream.index(x[0])
        assert x == stream[start:start + len(x)] and y == stream[start + 1:start + 1 + len(y)]
        for pos in range(first, len(y)):
            seen.append(y[pos])
            if start > 0:  # after the first window, every token keeps block - stride tokens of context
                assert pos + 1 >= block - stride
    assert seen == ids


def test_bpb_matches_a_direct_computation(fidan_run, tmp_path, tokenizer_dir):
    lm = load_lm(str(fidan_run))
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    ids = [lm.start_id] + lm.encode(TEXT)
    assert len(ids) > 3 * lm.block_size  # long enough that the window must slide
    direct_bpb = {}
    for stride in (1, 6, 16):
        r = eval_bpb(model=str(fidan_run), text=str(text), stride=stride, out=str(tmp_path / f"r{stride}.json"))
        # Each token t is scored once, in the window that ends where it was first reached: that window's
        # start is its context start. A causal model scores a whole window in one pass.
        expected = 0.0
        done = 1
        while done < len(ids):
            end = min(max(done + stride, lm.block_size + 1), len(ids))
            s = max(0, end - lm.block_size - 1)
            logp = torch.log_softmax(lm.logits(torch.tensor([ids[s:end - 1]]))[0].float(), -1)
            expected -= sum(float(logp[t - s - 1, ids[t]]) for t in range(done, end))
            done = end
        assert r["tokens"] == len(ids) - 1
        assert r["bytes"] == len(TEXT.encode("utf-8"))
        assert r["bpb"] == pytest.approx(expected / math.log(2) / r["bytes"], rel=1e-4)
        assert r["perplexity"] == pytest.approx(math.exp(expected / r["tokens"]), rel=1e-4)
        if stride == 1:  # the densest window gives every token its full block of context, one pass per token
            assert expected == pytest.approx(direct_nats(lm, ids, lm.block_size), rel=1e-4)
        direct_bpb[stride] = expected / math.log(2) / len(TEXT.encode("utf-8"))
    # The strides' figures lie several tolerances (1e-4) apart, so a file of the wrong stride would fail.
    assert abs(direct_bpb[1] - direct_bpb[16]) > 5e-4 * direct_bpb[1]
    for stride, want in direct_bpb.items():  # the saved file holds its own stride's figure
        saved = json.loads((tmp_path / f"r{stride}.json").read_text(encoding="utf-8"))
        assert saved["bpb"] == pytest.approx(want, rel=1e-4) and saved["stride"] == stride
    assert saved["environment"]["torch"] == torch.__version__


def test_bpb_reads_jsonl_documents_and_data_folders(fidan_run, tmp_path, data_dir):
    docs = ["Evlerimizden çıkıp yürüdük.", "Ankara'da kış soğuk geçer."]
    jl = tmp_path / "d.jsonl"
    jl.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    r = eval_bpb(model=str(fidan_run), text=str(jl))
    lm = load_lm(str(fidan_run))
    expected = sum(direct_nats(lm, [lm.start_id] + lm.encode(d), lm.block_size) for d in docs)
    assert r["documents"] == 2 and r["bytes"] == sum(len(d.encode()) for d in docs)
    assert r["bpb"] == pytest.approx(expected / math.log(2) / r["bytes"], rel=1e-4)
    assert (fidan_run / "eval" / "bpb-d.json").exists()
    # The one document rule: a .txt file's paragraphs are its documents, here the same two as above.
    txt = tmp_path / "d.txt"
    txt.write_text(f"{docs[0]}\n\n{docs[1]}\n", encoding="utf-8")
    t = eval_bpb(model=str(fidan_run), text=str(txt), out=str(tmp_path / "txt.json"))
    assert t["documents"] == 2 and t["bpb"] == pytest.approx(r["bpb"], rel=1e-9)
    val = eval_bpb(model=str(fidan_run), text=str(data_dir), out=str(tmp_path / "val.json"))
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert val["bytes"] == manifest["splits"]["val"]["bytes"] and val["split"] == "val"


def test_bpb_bad_input_is_one_clear_line(fidan_run, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Ağaç".encode("cp1254"))
    assert main(["eval", "bpb", "--model", str(fidan_run), "--text", str(bad), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fidan: error:") and err.count("\n") == 1 and "UTF-8" in err and "iconv" in err
    assert main(["eval", "bpb", "--model", str(tmp_path / "none"), "--text", str(bad)]) == 2
    assert "model not found" in capsys.readouterr().err
    good = tmp_path / "ok.txt"
    good.write_text("Merhaba dünya.", encoding="utf-8")
    args = ["eval", "bpb", "--model", str(fidan_run), "--text", str(good), "--out", str(tmp_path / "ok.json")]
    assert main(args) == 0
    assert main(args) == 2  # the result exists: never overwritten without --force
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_harmony_forms_follow_turkish_rules():
    right = {("ev", "lArDA"): "evlerde", ("kitap", "DA"): "kitapta", ("kuş", "DAn"): "kuştan",
             ("göz", "lI"): "gözlü", ("su", "sIz"): "susuz", ("ışık", "lI"): "ışıklı", ("okul", "lAr"): "okullar",
             ("ağaç", "DA"): "ağaçta", ("köy", "DAn"): "köyden", ("süt", "sIz"): "sütsüz", ("kız", "lArDA"): "kızlarda"}
    for (word, suffix), form in right.items():
        got, options = forms(word, suffix)
        assert got == form and options[0] == form
        assert len(options) == len(set(options)) == (4 if "I" in suffix else 2)
    assert forms("ev", "lArDA")[1] == ["evlerde", "evlarda"]
    assert sorted(forms("göz", "sIz")[1]) == sorted(["gözsüz", "gözsız", "gözsiz", "gözsuz"])
    items = harmony_items()
    assert len(items) >= 200 and all(it["choices"][it["answer"]].strip() == forms(*it["id"].split("+"))[0] for it in items)
    assert len({it["answer"] for it in items}) == 4  # the right answer is not always in the same place


class Oracle(torch.nn.Module):
    """Logits that know a set of token sequences: high for any token that continues one of them."""

    def __init__(self, sequences: list[list[int]], vocab: int, prefer: bool = True):
        super().__init__()
        self.sequences, self.vocab, self.prefer = sequences, vocab, prefer

    def forward(self, x):
        logits = torch.full((*x.shape, self.vocab), -30.0 if self.prefer else 0.0)
        for b in range(x.shape[0]):
            row = x[b].tolist()
            for t in range(len(row)):
                for seq in self.sequences:
                    if seq[:t + 1] == row[:t + 1] and len(seq) > t + 1:
                        logits[b, t, seq[t + 1]] = 0.0 if self.prefer else -30.0
        return logits, None


def oracle_lm(lm: LanguageModel, items: list[dict], prefer: bool) -> LanguageModel:
    seqs = []
    for it in items:
        ctx, cont = continuation_ids(lm, it["context"], it["choices"][it["answer"]])
        seqs.append([lm.start_id] + ctx + cont)
    return LanguageModel("fidan", lm.path, Oracle(seqs, lm.net.config.vocab_size, prefer), lm.encode, lm.decode,
                         lm.start_id, lm.stop_ids, 64, "cpu")


def test_mc_construction_checks(fidan_run, tmp_path):
    items = harmony_items()[::5]  # mixed 2- and 4-way items
    mc = tmp_path / "harmony.jsonl"
    mc.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items), encoding="utf-8")
    lm = load_lm(str(fidan_run))
    chance = sum(1 / len(it["choices"]) for it in items) / len(items)
    assert 0.25 < chance < 0.5
    good = mc_accuracy(items, choice_logprobs(oracle_lm(lm, items, True), items))
    assert good["accuracy"] == good["accuracy_norm"] == 1.0 and good["chance"] == pytest.approx(chance)
    bad = mc_accuracy(items, choice_logprobs(oracle_lm(lm, items, False), items))
    assert bad["accuracy"] == bad["accuracy_norm"] == 0.0
    # The real model on the same file, through the command line, with the same accounting.
    assert main(["eval", "mc", "--model", str(fidan_run), "--data", str(mc)]) == 0
    r = json.loads((fidan_run / "eval" / "mc-harmony.json").read_text(encoding="utf-8"))
    assert r["items"] == len(items) and r["chance"] == pytest.approx(chance)
    preds = r["predictions"]
    assert r["accuracy"] == pytest.approx(sum(p["pred"] == p["answer"] for p in preds) / len(items))
    assert all(p["logprobs"][p["pred"]] == max(p["logprobs"]) for p in preds)


def test_mc_scores_equal_a_direct_computation(fidan_run, hf_dir, llama_dir):
    items = [{"context": "Çocuklar bahçede", "choices": [" oynuyor", " oynuyorlar.", " uyudu"], "answer": 1},
             {"context": "", "choices": ["Evlerde", "Evlarda"], "answer": 0}]
    for model in (fidan_run, hf_dir, llama_dir):
        lm = load_lm(str(model))
        assert lm.block_size == {fidan_run: 16, hf_dir: 32, llama_dir: 24}[model]
        scores = choice_logprobs(lm, items, batch_size=2)  # batches mix lengths: padding must not matter
        for it, row in zip(items, scores, strict=True):
            for choice, got in zip(it["choices"], row, strict=True):
                ctx, cont = continuation_ids(lm, it["context"], choice)
                ids = ([lm.start_id] + ctx + cont)[-(lm.block_size + 1):]  # a long context loses its start
                x = torch.tensor([ids[:-1]])
                logp = torch.log_softmax(lm.logits(x)[0].float(), -1)
                want = sum(float(logp[t - 1, ids[t]]) for t in range(len(ids) - len(cont), len(ids)))
                assert got == pytest.approx(want, abs=1e-4)
                assert lm.decode(cont) == choice


def test_hf_model_through_every_task(hf_dir, tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    r = eval_bpb(model=str(hf_dir), text=str(text), block_size=16, stride=8, out=str(tmp_path / "b.json"))
    lm = load_lm(str(hf_dir), block_size=16)
    assert lm.kind == "hf" and r["model_kind"] == "hf" and r["tokens"] == len(lm.encode(TEXT))
    m = eval_mc(model=str(hf_dir), data="tr-harmony", out=str(tmp_path / "m.json"))
    preds = m["predictions"]
    assert m["items"] == len(harmony_items()) == len(preds)
    assert m["accuracy"] == pytest.approx(sum(p["pred"] == p["answer"] for p in preds) / len(preds))
    assert all(p["logprobs"][p["pred"]] == max(p["logprobs"]) for p in preds)
    assert len({round(v, 4) for p in preds for v in p["logprobs"]}) > len(preds)  # the model scored each choice
    with pytest.raises(FidanError, match="block size|context length"):
        load_lm(str(hf_dir), block_size=1000)
    s1 = eval_samples(model=str(hf_dir), prompt=["Ankara"], max_new_tokens=8, out=str(tmp_path / "s1.json"))
    s2 = eval_samples(model=str(hf_dir), prompt=["Ankara"], max_new_tokens=8, out=str(tmp_path / "s2.json"))
    assert s1["samples"] == s2["samples"] and s1["samples"][0]["text"].startswith("Ankara")


def test_hf_bits_per_byte_equal_a_direct_computation(hf_dir, tmp_path):
    """Summed cross-entropy of the HF model itself (its own tokenizer and forward pass, no fidan code) on a
    text that fits one window: bits per byte must agree to 1e-4."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    short = "Ankara'da kış soğuk geçer."
    text = tmp_path / "short.txt"
    text.write_text(short, encoding="utf-8")
    r = eval_bpb(model=str(hf_dir), text=str(text), out=str(tmp_path / "b.json"))
    tok = AutoTokenizer.from_pretrained(hf_dir)
    net = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    ids = [net.config.bos_token_id] + tok(short, add_special_tokens=False)["input_ids"]
    assert len(ids) <= net.config.n_positions  # one window: every token sees all before it
    with torch.no_grad():
        logits = net(torch.tensor([ids])).logits[0, :-1].float()
    nats = float(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum"))
    assert r["tokens"] == len(ids) - 1 and r["bytes"] == len(short.encode("utf-8"))
    assert r["bpb"] == pytest.approx(nats / math.log(2) / len(short.encode("utf-8")), abs=1e-4)
    assert r["perplexity"] == pytest.approx(math.exp(nats / (len(ids) - 1)), rel=1e-4)


def test_samples_are_fixed_by_seed_and_match_generate(fidan_run, tmp_path):
    from fidan.inference.generate import generate

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Türkiye\nBilim ve sanat\n\n", encoding="utf-8")
    r = eval_samples(model=str(fidan_run), prompts=str(prompts), seed=7, max_new_tokens=12, quiet=True)
    assert [s["prompt"] for s in r["samples"]] == ["Türkiye", "Bilim ve sanat"]
    assert [s["seed"] for s in r["samples"]] == [7, 8]
    for s in r["samples"]:
        want = generate(model=str(fidan_run), prompt=s["prompt"], max_new_tokens=12, temperature=0.8, top_k=50,
                        top_p=0.95, seed=s["seed"], stream=False)[0]
        assert s["text"] == want
    again = eval_samples(model=str(fidan_run), prompts=str(prompts), seed=7, max_new_tokens=12, quiet=True, force=True)
    assert again["samples"] == r["samples"]
    assert main(["eval", "samples", "--model", str(fidan_run)]) == 2  # no prompts: one clear line


def test_bpb_without_a_start_token_scores_from_the_second_token(fidan_run):
    from dataclasses import replace

    from fidan.evaluation.bpb import score_text

    lm = replace(load_lm(str(fidan_run)), start_id=None)
    ids = lm.encode(TEXT)
    s = score_text(lm, iter([iter([TEXT])]), stride=1, batch_size=4)
    assert s["tokens"] == len(ids) - 1  # the first token is context only ...
    assert s["bytes"] == len(TEXT.encode("utf-8")) - len(lm.decode(ids[:1]).encode("utf-8"))  # ... and not counted
    assert s["nats"] == pytest.approx(direct_nats(lm, ids, lm.block_size), rel=1e-4)
