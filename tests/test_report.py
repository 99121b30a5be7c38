"""The run report: report.md and its plots come from the run's own files, and regenerate from them alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from fidan.artifacts.results import save_timings
from fidan.cli import main
from fidan.errors import FidanError
from fidan.evaluation.bpb import eval_bpb
from fidan.evaluation.harmony import harmony_items
from fidan.evaluation.mc import eval_mc
from fidan.evaluation.samples import eval_samples
from fidan.reporting.report import report
from fidan.training.pretrain import pretrain

PNG = b"\x89PNG\r\n\x1a\n"



@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, tokenizer_dir):
    out = tmp_path_factory.mktemp("reportrun") / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(out), max_steps=4, batch_size=4, block_size=32,
             depth=1, eval_every=2, eval_windows=4, warmup_steps=1, precision="fp32", peak_gflops=100.0, device="cpu",
             quiet=True)
    text = out.parent / "metin.txt"
    text.write_text("Ankara'da kış soğuk geçer; İzmir'de ise hava ılıktır.\n", encoding="utf-8")
    eval_bpb(model=str(out), text=str(text))
    eval_bpb(model=str(out), text=str(data_dir), block_size=32)
    mc = out.parent / "uyum.jsonl"
    mc.write_text("".join(json.dumps(it, ensure_ascii=False) + "\n" for it in harmony_items()[:12]), encoding="utf-8")
    eval_mc(model=str(out), data=str(mc))
    eval_samples(model=str(out), prompt=["Türkiye", "Bilim"], max_new_tokens=8, quiet=True)
    save_timings(out, {"corpus": 1.25, "tokenizer": 2.0, "pretrain": 61.0})
    return out


def images(md: str) -> list[str]:
    return re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)


def test_report_numbers_and_plots_come_from_the_run(run):
    path = report(str(run))
    md = path.read_text(encoding="utf-8")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [m for m in metrics if m["kind"] == "eval"]
    train = [m for m in metrics if m["kind"] == "train"]
    assert f"{evals[0]['val_bpb']:.3f} → **{evals[-1]['val_bpb']:.3f}**" in md
    assert f"{train[-1]['loss']:.3f}" in md
    bpb = json.loads(next((run / "eval").glob("bpb-*.json")).read_text(encoding="utf-8"))
    assert f"{bpb['bpb']:.3f}" in md
    mc = json.loads((run / "eval" / "mc-uyum.json").read_text(encoding="utf-8"))
    assert f"{mc['accuracy']:.1%}" in md and f"chance {mc['chance']:.1%}" in md
    samples = json.loads((run / "eval" / "samples-prompts.json").read_text(encoding="utf-8"))["samples"]
    assert all(" ".join(s["text"].split()) in md for s in samples)
    assert "| pretrain | 61.0 s |" in md and "| total | 64.2 s |" in md  # stage times, summed
    timings = json.loads((run / "timings.json").read_text(encoding="utf-8"))
    assert timings["environment"]["cpu_model"] in md and timings["environment"]["torch"] in md
    assert "median MFU" in md  # pretrain logs MFU, so the report shows it
    cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert f"| parameters | {cfg['parameters']:,} |" in md
    manifest = json.loads((Path(cfg["data"]) / "manifest.json").read_text(encoding="utf-8"))
    assert f"| val | {manifest['splits']['val']['documents']:,} |" in md
    assert "tokens per word" in md and "bytes per token (train)" in md
    pics = images(md)
    assert {"plots/loss.png", "plots/training.png", "plots/mc.png"} <= set(pics)
    for pic in pics:
        assert (run / pic).read_bytes()[:8] == PNG


def test_report_regenerates_from_files_alone(run, capsys):
    before = report(str(run)).read_text(encoding="utf-8")
    pics = images(before)
    assert pics
    for pic in pics:
        (run / pic).unlink()
    assert main(["report", str(run)]) == 0
    assert str(run / "report.md") in capsys.readouterr().out
    md = (run / "report.md").read_text(encoding="utf-8")
    assert images(md) == pics and all((run / p).read_bytes()[:8] == PNG for p in pics)
    drop = re.compile(r"^Generated .*$", re.M)  # same inputs, same report (but for the time it was written)
    assert drop.sub("", md) == drop.sub("", before)


def test_report_explains_the_two_held_out_figures(run):
    """Training's evaluations and `fidan eval bpb` score different windows; the report says which, in one line."""
    md = report(str(run)).read_text(encoding="utf-8")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    last = [m for m in metrics if m["kind"] == "eval"][-1]
    split = json.loads(next((run / "eval").glob("bpb-*-val.json")).read_text(encoding="utf-8"))
    line = next(x for x in md.splitlines() if x.startswith("Why the held-out bits per byte differ: "))
    assert f"{last['val_windows']} windows ({last['val_tokens']:,} tokens) spread evenly over the val split" in line
    assert (f"`fidan eval bpb` scored all {split['tokens']:,} tokens of the {split['documents']} documents of the val "
            f"split, each from a start token, in 32-token windows advancing by {split['stride']}") in line
    assert "`fidan eval bpb` scored another text (metin.txt)" in line
    assert f"| bits per byte on {split['text'].split('/')[-1]} (val), in domain | {split['bpb']:.3f} |" in md
    assert "| bits per byte on metin.txt |" in md  # a plain file: its domain cannot be told


