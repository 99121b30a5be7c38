"""`fidan tokenizer encode`: the piecewise encoder writes exactly what encoding document by document writes,
with one process or several, continues after a crash, and refuses damaged input with one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fidan.artifacts import token_encode
from fidan.artifacts.datadir import SPLITS, iter_split
from fidan.artifacts.token_encode import encode_splits, tokens_dir, work_dir
from fidan.artifacts.tokenizer import load_tokenizer
from fidan.cli import main
from fidan.errors import BadInput

PIECE = 3000  # bytes: the tiny corpus's train shard becomes about a dozen pieces


@pytest.fixture()
def data(tmp_path, data_dir):
    """A private copy of the session's data folder: these tests write and damage it."""
    copy = tmp_path / "d"
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("tokens"))
    return copy


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)


def reference(data, tok) -> dict[str, bytes]:
    """Each document encoded on its own, followed by the end-of-text token, concatenated."""
    out = {}
    for split in SPLITS:
        ids: list[int] = []
        for doc in iter_split(data, split):
            ids += tok.tokenizer.encode(doc, add_special_tokens=False).ids + [tok.eos_id]
        out[split] = np.array(ids, dtype=np.uint16).tobytes()
    return out


def written(folder) -> dict[str, bytes]:
    return {split: (folder / f"{split}.bin").read_bytes() for split in SPLITS}


@pytest.mark.parametrize("workers", [1, 2])
def test_same_bytes_as_encoding_document_by_document(data, tok, workers):
    out = encode_splits(data, tok, workers=workers, piece_bytes=PIECE)
    assert out == tokens_dir(data, tok)
    assert written(out) == reference(data, tok)
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    assert list(meta) == ["artifact", "artifact_version", "tokenizer", "tokenizer_sha256", "vocab_size", "eos_id",
                          "dtype", "splits", "seconds"]
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    for split in SPLITS:
        assert meta["splits"][split] == {"tokens": len(reference(data, tok)[split]) // 2,
                                         "bytes": manifest["splits"][split]["bytes"],
                                         "documents": manifest["splits"][split]["documents"]}
    assert not work_dir(data, tok).exists()


def test_cli_workers_flag_and_progress_in_bytes(data, tok, tokenizer_dir, capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar shows (a log file gets none)
    assert main(["tokenizer", "encode", "--data", str(data), "--tokenizer", str(tokenizer_dir), "--workers", "2"]) == 0
    assert written(tokens_dir(data, tok)) == reference(data, tok)
    err = capsys.readouterr().err
    assert "B/s" in err and "2/2 pieces" in err


def test_a_crash_keeps_finished_pieces_and_a_rerun_continues(data, tok, monkeypatch, capsys):
    real, calls = token_encode.encode_piece, []

    def crash_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a Ctrl-C between pieces
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(token_encode, "encode_piece", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        encode_splits(data, tok, workers=1, piece_bytes=PIECE)
    out, work = tokens_dir(data, tok), work_dir(data, tok)
    assert not out.exists()  # nothing that could pass for finished token files
    assert sorted(p.name for p in work.glob("*.bin")) == sorted(p.name for p in calls)
    n = len(token_encode.plan_pieces(data, json.loads((data / "manifest.json").read_text()), PIECE))
    assert n > 4

    # The rerun encodes only the rest (here in two worker processes), then assembles the same bytes.
    monkeypatch.setattr(token_encode, "encode_piece", real)
    capsys.readouterr()
    encode_splits(data, tok, workers=2, piece_bytes=PIECE)
    assert f"resuming: 2 of {n} pieces done" in capsys.readouterr().out
    assert written(out) == reference(data, tok)
    assert not work.exists()


def test_force_starts_over(data, tok, monkeypatch, capsys):
    real = token_encode.encode_piece
    calls = []

    def crash_after_one(*args, **kwargs):
        if calls:
            raise RuntimeError("killed")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(token_encode, "encode_piece", crash_after_one)
    with pytest.raises(RuntimeError):
        encode_splits(data, tok, workers=1, piece_bytes=PIECE)
    counted = []
    monkeypatch.setattr(token_encode, "encode_piece", lambda *a, **k: counted.append(1) or real(*a, **k))
    capsys.readouterr()
    encode_splits(data, tok, workers=1, piece_bytes=PIECE, force=True)
    assert "resuming" not in capsys.readouterr().out
    assert len(counted) == len(token_encode.plan_pieces(data, json.loads((data / "manifest.json").read_text()), PIECE))
    assert written(tokens_dir(data, tok)) == reference(data, tok)


def one_error_line(argv, capsys) -> str:
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in err if line.startswith("fidan: error:")]
    assert code == 2 and len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


def test_a_damaged_shard_is_refused(data, tokenizer_dir, capsys):
    shard = data / "train-00000.jsonl"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 1
    shard.write_bytes(bytes(raw))
    line = one_error_line(["tokenizer", "encode", "--data", str(data), "--tokenizer", str(tokenizer_dir)], capsys)
    assert "train-00000.jsonl does not match its sha256" in line and "fidan data prepare" in line


def test_a_missing_shard_is_refused(data, tokenizer_dir, capsys):
    (data / "val-00000.jsonl").unlink()
    line = one_error_line(["tokenizer", "encode", "--data", str(data), "--tokenizer", str(tokenizer_dir)], capsys)
    assert "val-00000.jsonl is missing" in line


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bad_line_is_named_even_from_a_worker(data, tok, workers):
    """A shard whose manifest hash was made to match still cannot hide a line that is not a record."""
    import hashlib

    shard = data / "train-00000.jsonl"
    lines = shard.read_bytes().split(b"\n")
    lines[150] = b'{"text": "yarim'
    shard.write_bytes(b"\n".join(lines))
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    manifest["splits"]["train"]["files"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
    (data / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BadInput, match="train-00000.jsonl, line 151: not a JSON record"):
        encode_splits(data, tok, workers=workers, piece_bytes=PIECE)
    assert not tokens_dir(data, tok).exists()


@pytest.mark.parametrize("value", ["0", "-2"])
def test_workers_must_be_positive(data, tokenizer_dir, value, capsys):
    line = one_error_line(["tokenizer", "encode", "--data", str(data), "--tokenizer", str(tokenizer_dir),
                           "--workers", value], capsys)
    assert "--workers must be a whole number of at least 1" in line
