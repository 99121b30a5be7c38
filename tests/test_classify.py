"""`fidan classify`: neural classifiers through the shared trainer, TF-IDF beside them, prediction,
resume, search and bad input; tiny models and made-up Turkish sentences."""

from __future__ import annotations

import io
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
import yaml

from fidan.classify.predict import Predictor, classify_eval, classify_predict
from fidan.classify.task import class_weights, example_losses
from fidan.classify.train import classify_train
from fidan.errors import FidanError

FOOD = ["Annem mutfakta {} pişirdi ve sofraya {} koydu.", "Bu akşam {} yaptık, yanına {} ekledik.",
        "Fırındaki {} çok güzel kokuyor, {} da hazır.", "Tarifte {} için iki kaşık {} gerekiyor."]
FOOD_WORDS = ["mercimek çorbası", "karnıyarık", "pilav", "baklava", "yoğurt", "cacık", "börek", "salata"]
SPORT = ["Takım dün akşam {} maçında {} ile karşılaştı.", "Hakem {} sırasında {} için penaltı verdi.",
         "Antrenör {} öncesi oyunculara {} anlattı.", "Taraftarlar {} boyunca {} diye bağırdı."]
SPORT_WORDS = ["derbi", "final", "lig", "deplasman", "kaleci", "forvet", "gol", "taktik"]


def sentences(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "yemek" if i % 2 == 0 else "spor"
        form, words = (FOOD, FOOD_WORDS) if label == "yemek" else (SPORT, SPORT_WORDS)
        rows.append({"text": rng.choice(form).format(rng.choice(words), rng.choice(words)), "label": label})
    return rows


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("cls") / "toy.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sentences(200)), encoding="utf-8")
    return path


FAST = dict(batch_size=8, max_length=32, layers=1, width=32, vocab_size=300, eval_every=10, warmup_steps=2,
            quiet=True, baseline=False)


def test_scratch_learns_and_predicts_what_eval_saw(toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    s = classify_train(data=str(toy_data), out=str(run), model="scratch", max_steps=40, **{**FAST, "baseline": True})
    assert s["test_macro_f1"] > 0.9 and s["val_macro_f1"] > 0.9
    assert s["baseline"]["test_macro_f1"] > 0.9  # TF-IDF beside it, on the same split
    for name in ("classifier.json", "model.safetensors", "tokenizer/tokenizer.json", "split/train.jsonl",
                 "eval/test.json", "eval/test-confusion.png", "eval/test-predictions.jsonl",
                 "eval/baseline-test.json", "metrics.jsonl", "config.yaml"):
        assert (run / name).exists(), name
    saved = [json.loads(x) for x in (run / "eval" / "test-predictions.jsonl").read_text().splitlines()]
    again = Predictor(run, device="cpu").probs([r["text"] for r in saved])
    for row, p in zip(saved, again, strict=True):
        assert [round(float(x), 6) for x in p] == [row["probs"][n] for n in ("spor", "yemek")]
    # predict from standard input prints one JSON line per text
    capsys.readouterr()
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO("Hakem maçta penaltı verdi.\nAnnem börek pişirdi.\n")
    try:
        r = classify_predict(model=str(run), input="-", device="cpu")
    finally:
        sys.stdin = old
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert r["texts"] == 2 and [x["label"] for x in lines] == ["spor", "yemek"]
    m = classify_eval(model=str(run), data=str(run / "split" / "test.jsonl"), device="cpu")
    assert m["macro_f1"] == pytest.approx(s["test_macro_f1"])


def test_resume_is_exact(toy_data, tmp_path):
    args = dict(data=str(toy_data), model="scratch", max_steps=12, checkpoint_every=4, patience=0,
                **{**FAST, "eval_every": 4})
    classify_train(out=str(tmp_path / "whole"), **args)
    classify_train(out=str(tmp_path / "part"), until_step=6, **args)
    classify_train(out=str(tmp_path / "part"), resume=True, **args)

    def losses(run):
        return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if r["kind"] == "train"]

    assert losses(tmp_path / "part") == losses(tmp_path / "whole")


def test_losses():
    logits = torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.allclose(example_losses(logits, y), F.cross_entropy(logits, y, reduction="none"))
    assert torch.allclose(example_losses(logits, y, smoothing=0.1),
                          F.cross_entropy(logits, y, reduction="none", label_smoothing=0.1), atol=1e-6)
    p = F.softmax(logits, -1).gather(1, y[:, None]).squeeze(1)
    assert torch.allclose(example_losses(logits, y, gamma=2.0), (1 - p) ** 2 * F.cross_entropy(logits, y, reduction="none"))
    assert class_weights([90, 10], "balanced") == pytest.approx([100 / 180, 100 / 20])
    assert class_weights([90, 10], "sqrt") == pytest.approx([math.sqrt(100 / 180), math.sqrt(100 / 20)])
    assert class_weights([90, 10], "none") is None


def test_gradient_accumulation_gives_the_same_loss(toy_data, tmp_path):
    args = dict(data=str(toy_data), model="scratch", max_steps=3, dropout=0.0, head_dropout=0.0, precision="fp32",
                class_weight="balanced", **{**FAST, "batch_size": 8})
    a = classify_train(out=str(tmp_path / "a"), **args)
    b = classify_train(out=str(tmp_path / "b"), **{**args, "batch_size": 4, "grad_accum": 2})
    la = [r["loss"] for r in map(json.loads, (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())
          if r["kind"] == "train"]
    lb = [r["loss"] for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines())
          if r["kind"] == "train"]
    assert la == pytest.approx(lb, rel=1e-4) and a["step"] == b["step"] == 3


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory, tokenizer_dir):
    """A tiny fidan language-model run (untrained weights are enough to test the plumbing)."""
    from fidan.artifacts.runs import copy_tokenizer, save_weights
    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.model.gpt import GPT, config_from_preset

    tok = load_tokenizer(tokenizer_dir)
    run = tmp_path_factory.mktemp("lm") / "run"
    torch.manual_seed(0)
    save_weights(GPT(config_from_preset("hizli", tok.vocab_size, depth=1)), run)
    copy_tokenizer(tok, run)
    return run


