"""Storage faults: a write that fails (disk full, simulated with a file-size limit; permission denied) gives
one line and exit status 2, leaves the files from before intact and no half-written folder."""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import sys

import pytest

from fidan.artifacts.runs import checkpoint_damage, checkpoint_dirs
from fidan.cli import main

LIMIT = 64 * 1024  # bytes: small files (configs, logs) fit, weights and shards do not


def _limited_main(argv: list[str], err_path: str, limit: int | None) -> None:
    sys.stderr = open(err_path, "w", encoding="utf-8", buffering=1)  # noqa: SIM115 - the child exits with it open
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    if limit is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    os._exit(main(argv))


def run_cli(argv: list[str], tmp_path, limit: int | None = LIMIT) -> tuple[int, list[str]]:
    """Exit status and stderr lines of ``fidan ARGV`` in a forked child under a file-size limit."""
    err = tmp_path / "stderr.txt"
    child = multiprocessing.get_context("fork").Process(target=_limited_main, args=(argv, str(err), limit))
    child.start()
    child.join(120)
    lines = [x for x in err.read_text(encoding="utf-8").splitlines() if x.startswith("fidan:")]
    return child.exitcode, lines


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, data_dir, tokenizer_dir):
    run = tmp_path / "run"
    args = ["pretrain", "--data", str(data_dir), "--tokenizer", str(tokenizer_dir), "--out", str(run),
            "--max-steps", "6", "--batch-size", "4", "--block-size", "32", "--eval-every", "100",
            "--checkpoint-every", "2", "--precision", "fp32", "--peak-gflops", "100", "--quiet"]
    assert run_cli([*args, "--until-step", "2"], tmp_path, limit=None)[0] == 0
    before = snapshot(run / "checkpoints")
    code, err = run_cli([*args, "--resume"], tmp_path)
    assert code == 2 and len(err) == 1 and "file size limit exceeded" in err[0] and "unchanged" in err[0]
    assert snapshot(run / "checkpoints") == before  # the step-2 checkpoint, untouched; no half-written one
    assert checkpoint_damage(checkpoint_dirs(run)[-1]) is None
    assert run_cli([*args, "--resume"], tmp_path, limit=None)[0] == 0  # and the run goes on from it


def test_disk_full_while_writing_data_or_a_tokenizer_keeps_what_was_there(tmp_path, corpus_file, data_dir):
    data = tmp_path / "data"
    assert run_cli(["data", "prepare", "--source", str(corpus_file), "--out", str(data), "--near-dup", "0"], tmp_path, limit=None)[0] == 0
    before = snapshot(data)
    code, err = run_cli(["data", "prepare", "--source", str(corpus_file), "--out", str(data), "--near-dup", "0", "--force",
                         "--min-chars", "5"], tmp_path, limit=8 * 1024)
    assert code == 2 and len(err) == 1 and "file size limit" in err[0]
    assert snapshot(data) == before and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    tok = tmp_path / "tok"
    code, err = run_cli(["tokenizer", "train", "--data", str(data_dir), "--out", str(tok), "--vocab-size", "400"],
                        tmp_path, limit=4 * 1024)
    assert code == 2 and len(err) == 1 and "file size limit" in err[0]
    assert not tok.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_permission_denied_is_one_line(tmp_path, corpus_file):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = run_cli(["data", "prepare", "--source", str(corpus_file), "--out", str(locked / "d"), "--near-dup", "0"], tmp_path,
                            limit=None)
    finally:
        locked.chmod(0o755)
    assert code == 2 and len(err) == 1 and "permission denied" in err[0]


def test_replacing_a_folder_never_leaves_it_half_deleted(tmp_path, monkeypatch):
    """A checkpoint written again over an older one of the same step: the old folder is moved aside in one
    rename before it is deleted, so a kill during the deletion leaves the new folder whole in its place."""
    import fidan.runtime.io as io

    target = tmp_path / "step-000008"
    target.mkdir()
    for name in ("checksums.json", "model.safetensors", "state.pt"):
        (target / name).write_text("old")

    def killed_midway(folder, ignore_errors=False):
        os.remove(min(os.scandir(folder), key=lambda e: e.name).path)  # one file gone, then:
        raise KeyboardInterrupt  # stands for a SIGKILL while the old files are being deleted

    monkeypatch.setattr(io.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt), io.atomic_dir(target) as tmp:
        for name in ("checksums.json", "model.safetensors", "state.pt"):
            (tmp / name).write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["checksums.json", "model.safetensors", "state.pt"]
    assert {(target / n).read_text() for n in ("checksums.json", "model.safetensors", "state.pt")} == {"new"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".old.tmp")]  # what resume cleans up


def test_pruning_old_checkpoints_never_leaves_one_half_deleted(tmp_path, monkeypatch):
    """Keeping the newest checkpoints deletes older ones; killed mid-deletion, none is left half there."""
    import fidan.runtime.io as io
    from fidan.artifacts.runs import save_checkpoint
    from fidan.model.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=1, n_embd=8))
    save_checkpoint(tmp_path, 2, model, {"step": 2}, keep=2)
    save_checkpoint(tmp_path, 4, model, {"step": 4}, keep=2)

    def killed_midway(folder, ignore_errors=False):
        os.remove(min(os.scandir(folder), key=lambda e: e.name).path)  # checksums.json goes first
        raise KeyboardInterrupt

    monkeypatch.setattr(io.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 6, model, {"step": 6}, keep=2)  # prunes step 2
    assert [c.name for c in checkpoint_dirs(tmp_path)] == ["step-000004", "step-000006"]
    assert all(checkpoint_damage(c) is None for c in checkpoint_dirs(tmp_path))