def test_a_source_never_trained_on_is_labelled_out_of_domain(tmp_path, data_dir, corpus_file):
    """The report card puts in-domain and out-of-domain bits per byte side by side, told apart by the sources
    in the data folders' manifests."""
    from fidan.corpus.prepare import prepare_data
    from fidan.reporting.report import domain

    other = tmp_path / "haber.txt"
    places, days = ["Ankara", "İzmir", "Bursa", "Konya", "Trabzon"], ["pazartesi", "salı", "cuma", "cumartesi"]
    other.write_text("\n\n".join(
        f"{p} belediyesi yeni parkın ve bir kütüphanenin açılışını {d} günü yapacak; bu hafta {n} kişi davet edildi."
        for p in places for d in days for n in (12, 40)), encoding="utf-8")
    prepare_data(source=[str(other)], out=str(tmp_path / "ood"), val_fraction=0.5, near_dup=0)
    prepare_data(source=[str(corpus_file), str(other)], out=str(tmp_path / "both"), val_fraction=0.2, near_dup=0)
    cfg = {"data": str(data_dir)}
    assert domain(cfg, {"text": str(data_dir)}) == ", in domain"
    assert domain(cfg, {"text": str(tmp_path / "ood")}) == f", out of domain: {other}, never trained on"
    assert domain(cfg, {"text": str(tmp_path / "both")}) == ""  # partly seen: neither
    assert domain(cfg, {"text": str(other)}) == ""


def test_report_shows_the_untrained_baseline_beside_chance(run):
    md = report(str(run)).read_text(encoding="utf-8")
    mc = json.loads((run / "eval" / "mc-uyum.json").read_text(encoding="utf-8"))
    base = mc["untrained"]
    figures = f"untrained model {base['accuracy']:.1%} / {base['accuracy_norm']:.1%}; chance {mc['chance']:.1%}"
    assert f"| multiple choice uyum.jsonl | {mc['accuracy']:.1%} (per byte {mc['accuracy_norm']:.1%}; {figures}) |" in md
    assert f"| {base['accuracy']:.1%} / {base['accuracy_norm']:.1%} | {mc['chance']:.1%} |" in md  # evaluation table
    assert "not *chance*, is the floor" in md


def test_old_runs_training_windows_are_described_as_they_were(tmp_path):
    """Runs written before training scored whole documents: evenly spaced windows, no carried context."""
    run = tmp_path / "old"
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(tmp_path / "d"), "model": {"block_size": 128},
                                                     "train": {"max_steps": 20}}))
    lines = [{"kind": "eval", "step": s, "val_loss": 3.0 - s / 10, "val_bpb": 1.9 - s / 100, "val_tokens": 8192}
             for s in (10, 20)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "eval" / "bpb-d-val.json").write_text(json.dumps(
        {"task": "bpb", "text": str(tmp_path / "d"), "split": "val", "bpb": 1.983, "perplexity": 9.0, "tokens": 40_000,
         "bytes": 90_000, "documents": 120, "block_size": 128, "stride": 64}))
    md = report(str(run)).read_text(encoding="utf-8")
    assert ("Why the held-out bits per byte differ: training scored 8,192 tokens in evenly spaced 128-token windows "
            "of the val token file, each window starting cold (no context carried across windows); `fidan eval bpb` "
            "scored all 40,000 tokens of the 120 documents of the val split") in md
    assert "1.800 → **1.700** (steps 10 → 20)" in md


def test_report_of_a_bare_run_folder(tmp_path, capsys):
    """Only config.yaml and metrics.jsonl, the data folder gone, no MFU fields, one evaluation: the report
    still tells the truth, and a single evaluation is one figure, not a before → after pair."""
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(tmp_path / "gone"), "parameters": 1000,
                                                     "model": {"n_layer": 2}, "train": {"max_steps": 3}}))
    lines = [{"kind": "train", "step": s, "loss": 5.0 - s, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 100.0 * s}
             for s in (1, 2, 3)] + [{"kind": "eval", "step": 3, "val_loss": 2.5, "val_bpb": 1.234, "sample": "Merhaba"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    md = report(str(run)).read_text(encoding="utf-8")
    assert "| held-out bits per byte | **1.234** (step 3, the only evaluation) |" in md
    assert "| held-out loss (nats/token) | 2.500 (step 3, the only evaluation) |" in md
    assert "1.234 →" not in md and "2.500 →" not in md and "Why the held-out" not in md
    assert "MFU" not in md and "not readable" in md and "Merhaba" in md
    assert "No `fidan eval` results" in md and "stage times are recorded by `fidan demo`" in md
    assert (run / "plots" / "training.png").read_bytes()[:8] == PNG
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_a_single_training_step_is_one_column(tmp_path):
    run = tmp_path / "one"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"n_layer": 1}, "train": {"max_steps": 1}}))
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "loss": 4.5, "lr": 1e-3}) + "\n")
    md = report(str(run)).read_text(encoding="utf-8")
    assert "|  | step 1 |" in md and "| train loss | 4.500 |" in md and "first step" not in md