def test_fidan_backbone_with_lora_saves_merged_and_reloads(toy_data, lm_run, tmp_path):
    run = tmp_path / "lora"
    s = classify_train(data=str(toy_data), out=str(run), model=str(lm_run), pooling="last", lora_r=4,
                       max_steps=6, **FAST)
    assert s["kind"] == "fidan"
    spec = json.loads((run / "classifier.json").read_text())
    assert spec["backbone"]["type"] == "fidan-gpt" and spec["pooling"] == "last"
    from safetensors.torch import load_file

    assert not any("lora_" in k for k in load_file(str(run / "model.safetensors")))  # merged
    texts = [json.loads(x)["text"] for x in (run / "split" / "test.jsonl").read_text().splitlines()]
    saved = [json.loads(x) for x in (run / "eval" / "test-predictions.jsonl").read_text().splitlines()]
    again = Predictor(run, device="cpu").probs(texts)
    assert [max(r["probs"], key=r["probs"].get) for r in saved] == [("spor", "yemek")[int(p.argmax())] for p in again]
    with pytest.raises(FidanError, match="text classifier"):
        from fidan.artifacts.loader import load_model

        load_model(run)


def _tiny_bert(folder):
    import transformers

    words = sorted({w.strip(".,;") for r in sentences(200) for w in r["text"].lower().split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *words]
    folder.mkdir(parents=True)
    tok = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, strip_accents=False)
    assert tok.unk_token_id not in tok("Hakem penaltı verdi.")["input_ids"]
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64)
    transformers.BertForMaskedLM(config).save_pretrained(str(folder))
    return folder


def test_transformers_encoder_becomes_a_transformers_classifier(toy_data, tmp_path):
    import transformers

    bert = _tiny_bert(tmp_path / "bert")
    run = tmp_path / "enc"
    s = classify_train(data=str(toy_data), out=str(run), model=str(bert), max_steps=30, lr=1e-2, **FAST)
    assert s["kind"] == "encoder" and s["test_macro_f1"] > 0.8
    net = transformers.AutoModelForSequenceClassification.from_pretrained(str(run))
    assert net.config.id2label == {0: "spor", 1: "yemek"}
    tok = transformers.AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    with torch.no_grad():
        logits = net(**tok(["hakem penaltı verdi"], return_tensors="pt")).logits
    ours = Predictor(run, device="cpu").probs(["hakem penaltı verdi"])
    assert torch.allclose(F.softmax(logits, -1), torch.tensor(ours, dtype=torch.float32), atol=1e-5)



