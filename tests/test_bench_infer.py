"""`fidan bench infer` on a tiny run: every configuration measured, ratios positive, files and report written."""

from __future__ import annotations

import json

import pytest

from fidan.bench.infer import bench_infer
from fidan.cli import main
from fidan.errors import FidanError
from fidan.reporting.report import report
from fidan.training.pretrain import pretrain


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, tokenizer_dir):
    out = tmp_path_factory.mktemp("infer") / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(out), max_steps=2, batch_size=2, block_size=32,
             depth=1, eval_every=2, eval_windows=2, quiet=True, precision="fp32", peak_gflops=100.0)
    return out


def test_bench_infer_measures_every_configuration(run, capsys):
    r = bench_infer(model=str(run), precision=["fp32", "int8"], batch=[1, 2], prompt_tokens=[4, 64], new_tokens=4,
                    rounds=1, warmup=0, threads=1)
    saved = json.loads((run / "bench-infer" / "infer.json").read_text())
    assert saved == json.loads(json.dumps(r))
    assert r["prompt_tokens"] == [4, 28]  # 64 is capped so that 4 new tokens fit in the block of 32
    configs = {(x["precision"], x["batch"], x["prompt_tokens"]) for x in r["results"]}
    assert configs == {(p, b, n) for p in ("fp32", "int8") for b in (1, 2) for n in (4, 28)}
    for row in r["results"]:
        assert set(row["contestants"]) == {"fidan", "generate", "pipeline"}
        for timing in row["contestants"].values():
            assert timing["decode_tok_s"] > 0 and timing["ttft_ms"] > 0 and timing["per_token_ms"] > 0
        expected = {"fidan/generate", "fidan/pipeline"} | ({"int8/fp32"} if row["precision"] == "int8" else set())
        assert set(row["ratios"]) == expected and all(v["median"] > 0 for v in row["ratios"].values())
        if row["precision"] == "fp32":
            assert row["same_greedy_tokens"] == 1.0  # the export is exact: transformers picks the same tokens
    assert r["load"]["fidan_s"] > 0 and r["memory"]["peak_rss_mb"] > 50
    assert (run / "bench-infer" / "decode.png").stat().st_size > 1000
    assert "fidan ÷ generate()" in (run / "bench-infer" / "infer.md").read_text()
    assert "fidan ÷ generate()" in capsys.readouterr().out
    with pytest.raises(FidanError, match="already exists"):
        bench_infer(model=str(run), precision=["fp32"], batch=[1], prompt_tokens=[4], new_tokens=2, rounds=1,
                    warmup=0, transformers=False)

    text = report(str(run)).read_text()
    assert "## Inference speed" in text and "bench-infer/decode.png" in text and "| int8 | 2 | 28 |" in text


def test_bench_infer_bad_input_is_one_line(run, capsys):
    assert main(["bench", "infer", "--model", str(run), "--precision", "fp8"]) == 2
    assert "unknown --precision 'fp8'" in capsys.readouterr().err
    assert main(["bench", "infer", "--model", str(run), "--new-tokens", "32", "--out", str(run / "x")]) == 2
    assert "no room for a prompt" in capsys.readouterr().err


def _save(net, folder, tokenizer_dir=None, tok=None, pad: bool = True):
    """``net`` saved with a tokenizer: fidan's test tokenizer (end-of-text for padding, or no padding token,
    as GPT-2's own tokenizer has none) or ``tok``."""
    import shutil

    net.save_pretrained(str(folder))
    if tok is not None:
        tok.save_pretrained(str(folder))
        return folder
    shutil.copy2(tokenizer_dir / "tokenizer.json", folder / "tokenizer.json")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, **({"pad_token": "<|endoftext|>"} if pad else {})}))
    return folder


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory, tokenizer_dir):
    """Tiny random GPT-2, BERT (with its own WordPiece tokenizer) and T5 folders."""
    import torch
    import transformers

    from fidan.bench.infer import PROMPT_TEXT

    root = tmp_path_factory.mktemp("hf-infer")
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=400, n_embd=32, n_layer=2, n_head=2,
                                                                n_positions=64, bos_token_id=0, eos_token_id=0))
    t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=400, d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=0))
    words = sorted({w.strip(".,;") for w in PROMPT_TEXT.lower().split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", ";", *words]
    bert_tok = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, strip_accents=False)
    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=64))
    return {"gpt2": _save(gpt2, root / "gpt2", tokenizer_dir, pad=False), "t5": _save(t5, root / "t5", tokenizer_dir),
            "bert": _save(bert, root / "bert", tok=bert_tok),
            "gpt2_parameters": sum(p.numel() for p in gpt2.parameters())}


FAST = ["--rounds", "1", "--warmup", "0", "--threads", "1", "--new-tokens", "4"]


def _bench(folder, out, *options) -> dict:
    assert main(["bench", "infer", "--model", str(folder), "--out", str(out), *FAST, *options]) == 0
    return json.loads((out / "infer.json").read_text())


