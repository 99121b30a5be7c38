"""The run report: report.md and its plots come from the run's own files, and regenerate from them alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from fidan.cli import main
from fidan.evaluation.bpb import eval_bpb
from fidan.evaluation.harmony import harmony_items
from fidan.evaluation.mc import eval_mc
from fidan.evaluation.samples import eval_samples
from fidan.report.report import report, save_timings
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
    for png in (run / "plots").glob("*.png"):
        png.unlink()
    before = (run / "report.md").read_text(encoding="utf-8") if (run / "report.md").exists() else None
    assert main(["report", str(run)]) == 0
    assert str(run / "report.md") in capsys.readouterr().out
    md = (run / "report.md").read_text(encoding="utf-8")
    assert all((run / p).exists() for p in images(md))
    if before is not None:  # same inputs, same report (but for the time it was written)
        drop = re.compile(r"^Generated .*$", re.M)
        assert drop.sub("", md) == drop.sub("", before)


def test_report_of_a_bare_run_folder(tmp_path, capsys):
    """Only config.yaml and metrics.jsonl, the data folder gone, no MFU fields: the report still tells the truth."""
    run = tmp_path / "bare"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(tmp_path / "gone"), "parameters": 1000,
                                                     "model": {"n_layer": 2}, "train": {"max_steps": 3}}))
    lines = [{"kind": "train", "step": s, "loss": 5.0 - s, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 100.0 * s}
             for s in (1, 2, 3)] + [{"kind": "eval", "step": 3, "val_loss": 2.5, "val_bpb": 1.234, "sample": "Merhaba"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    md = report(str(run)).read_text(encoding="utf-8")
    assert "**1.234**" in md and "MFU" not in md and "not readable" in md and "Merhaba" in md
    assert "No `fidan eval` results" in md and "stage times are recorded by `fidan demo`" in md
    assert (run / "plots" / "training.png").read_bytes()[:8] == PNG
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "config.yaml" in capsys.readouterr().err


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
