"""Instruction tuning: chat template, answer-only labels, packing isolation, vocabulary growth, exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from fidan.artifacts.conversations import read_conversations, record_to_messages
from fidan.artifacts.runs import copy_tokenizer, read_metrics, save_weights
from fidan.artifacts.tokenizer import add_special_tokens, load_tokenizer
from fidan.errors import FidanError
from fidan.model.gpt import GPT, GPTConfig
from fidan.model.new_rows import grow_embeddings
from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, RESP_END, encode_chat, render_chat
from fidan.training.sft import make_batch, pack_rows, sft, tokenize_conversations

CHAT = [
    {"role": "system", "content": "Sen yardımsever bir Türkçe asistansın."},
    {"role": "user", "content": "Türkiye'nin başkenti neresidir?"},
    {"role": "assistant", "content": "Başkent Ankara'dır."},
    {"role": "user", "content": "Peki en kalabalık şehir?"},
    {"role": "assistant", "content": "İstanbul, ılık bir akşamda bile çok kalabalıktır."},
]


@pytest.fixture(scope="module")
def chat_tok_dir(tmp_path_factory, tokenizer_dir):
    out = tmp_path_factory.mktemp("chat_tok") / "t"
    add_special_tokens(tokenizer_dir, out, CHAT_TOKENS, CHAT_TEMPLATE)
    return out


def tiny_gpt(vocab_size: int, dropout: float = 0.0, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32, dropout=dropout))


def test_autotokenizer_chat_template_gives_fidan_ids(chat_tok_dir):
    from transformers import AutoTokenizer

    tok = load_tokenizer(chat_tok_dir)
    hf = AutoTokenizer.from_pretrained(str(chat_tok_dir))
    assert "chat_template" in json.loads((chat_tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    for messages, gen in ((CHAT, False), (CHAT[:4], True), (CHAT[1:3], False)):
        ids, _ = encode_chat(tok, messages, add_generation_prompt=gen)
        out = hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True)
        hf_ids = list(out["input_ids"]) if hasattr(out, "keys") else list(out)
        assert hf_ids == ids
        assert hf.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False) == render_chat(messages, gen)
    # the markers are single special tokens, never split into bytes
    assert all(len(tok.encode(t)) == 1 for t in CHAT_TOKENS)


def test_supervised_tokens_are_answers_plus_end_tokens(chat_tok_dir):
    tok = load_tokenizer(chat_tok_dir)
    end = tok.tokenizer.token_to_id(RESP_END)
    ids, labels = encode_chat(tok, CHAT)
    answers = [tok.encode(m["content"]) for m in CHAT if m["role"] == "assistant"]
    supervised = [t for t in labels if t != -100]
    assert supervised == answers[0] + [end] + answers[1] + [end]
    assert len(supervised) == sum(len(a) for a in answers) + 2
    # every user and system token is masked, per turn
    pos = 0
    for m in CHAT:
        n = len(tok.encode(m["content"])) + 2
        if m["role"] != "assistant":
            assert labels[pos:pos + n] == [-100] * n
        pos += n
    assert pos == len(ids)
    # the same count survives shifting and packing into a batch
    convs = [CHAT, CHAT[1:3], CHAT[1:3]]
    examples, _, _ = tokenize_conversations(tok, convs, block_size=256)
    rows = pack_rows([len(x) for x, _ in examples], [0, 1, 2], 256)
    assert len(rows) == 1
    _, y, _ = make_batch(examples, rows, tok.eos_id)
    expected = sum(len(tok.encode(m["content"])) + 1 for c in convs for m in c if m["role"] == "assistant")
    assert int((y != -100).sum()) == expected


def test_packed_examples_do_not_attend_to_each_other(chat_tok_dir):
    tok = load_tokenizer(chat_tok_dir)
    model = tiny_gpt(tok.vocab_size).eval()
    convs = [CHAT[1:3], [{"role": "user", "content": "Merhaba!"}, {"role": "assistant", "content": "Selam."}],
             CHAT[3:5]]
    examples, _, _ = tokenize_conversations(tok, convs, block_size=128)
    rows = pack_rows([len(x) for x, _ in examples], [0, 1, 2], 128)
    assert rows == [[0, 1, 2]]
    x, _, doc = make_batch(examples, rows, tok.eos_id)
    a, b = len(examples[0][0]), len(examples[1][0])
    with torch.no_grad():
        logits, _ = model(x, doc_ids=doc)
        changed = x.clone()
        changed[0, a:a + b] = torch.randint(0, tok.vocab_size, (b,), generator=torch.Generator().manual_seed(1))
        logits2, _ = model(changed, doc_ids=doc)
        alone, _ = model(torch.tensor([examples[2][0]]))
    assert torch.allclose(logits[0, :a], logits2[0, :a], atol=1e-5)  # before the changed example
    assert torch.allclose(logits[0, a + b:], logits2[0, a + b:], atol=1e-5)  # after it
    assert not torch.allclose(logits[0, a:a + b], logits2[0, a:a + b])  # the change itself is visible
    # the last example sees exactly what it would see alone (positions restart at 0)
    assert torch.allclose(logits[0, a + b:a + b + len(examples[2][0])], alone[0], atol=1e-5)


def test_grow_embeddings_mean_initialised(tokenizer_dir, chat_tok_dir):
    old_v, new_v = load_tokenizer(tokenizer_dir).vocab_size, load_tokenizer(chat_tok_dir).vocab_size
    assert new_v == old_v + len(CHAT_TOKENS)
    model = tiny_gpt(old_v)
    wte, head = model.wte.weight.detach().clone(), model.lm_head.weight.detach().clone()
    grow_embeddings(model, new_v)
    assert model.config.vocab_size == new_v
    for grown, old in ((model.wte.weight, wte), (model.lm_head.weight, head)):
        assert grown.shape == (new_v, old.shape[1])
        assert torch.equal(grown[:old_v], old)
        assert torch.allclose(grown[old_v:], old.mean(0).expand(new_v - old_v, -1))
    logits, _ = model(torch.tensor([[new_v - 1, 3]]))
    assert logits.shape[-1] == new_v
    # adding the same tokens again changes nothing
    again = add_special_tokens(chat_tok_dir, chat_tok_dir.parent / "again", CHAT_TOKENS, CHAT_TEMPLATE)
    assert again.vocab_size == new_v


def test_malformed_records_reported_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "inst.jsonl"
    lines = [
        json.dumps({"instruction": "Selam ver.", "output": "Merhaba!"}, ensure_ascii=False),
        '{"instruction": "kırık',
        json.dumps({"instruction": "Cevapsız soru"}, ensure_ascii=False),
        json.dumps({"messages": [{"role": "assistant", "content": "önce ben"}, {"role": "user", "content": "x"}]}),
        "",
        json.dumps({"messages": CHAT}, ensure_ascii=False),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    convs = read_conversations(path)
    assert len(convs) == 2 and convs[1] == CHAT
    err = capsys.readouterr().err
    assert f"{path}:2: malformed JSON" in err
    assert f"{path}:3: 'output' is missing" in err
    assert f"{path}:4:" in err and "user" in err
    assert f"{path}:1:" not in err and f"{path}:6:" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "düz metin"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(FidanError, match=rf"{bad}:1: no 'messages'"):
        read_conversations(bad)
    # Alpaca input goes under the instruction; a system field becomes the system message
    msgs = record_to_messages({"instruction": "Özetle.", "input": "Uzun metin", "output": "Kısa.", "system": "S"})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[1]["content"] == "Özetle.\n\nUzun metin"


# --- the training loop ---------------------------------------------------------------------------


QA = [("Türkiye'nin başkenti neresidir?", "Ankara'dır."), ("İzmir hangi denizin kıyısındadır?", "Ege Denizi'nin."),
      ("Bir hafta kaç gündür?", "Yedi gündür."), ("Su kaç derecede kaynar?", "Yüz derecede kaynar."),
      ("Kışın hava nasıldır?", "Soğuktur."), ("Çay nerede yetişir?", "Rize'de yetişir.")]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tokenizer_dir):
    """A small 'pretrained' model run folder (random weights) with its tokenizer."""
    run = tmp_path_factory.mktemp("base") / "run"
    tok = load_tokenizer(tokenizer_dir)
    save_weights(tiny_gpt(tok.vocab_size, dropout=0.1), run)
    copy_tokenizer(tok, run)
    return run


@pytest.fixture(scope="module")
def sft_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sftdata")
    train = [{"instruction": f"{q} ({i})", "output": a} for i in range(8) for q, a in QA]
    val = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
    (folder / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in train), "utf-8")
    (folder / "val.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in val), "utf-8")
    return folder


def _train_losses(run):
    return [r["loss"] for r in read_metrics(run) if r["kind"] == "train"]


def test_sft_exact_resume_and_learning(tmp_path, base_run, sft_files):
    common = dict(model=str(base_run), data=str(sft_files), max_steps=8, batch_size=4, lr=3e-3, warmup_steps=2,
                  eval_every=4, checkpoint_every=4, seed=7, device="cpu", quiet=True)
    full = sft(out=str(tmp_path / "full"), **common)
    sft(out=str(tmp_path / "split"), until_step=3, **common)
    resumed = sft(out=str(tmp_path / "split"), resume=True, **common)
    assert len(_train_losses(tmp_path / "full")) == 8
    assert _train_losses(tmp_path / "split") == _train_losses(tmp_path / "full")
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "split" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["val_loss"] == pytest.approx(full["val_loss"])
    # the held-out answer loss falls, and the run is a usable chat model folder
    assert full["val_loss"] < full["val_loss_before"]
    tok = load_tokenizer(tmp_path / "full" / "tokenizer")
    assert tok.tokenizer.token_to_id(RESP_END) is not None
    assert json.loads((tmp_path / "full" / "config.json").read_text())["vocab_size"] == tok.vocab_size


def test_sft_early_stopping_keeps_best(tmp_path, base_run, sft_files):
    # A learning rate far too high makes the held-out loss worse after the first evaluation.
    s = sft(model=str(base_run), data=str(sft_files), out=str(tmp_path / "es"), max_steps=40, batch_size=4,
            lr=0.3, warmup_steps=0, eval_every=2, patience=2, checkpoint_every=100, device="cpu", quiet=True)
    assert s["stopped"] and s["stopped"].startswith("early stop")
    evals = [r for r in read_metrics(tmp_path / "es") if r["kind"] == "eval"]
    assert s["step"] == evals[-1]["step"] < 40
    best = min(evals, key=lambda r: r["val_loss"])
    assert s["best_step"] == best["step"]
    # the run's final weights are the best ones: evaluating them again gives the best held-out loss
    assert s["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert len([r for r in evals if r["step"] > best["step"]]) == 2


def test_sft_refuses_to_overwrite_and_reports_bad_data(tmp_path, base_run, sft_files):
    from fidan.cli import main

    out = tmp_path / "r"
    sft(model=str(base_run), data=str(sft_files), out=str(out), max_steps=1, batch_size=2, device="cpu", quiet=True)
    assert main(["sft", "--model", str(base_run), "--data", str(sft_files), "--out", str(out)]) == 2
    empty = tmp_path / "none.jsonl"
    empty.write_text('{"instruction": ""}\n', encoding="utf-8")
    assert main(["sft", "--model", str(base_run), "--data", str(empty), "--out", str(tmp_path / "x")]) == 2


def test_hf_datasets_by_name(monkeypatch, capsys):
    datasets = pytest.importorskip("datasets")
    from fidan.artifacts.conversations import load_conversations

    rows = [{"instruction": "Selam ver.", "input": "", "output": "Merhaba!"}, {"text": "düz"}]
    def load_dataset(name, config=None, split="train", streaming=False):
        assert streaming  # records are streamed, never downloaded whole
        return iter(rows) if name == "ornek/tr-alpaca" else 1 / 0

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    convs = load_conversations("hf:ornek/tr-alpaca")
    assert convs == [[{"role": "user", "content": "Selam ver."}, {"role": "assistant", "content": "Merhaba!"}]]
    assert "ornek/tr-alpaca[train][1]" in capsys.readouterr().err
    with pytest.raises(FidanError, match="could not load Hugging Face dataset 'baska/veri'"):
        load_conversations("hf:baska/veri")


def test_sft_bad_input_messages(tmp_path, base_run, sft_files, capsys):
    from fidan.cli import main

    out = tmp_path / "r"
    sft(model=str(base_run), data=str(sft_files), out=str(out), max_steps=1, batch_size=2, device="cpu", quiet=True)
    capsys.readouterr()
    assert main(["sft", "--model", str(base_run), "--data", str(sft_files), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fidan: error: run folder") and "--resume" in err and "--force" in err
    assert err.count("\n") == 0
    assert main(["sft", "--model", str(tmp_path / "nope"), "--data", str(sft_files), "--out", str(tmp_path / "y")]) == 2
    assert "model not found" in capsys.readouterr().err
    import shutil

    shutil.rmtree(out / "checkpoints")  # a finished run that kept no checkpoint cannot be continued
    assert main(["sft", "--model", str(base_run), "--data", str(sft_files), "--out", str(out), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_sft_hashed_val_split_and_no_pack(tmp_path, base_run):
    from fidan.artifacts.conversations import in_val_split

    data = tmp_path / "all.jsonl"
    records = [{"instruction": f"{q} ({i})", "output": a} for i in range(20) for q, a in QA]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    convs = read_conversations(data)
    held = [c for c in convs if in_val_split(c, 0.25)]
    assert 0 < len(held) < len(convs)
    # The hash split depends on the content only: the same conversation always lands on the same side.
    assert [in_val_split(c, 0.25) for c in convs] == [in_val_split(c, 0.25) for c in read_conversations(data)]
    common = dict(model=str(base_run), data=str(data), val_fraction=0.25, max_steps=2, batch_size=4, device="cpu",
                  quiet=True)
    packed = sft(out=str(tmp_path / "packed"), **common)
    unpacked = sft(out=str(tmp_path / "unpacked"), pack=False, **common)
    assert packed["val_conversations"] == unpacked["val_conversations"] == len(held)
    assert packed["train_conversations"] == len(convs) - len(held)
    assert len([r for r in read_metrics(tmp_path / "unpacked") if r["kind"] == "train"]) == 2
    cfg = json.loads((tmp_path / "unpacked" / "config.json").read_text())
    assert cfg["vocab_size"] == load_tokenizer(tmp_path / "unpacked" / "tokenizer").vocab_size
    from fidan.training.sft_data import EpochBatches

    examples, _, _ = tokenize_conversations(load_tokenizer(tmp_path / "unpacked" / "tokenizer"), convs[:10], 128)
    rows = EpochBatches(examples, 128, pack=False, seed=1).next(10)  # without packing: one example a row
    assert all(len(r) == 1 for r in rows)
    assert any(len(r) > 1 for r in EpochBatches(examples, 128, pack=True, seed=1).next(3))


def test_sft_bf16_muon_and_defaults_from_the_base(tmp_path, tokenizer_dir, data_dir, sft_files):
    import yaml

    from fidan.training.pretrain import pretrain

    base = tmp_path / "base"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(base), preset="hizli", max_steps=2,
             batch_size=2, block_size=64, eval_every=10, eval_windows=2, quiet=True)
    s = sft(model=str(base), data=str(sft_files), out=str(tmp_path / "t"), max_steps=6, batch_size=4,
            precision="bf16", eval_every=3, device="cpu", quiet=True)
    cfg = yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())
    # hizli pretrains with Muon at lr 3e-3 / muon 0.04: tuning follows it (AdamW part at twice the rate).
    assert cfg["train"]["optimizer"] == "muon" and cfg["train"]["precision"] == "bf16"
    assert cfg["train"]["lr"] == pytest.approx(6e-3) and cfg["train"]["muon_lr"] == pytest.approx(0.04)
    assert cfg["model"]["dropout"] == 0.0
    records = [r for r in read_metrics(tmp_path / "t") if r["kind"] == "train"]
    assert len(records) == 6 and all(r["mfu"] > 0 and r["tokens_per_s"] > 0 for r in records)
    assert s["val_loss"] < s["val_loss_before"]


def test_sft_compiled_step_equals_eager(tmp_path, base_run, sft_files):
    pytest.importorskip("torch._inductor")
    common = dict(model=str(base_run), data=str(sft_files), max_steps=1, batch_size=2, precision="fp32",
                  eval_every=5, device="cpu", quiet=True)
    s = sft(out=str(tmp_path / "c"), compile=True, **common)
    sft(out=str(tmp_path / "e"), **common)
    compiled, eager = ([r["loss"] for r in read_metrics(tmp_path / name) if r["kind"] == "train"] for name in "ce")
    assert s["step"] == 1 and len(compiled) == 1
    assert compiled == pytest.approx(eager, rel=1e-5)  # inductor may reorder fp32 sums, nothing more


def test_sft_resume_before_the_first_checkpoint_starts_again(tmp_path, base_run, sft_files):
    import shutil

    common = dict(model=str(base_run), data=str(sft_files), out=str(tmp_path / "r"), max_steps=3, batch_size=2,
                  eval_every=10, checkpoint_every=10, device="cpu", quiet=True)
    first = sft(**common)
    shutil.rmtree(tmp_path / "r" / "checkpoints")
    (tmp_path / "r" / "model.safetensors").unlink()  # as if killed before the first checkpoint
    again = sft(resume=True, **common)
    assert again["step"] == 3 and again["val_loss"] == pytest.approx(first["val_loss"])


def test_bad_data_is_refused_before_the_model_is_touched(tmp_path, base_run, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "yarim\n', encoding="utf-8")
    with pytest.raises(FidanError, match="bad.jsonl"):
        sft(model=str(base_run), data=str(bad), out=str(tmp_path / "r"), max_steps=1, device="cpu")
    out = capsys.readouterr().out
    assert "chat tokens" not in out and "tuning:" not in out
    assert not (tmp_path / "r" / "tokenizer").exists()