def test_a_bare_hub_name_is_read_from_the_local_cache(toy_data, tmp_path, monkeypatch):
    """`--model bert-base-multilingual-cased` style: a bare hub name, found in the Hugging Face cache."""
    import shutil

    bert = _tiny_bert(tmp_path / "bert")
    repo = tmp_path / "hf-home" / "hub" / "models--tiny-bert-tr"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc", encoding="utf-8")
    shutil.copytree(bert, repo / "snapshots" / "abc")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    s = classify_train(data=str(toy_data), out=str(tmp_path / "enc"), model="tiny-bert-tr", max_steps=2, **FAST)
    assert s["kind"] == "encoder"
    with pytest.raises(FidanError, match="not in the Hugging Face cache"):
        classify_train(data=str(toy_data), out=str(tmp_path / "x"), model="no-such-bert", max_steps=2, **FAST)

def test_bad_input(toy_data, tmp_path, lm_run):
    one = tmp_path / "one.jsonl"
    one.write_text('{"text": "a b", "label": "x"}\n' * 20, encoding="utf-8")
    with pytest.raises(FidanError, match="one label"):
        classify_train(data=str(one), out=str(tmp_path / "r1"), model="tfidf", quiet=True)
    assert not (tmp_path / "r1").exists()
    with pytest.raises(FidanError, match="not a text classifier"):
        classify_predict(model=str(lm_run), input=str(toy_data))
    with pytest.raises(FidanError, match="no such folder"):
        classify_train(data=str(toy_data), out=str(tmp_path / "r2"), model="nowhere/at/all", quiet=True)
    # resuming a run on another label set
    run = tmp_path / "r3"
    classify_train(data=str(toy_data), out=str(run), model="scratch", max_steps=4, until_step=2, **FAST)
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"text": r["text"], "label": r["label"] + "x"}, ensure_ascii=False) + "\n"
                             for r in sentences(60)), encoding="utf-8")
    spec = json.loads((run / "classifier.json").read_text())
    (run / "classifier.json").write_text(json.dumps({**spec, "labels": ["olumlu", "olumsuz"]}))
    with pytest.raises(FidanError, match="trained on the labels olumlu, olumsuz"):
        classify_train(data=str(toy_data), out=str(run), model="scratch", max_steps=4, resume=True, **FAST)
    # a label the model never saw, at eval time
    tf = tmp_path / "tf"
    classify_train(data=str(toy_data), out=str(tf), model="tfidf", quiet=True)
    with pytest.raises(FidanError, match="sporx|yemekx"):
        classify_eval(model=str(tf), data=str(other))