def test_a_transformers_causal_lm_is_measured_like_a_run(hf_models, tmp_path):
    r = _bench(hf_models["gpt2"], tmp_path, "--precision", "fp32", "--precision", "int8", "--batch", "2",
               "--prompt-tokens", "8", "--prompt-tokens", "100")
    assert (r["family"], r["contestants"], r["parameters"]) == ("causal", ["fidan", "generate", "pipeline"],
                                                                 hf_models["gpt2_parameters"])
    assert r["prompt_tokens"] == [8, 60]  # 100 is capped so that 4 new tokens fit in GPT-2's 64 positions
    assert set(r["load"]) == {"model_fp32_s", "model_int8_s"}  # loaded by the loader, once per precision
    for row in r["results"]:
        for timing in row["contestants"].values():
            assert timing["new_tokens"] == 2 * 4 and timing["decode_tok_s"] > 0
            assert timing["prefill_tok_s"] * timing["ttft_ms"] / 1e3 == pytest.approx(2 * row["prompt_tokens"])
        assert row["same_greedy_tokens"] == 1.0  # fidan's engine and generate() run on the same weights
        assert set(row["ratios"]) == {"fidan/generate", "fidan/pipeline"} | (
            {"int8/fp32"} if row["precision"] == "int8" else set())
    assert "| int8 | 2 | 60 |" in (tmp_path / "infer.md").read_text()


def test_an_encoder_decoder_generates_through_generate(hf_models, tmp_path):
    r = _bench(hf_models["t5"], tmp_path, "--precision", "fp32", "--batch", "1", "--batch", "3",
               "--prompt-tokens", "8")
    assert (r["family"], r["contestants"], r["prompt_tokens"]) == ("seq2seq", ["generate"], [8])
    assert [(row["batch"], row["contestants"]["generate"]["new_tokens"]) for row in r["results"]] == [(1, 4), (3, 12)]
    assert "generate() prefill tok/s" in (tmp_path / "infer.md").read_text()


def test_an_encoder_is_measured_for_classification_throughput(hf_models, tmp_path):
    r = _bench(hf_models["bert"], tmp_path, "--precision", "fp32", "--precision", "bf16", "--batch", "1",
               "--batch", "3", "--prompt-tokens", "6", "--prompt-tokens", "100")
    assert (r["family"], r["task"], r["architecture"]) == ("encoder", "classification", "BertForSequenceClassification")
    assert r["prompt_tokens"] == [6, 64]  # capped at BERT's 64 positions
    assert {(x["precision"], x["batch"], x["prompt_tokens"]) for x in r["results"]} == \
        {(p, b, n) for p in ("fp32", "bf16") for b in (1, 3) for n in (6, 64)}
    for row in r["results"]:
        t = row["timing"]
        assert t["tokens"] == row["batch"] * row["prompt_tokens"]  # counted from the mask: every text is full
        assert t["texts_s"] * t["latency_ms"] / 1e3 == pytest.approx(row["batch"])
        assert t["tok_s"] == pytest.approx(t["texts_s"] * row["prompt_tokens"])
        assert set(row["ratios"]) == ({"bf16/fp32"} if row["precision"] == "bf16" else set())
    md = (tmp_path / "infer.md").read_text()
    assert "| bf16 | 3 | 64 |" in md and "texts/s" in md and (tmp_path / "texts.png").stat().st_size > 1000


def test_the_gpu_peak_is_reset_before_each_measured_run_and_reported(hf_models, tmp_path, monkeypatch):
    """The CUDA memory path with torch.cuda faked: a reset before every run, the peak after it, in the table."""
    import torch

    from fidan.runtime import perf

    calls = []
    monkeypatch.setattr(perf, "is_cuda", lambda device: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 2**20 * (10 + len(calls)))
    r = _bench(hf_models["bert"], tmp_path, "--precision", "fp32", "--batch", "1", "--batch", "2",
               "--prompt-tokens", "6", "--rounds", "2", "--warmup", "1")
    assert len(calls) == 2 * 3  # two configurations, three runs each (one warm-up)
    assert [row["timing"]["rounds"][i]["gpu_peak_mb"] for row in r["results"] for i in (0, 1)] == [12, 13, 15, 16]
    assert [row["timing"]["gpu_peak_mb"] for row in r["results"]] == [13, 16]  # the highest of the rounds
    assert r["memory"]["gpu_peak_mb"] == 16 and "GPU MiB" in (tmp_path / "infer.md").read_text()


def test_models_it_cannot_measure_are_refused_in_one_line(hf_models, tmp_path, capsys):
    import transformers

    transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64).save_pretrained(str(tmp_path / "vit"))
    assert main(["bench", "infer", "--model", str(tmp_path / "vit")]) == 2
    err = capsys.readouterr().err
    assert "holds a vit model" in err and "causal LM" in err and len(err.strip().splitlines()) == 1
    assert main(["bench", "infer", "--model", str(tmp_path / "nowhere")]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["bench", "infer", "--model", str(hf_models["bert"]), "--no-transformers"]) == 2
    assert "measured through transformers only" in capsys.readouterr().err
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(hf_models["gpt2"])}))
    assert main(["bench", "infer", "--model", str(tmp_path / "lora")]) == 2
    assert "is a LoRA adapter" in capsys.readouterr().err


def test_a_cached_hub_name_is_measured_into_a_folder_named_after_it(hf_models, tmp_path, monkeypatch):
    import shutil

    repo = tmp_path / "hf-home" / "hub" / "models--tiny--gpt2-tr"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc", encoding="utf-8")
    shutil.copytree(hf_models["gpt2"], repo / "snapshots" / "abc")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "infer", "--model", "tiny/gpt2-tr", "--precision", "fp32", "--batch", "1",
                 "--prompt-tokens", "8", "--no-transformers", *FAST]) == 0
    r = json.loads((tmp_path / "bench-infer" / "tiny--gpt2-tr" / "infer.json").read_text())
    assert (r["family"], r["contestants"], r["model"]) == ("causal", ["fidan"], "tiny/gpt2-tr")