def test_report_reads_another_stage_manifest(tmp_path):
    """An instruction-tuning run points at a data folder whose manifest has another shape."""
    data = tmp_path / "sft-data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"split": "hash rule", "train": 30, "val": 3,
                                                    "sources": {"dialogs": {"description": "diyaloglar", "train": 30, "val": 3}}}))
    run = tmp_path / "chat"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"stage": "sft", "data": str(data), "model": {"n_layer": 1}}))
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "eval", "step": 0, "val_loss": 3.0, "val_bpb": 2.5}) + "\n")
    md = report(str(run)).read_text(encoding="utf-8")
    assert "| dialogs | 30 | 3 | diyaloglar |" in md and "| val | 3 |" in md and "| model | sft:" in md
    assert "split rule: hash rule" in md


def test_one_reader_for_both_data_folder_manifests(tmp_path, data_dir, tokenizer_dir):
    from fidan.artifacts.datadir import describe_data, iter_split, token_stats
    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.artifacts.tokens import encode_splits

    corpus = describe_data(data_dir)
    manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
    assert corpus.kind == "corpus" and corpus.split_rule == manifest["split_rule"]
    assert corpus.splits["val"]["documents"] == manifest["splits"]["val"]["documents"]
    tok = load_tokenizer(tokenizer_dir)
    meta = json.loads((encode_splits(data_dir, tok) / "meta.json").read_text(encoding="utf-8"))
    stats = token_stats(data_dir, tok.sha256)
    assert stats["train"]["tokens"] == meta["splits"]["train"]["tokens"]
    assert stats["train"]["bytes_per_token"] == meta["splits"]["train"]["bytes"] / meta["splits"]["train"]["tokens"]
    assert token_stats(data_dir, "0" * 64) is None

    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "manifest.json").write_text(json.dumps({"format": "chat messages JSONL", "split": "hash", "train": 5, "val": 1,
                                                   "sources": {"dialogs": {"description": "d", "train": 5, "val": 1}}}))
    inst = describe_data(sft)
    assert inst.kind == "instructions" and inst.splits == {"train": {"examples": 5}, "val": {"examples": 1}}
    assert inst.sources == [{"name": "dialogs", "description": "d", "train": 5, "val": 1}]
    with pytest.raises(FidanError, match="not a text corpus"):
        next(iter_split(sft, "val"))
    (sft / "manifest.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(FidanError, match="neither a corpus nor an instruction-set manifest"):
        describe_data(sft)


def test_untrained_baseline_is_the_run_architecture_seeded_as_training(run, tmp_path):
    """`eval mc` scores the same config with fresh weights from the run's seed; checked by direct computation."""
    import torch

    from fidan.artifacts.loader import load_model
    from fidan.evaluation.lm import load_lm
    from fidan.evaluation.mc import choice_logprobs, mc_accuracy, read_mc
    from fidan.model.gpt import GPT

    mc = json.loads((run / "eval" / "mc-uyum.json").read_text(encoding="utf-8"))
    seed = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["train"]["seed"]
    assert mc["untrained"]["seed"] == seed
    net, _ = load_model(run)
    torch.manual_seed(seed)
    fresh = GPT(net.config).eval()  # what `fidan pretrain` builds before its first step
    lm = load_lm(str(run))
    lm.net = fresh
    items = read_mc(str(run.parent / "uyum.jsonl"))
    direct = mc_accuracy(items, choice_logprobs(lm, items))
    assert (mc["untrained"]["accuracy"], mc["untrained"]["accuracy_norm"]) == (direct["accuracy"], direct["accuracy_norm"])
    # ... and not the trained weights: the two score every choice differently
    trained = [p["logprobs"] for p in mc["predictions"]]
    untrained = [p["logprobs"] for p in direct["predictions"]]
    assert all(a != pytest.approx(b, abs=1e-3) for a, b in zip(trained, untrained, strict=True))
    skipped = eval_mc(model=str(run), data=str(run.parent / "uyum.jsonl"), out=str(tmp_path / "mc.json"), baseline=False)
    assert "untrained" not in skipped


def test_a_budgeted_run_reports_its_planned_steps(tmp_path, data_dir, tokenizer_dir):
    from fidan.reporting.report import report
    from fidan.training.pretrain import pretrain

    run = tmp_path / "run"
    s = pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(run), max_steps=10_000,
                 budget_minutes=0.03, batch_size=2, block_size=16, eval_every=1000, eval_windows=2, quiet=True)
    text = Path(report(str(run))).read_text(encoding="utf-8")
    assert f"| steps | {s['step']:,} of {s['max_steps']:,} planned (schedule fitted to 0.03 minutes) |" in text