def test_search_starts_from_the_defaults_and_replays(toy_data, tmp_path):
    run = tmp_path / "s"
    s = classify_train(data=str(toy_data), out=str(run), model="tfidf", search=3, quiet=True)
    trials = [json.loads(x) for x in (run / "search" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 3 and trials[0]["params"]["tfidf_c"] == 10.0
    assert s["search"]["best_val_macro_f1"] == max(t["val_macro_f1"] for t in trials)
    best = yaml.safe_load((run / "search" / "best.yaml").read_text(encoding="utf-8"))["args"]
    assert best["search"] == 0 and best["tfidf"]["tfidf_c"] == s["search"]["best_params"]["tfidf_c"]  # nested
    from fidan.cli import main

    assert main(["classify", "train", "--config", str(run / "search" / "best.yaml"), "--out", str(tmp_path / "replay"),
                 "--quiet"]) in (0, None)
    replay = json.loads((tmp_path / "replay" / "eval" / "summary.json").read_text())
    assert replay["val_macro_f1"] == pytest.approx(s["val_macro_f1"])


def test_transformers_causal_lm_gets_a_pooled_head_equal_to_the_fidan_run(toy_data, lm_run, tmp_path):
    """The same weights as a fidan run and as an exported transformers folder give the same features."""
    from fidan.adapt.export import export_hf
    from fidan.classify.build import new_classifier
    from fidan.classify.models import BundleCodec, ClassifierSpec

    export_hf(model=str(lm_run), out=str(tmp_path / "hf"))
    s = classify_train(data=str(toy_data), out=str(tmp_path / "run"), model=str(tmp_path / "hf"), max_steps=4, **FAST)
    assert s["kind"] == "fidan"
    spec = json.loads((tmp_path / "run" / "classifier.json").read_text())
    assert spec["backbone"]["type"] == "hf-causal"
    made = {}
    for name, src in (("fidan", str(lm_run)), ("hf", str(tmp_path / "hf"))):
        spec = ClassifierSpec(kind="fidan", labels=["a", "b"], max_length=32)
        net, codec = new_classifier(src, "fidan", spec, tmp_path / name, [], tokenizer=None, vocab_size=0, layers=1,
                                    width=32, dropout=None)
        assert isinstance(codec, BundleCodec)
        made[name] = (net.eval(), codec)
    rows = made["fidan"][1].encode(["Annem börek pişirdi.", "Hakem penaltı verdi, taraftar sevindi."], 32, "head")
    from fidan.classify.models import pad_batch

    x, mask = pad_batch(rows, made["fidan"][1].pad_id)
    a, b = made["fidan"][0].features(x, mask), made["hf"][0].features(x, mask)
    assert torch.allclose(a * mask[..., None], b * mask[..., None], atol=1e-4)


def test_report_has_a_classification_section(toy_data, tmp_path):
    from fidan.reporting.report import report

    run = tmp_path / "r"
    classify_train(data=str(toy_data), out=str(run), model="scratch", max_steps=6, **{**FAST, "baseline": True})
    text = report(str(run)).read_text(encoding="utf-8")
    assert "## Classification" in text and "TF-IDF baseline" in text and "test-confusion.png" in text


def test_cli_bad_column_is_one_line_and_exit_2(toy_data, tmp_path, capsys):
    from fidan.cli import main

    code = main(["classify", "train", "--data", str(toy_data), "--label-column", "etiket", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "its columns are: text, label" in err[0]
    assert not (tmp_path / "x").exists()


def test_truncation_keeps_the_head_or_the_tail(tokenizer_dir, tmp_path):
    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.classify.models import BundleCodec, HFCodec

    codec = BundleCodec(load_tokenizer(tokenizer_dir))
    text = "Ankara'da kış soğuk geçer; İzmir'de ise hava ılıktır ve deniz kenarında yürümek güzeldir."
    full = codec.encode([text], 1000, "head")[0]
    head, tail = codec.encode([text], 8, "head")[0], codec.encode([text], 8, "tail")[0]
    assert head == full[:7] + [codec.pad_id] and tail == full[-8:]  # end-of-text closes both
    bert = _tiny_bert(tmp_path / "bert")
    import transformers

    hf = HFCodec(transformers.AutoTokenizer.from_pretrained(str(bert)))
    ids = hf.encode(["annem börek pişirdi ve sofraya salata koydu"], 5, "tail")[0]
    tok = hf.tokenizer
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and len(ids) == 5
    assert tok.convert_ids_to_tokens(ids[1:-1]) == ["sofraya", "salata", "koydu"]


def test_columns_are_kept_with_the_model_and_training_rows_are_named_in_eval(tmp_path, capsys):
    """eval and predict read the fields the model was trained on; scoring texts it trained on says so."""
    rows = [{**r, "text": f"{r['text']} ({i})"} for i, r in enumerate(sentences(120))]  # no two alike
    csv = tmp_path / "cols.csv"
    csv.write_text("metin,etiket\n" + "".join(f"\"{r['text']}\",{r['label']}\n" for r in rows), encoding="utf-8")
    run = tmp_path / "tfidf"
    classify_train(data=str(csv), out=str(run), model="tfidf", text_column="metin", label_column="etiket",
                   quiet=True, baseline=False)
    capsys.readouterr()
    result = classify_eval(model=str(run), data=str(csv), force=True)  # the columns come from the model
    assert result["seen_in_training"] > 0.5 * len(rows)
    assert "are in the model's training split" in capsys.readouterr().err
    held_out = classify_eval(model=str(run), data=str(run / "split" / "test.jsonl"), text_column="text",
                             label_column="label", out=str(tmp_path / "e2"))
    assert held_out["seen_in_training"] == 0
    assert classify_predict(model=str(run), input=str(csv), out=str(tmp_path / "p.jsonl"))["texts"] == len(rows)


@pytest.mark.parametrize("select,best", [("accuracy", 3), ("macro_f1", 6), ("weighted_f1", 9)])
def test_select_picks_the_best_weights_by_the_figure_asked_for(toy_data, tmp_path, monkeypatch, select, best):
    """Held-out figures that disagree (scripted): each --select keeps the weights of its own best step."""
    from fidan.classify.task import ClassifyTask

    script = iter([(0.9, 0.5, 0.6), (0.8, 0.7, 0.65), (0.7, 0.6, 0.9)] + [(0.1, 0.1, 0.1)] * 10)

    def evaluate(self):
        acc, macro, weighted = next(script)
        return {"val_loss": 1.0, "val_accuracy": acc, "val_macro_f1": macro, "val_weighted_f1": weighted}

    monkeypatch.setattr(ClassifyTask, "evaluate", evaluate)
    s = classify_train(data=str(toy_data), out=str(tmp_path / select), model="scratch", max_steps=12, patience=50,
                       select=select, **{**FAST, "eval_every": 3})
    assert s["best_step"] == best
