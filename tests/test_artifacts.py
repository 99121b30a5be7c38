"""Artifacts say what they are: kind and layout version in every descriptor file, checked by every reader."""

from __future__ import annotations

import json

import pytest
import torch

from fidan.artifacts.datadir import load_manifest
from fidan.artifacts.runs import checkpoint_dirs, load_checkpoint_state, read_model_config
from fidan.artifacts.schema import VERSIONS, check, stamp
from fidan.artifacts.tokens import TokenSplit
from fidan.errors import BadInput, FidanError
from fidan.training.pretrain import pretrain


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, tokenizer_dir):
    out = tmp_path_factory.mktemp("art") / "run"
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(out), max_steps=2, batch_size=2, block_size=16,
             eval_every=10, eval_windows=2, checkpoint_every=2, quiet=True)
    return out


def test_every_descriptor_names_its_kind_and_version(run, data_dir):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert (manifest["artifact"], manifest["artifact_version"]) == ("fidan-data", VERSIONS["data"])
    meta = json.loads(next((data_dir / "tokens").glob("*/meta.json")).read_text())
    assert meta["artifact"] == "fidan-tokens"
    assert json.loads((run / "config.json").read_text())["artifact"] == "fidan-model"
    assert load_checkpoint_state(checkpoint_dirs(run)[-1])["artifact"] == "fidan-checkpoint"


def test_newer_or_other_artifacts_are_refused_with_one_line(run, data_dir, tmp_path):
    config = json.loads((run / "config.json").read_text())
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "config.json").write_text(json.dumps({**config, "artifact_version": VERSIONS["model"] + 1}))
    with pytest.raises(BadInput, match=r"newer than this fidan reads .*upgrade fidan") as e:
        read_model_config(newer)
    assert "\n" not in str(e.value)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps(stamp("tokens", {"splits": {}})))
    with pytest.raises(FidanError, match="describes a fidan-tokens artifact, not fidan-data or fidan-instructions"):
        load_manifest(fake)
    tokens = next((data_dir / "tokens").glob("*/meta.json")).parent
    copy = tmp_path / "tokens"
    copy.mkdir()
    (copy / "meta.json").write_text(json.dumps(stamp("data", json.loads((tokens / "meta.json").read_text()))))
    with pytest.raises(BadInput, match="not fidan-tokens"):
        TokenSplit(copy, "train")


def test_files_written_before_the_field_read_as_version_one(run, tmp_path):
    config = json.loads((run / "config.json").read_text())
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({k: v for k, v in config.items() if not k.startswith("artifact")}))
    assert read_model_config(old).vocab_size == config["vocab_size"]
    assert check("checkpoint", {"step": 3, "optimizer": torch.zeros(1)}, "state.pt") == "checkpoint"
