"""`fidan bench infer` on a tiny run: every configuration measured, ratios positive, files and report written."""

from __future__ import annotations

import json

import pytest

from fidan.bench.infer import bench_infer
from fidan.cli import main
from fidan.errors import FidanError
from fidan.report.report import report
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
