"""`fidan eval lm-eval` and `--write-lm-eval`: the same items give the same scores in fidan and lm-eval."""

from __future__ import annotations

import json

import pytest
import torch

from fidan.artifacts.runs import copy_tokenizer, save_weights
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.evaluation.lm_eval_tasks import write_lm_eval
from fidan.evaluation.mc import eval_mc
from fidan.model.gpt import GPT, config_from_preset

lm_eval = pytest.importorskip("lm_eval")

# Contexts without trailing space; every choice starts with its space, as fidan's own sets write them.
ITEMS = [
    ("Dün akşam okula", [" gittim", " gideceğim", " gidiyorum"], 0),
    ("Yarın sabah erkenden", [" kalktım", " kalkacağım"], 1),
    ("Benim", [" kitabım", " kitabın", " kitabımız"], 0),
    ("Bizim", [" evimiz", " evim"], 0),
    ("Yağmura", [" rağmen", " dolayı"], 0),
    ("Arkadaşımla", [" birlikte", " rağmen", " göre"], 0),
    ("Sen de bize", [" geliyor musun?", " geliyor mısın?"], 0),
    ("Türkiye'nin başkenti", [" Ankara'dır.", " Ankaradır.", " Ankara'tır."], 0),
    ("Çocuklar bahçede", [" oynuyorlar.", " oynuyoruz.", " oynuyorum."], 0),
    ("Bu kitapları", [" okudum.", " okuduk.", " okudun."], 2),
    ("", [" Merhaba", " Hoşça kal"], 1),  # an empty context: both score after the start token alone
    ("Ödevini bitirdikten sonra", [" dışarı çıkabilirsin.", " dışarı çıkabilirim."], 1),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("lmeval")
    cfg = config_from_preset("hizli", load_tokenizer(tokenizer_dir).vocab_size, n_layer=2, n_embd=64, n_head=2,
                             block_size=64)
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():  # away from the initialisation, so the choices' scores differ clearly
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_weights(model, root / "run")
    copy_tokenizer(load_tokenizer(tokenizer_dir), root / "run")
    data = root / "items.jsonl"
    data.write_text("".join(json.dumps({"context": c, "choices": ch, "answer": a}, ensure_ascii=False) + "\n"
                            for c, ch, a in ITEMS), encoding="utf-8")
    return root / "run", data


def test_fidan_and_lm_eval_give_the_same_predictions(world, tmp_path, capsys):
    from fidan.bench.harness import eval_lm_eval

    run, data = world
    mc = eval_mc(model=str(run), data=str(data), baseline=False, device="cpu", out=str(tmp_path / "mc.json"))
    res = eval_lm_eval(model=str(run), tasks=str(data), device="cpu", out=str(tmp_path / "lm.json"))
    row = res["results"]["fidan_items"]
    assert capsys.readouterr() == ("", "")  # called from Python: quiet, lm-eval's progress bars too
    ours, theirs = mc["predictions"], row["predictions"]
    assert len(theirs) == len(ITEMS)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        # the same tokens scored: log-likelihoods equal up to float rounding (a delimiter or a missing start
        # token moves them by whole nats)
        assert b["logprobs"] == pytest.approx(a["logprobs"], abs=2e-3), i
        assert (b["pred"], b["pred_bytes"]) == (a["pred"], a["pred_norm"]), i
    assert row["acc"] == pytest.approx(mc["accuracy"])  # lm-eval's own metrics, not recomputed here
    assert row["acc_bytes"] == pytest.approx(mc["accuracy_norm"])
    assert 0 < mc["accuracy"] < 1 or mc["accuracy"] != mc["accuracy_norm"]  # the check is not vacuous
    assert json.loads((tmp_path / "lm.json").read_text(encoding="utf-8"))["results"]["fidan_items"]["acc"] == row["acc"]


def test_written_tasks_load_in_lm_eval(world, tmp_path, capsys):
    from lm_eval.tasks import TaskManager

    from fidan.cli import main
    from fidan.errors import FidanError

    _, data = world
    assert main(["eval", "mc", "--data", str(data), "--write-lm-eval", str(tmp_path / "tasks")]) == 0
    assert "fidan_items" in capsys.readouterr().out
    manager = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False)
    assert "fidan_items" in manager.all_tasks
    task = manager.load(["fidan_items"])["tasks"]["fidan_items"]
    assert task.config.target_delimiter == ""
    docs = list(task.test_docs())
    assert [(d["context"], d["choices"], d["answer"]) for d in docs] == [(c, ch, a) for c, ch, a in ITEMS]
    assert [m["metric"] for m in task.config.metric_list] == ["acc", "acc_bytes"]
    with pytest.raises(FidanError, match="--force"):
        write_lm_eval(str(tmp_path / "tasks"), str(data))
    assert write_lm_eval(str(tmp_path / "tasks"), str(data), force=True) == ["fidan_items"]


def test_include_path_limit_and_force(world, tmp_path):
    """A folder written by --write-lm-eval runs through --include-path as lm-eval's own task would, and gives
    fidan's accuracy on the items --limit keeps; a result file is replaced only with force."""
    from fidan.bench.harness import eval_lm_eval
    from fidan.errors import FidanError

    run, data = world
    write_lm_eval(str(tmp_path / "tasks"), str(data))
    mc = eval_mc(model=str(run), data=str(data), baseline=False, device="cpu", out=str(tmp_path / "mc.json"))
    out = str(tmp_path / "lm.json")
    res = eval_lm_eval(model=str(run), tasks="fidan_items", include_path=str(tmp_path / "tasks"), limit=5,
                       device="cpu", batch_size=3, out=out)
    first = mc["predictions"][:5]
    assert res["limit"] == 5 and res["results"]["fidan_items"]["items"] == 5
    assert res["results"]["fidan_items"]["acc"] == pytest.approx(
        sum(p["pred"] == p["answer"] for p in first) / 5)
    with pytest.raises(FidanError, match="--force"):
        eval_lm_eval(model=str(run), tasks="fidan_items", include_path=str(tmp_path / "tasks"), out=out)
