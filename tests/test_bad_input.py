"""The bad-input matrix: every command, given bad input, answers with one line that says what is wrong and
how to fix it, exits with status 2, and loses nothing on disk.

The matrix is data: a new command adds rows to ``MATRIX``, not code. In a row's arguments ``{data}`` is a
prepared data folder, ``{tok}`` its tokenizer, ``{run}`` a tiny trained run, ``{cls}`` a trained TF-IDF
classifier, ``{chat_tok}`` a tokenizer with the chat markers added (6 tokens more than the run's), and any
other name a file of ``FILES`` written into the test's folder.
"""

from __future__ import annotations

import gzip
import json
import shlex

import pytest

from fidan.cli import COMMANDS, main

FILES = {
    "empty.jsonl": b"",
    "latin1.txt": "Çok güzel bir gün, hava çok güzel ve ürünler çok iyi.\n".encode("latin-1"),
    "bad.jsonl": b'{"text": "iyi bir metin burada duruyor"}\n{"text": "yarim\n',
    "cols.csv": "metin,etiket\nçok güzel,olumlu\nhiç iyi değil,olumsuz\n".encode(),
    "single.jsonl": "".join(json.dumps({"text": f"metin {i}", "label": "x"}) + "\n" for i in range(20)).encode(),
    "labelled.jsonl": "".join(json.dumps({"text": f"metin {i}", "label": "ab"[i % 2]}) + "\n"
                              for i in range(40)).encode(),
    "badchat.jsonl": b'{"instruction": "yarim\n{"instruction": "Baskent neresi?", "output": ',
    "badlabel.jsonl": b'{"text": "iyi bir metin", "label": "a"}\n{"text": "yarim\n',
    "unseen.jsonl": b'{"text": "yeni bir metin", "label": "c"}\n',
    "chat.jsonl": "".join(json.dumps({"instruction": f"Başkent neresi {i}?", "output": "Ankara."}) + "\n"
                          for i in range(4)).encode(),
    "bad.yaml": b"max_steps: [1, 2\n",
    "unknown.yaml": b"max_stepz: 10\n",
    "config.yaml": b"args: {}\n",
    "notes.txt": "Ankara'da kış soğuk geçer.\n".encode(),
    "existing/keep.txt": b"do not lose me\n",
    # A folder with a good file and a .gz cut off halfway, as a copy interrupted mid-transfer leaves it.
    "crawl/a.txt": "Ankara'da kış soğuk geçer, yazın ise sıcak ve kuru olur.\n".encode(),
    "crawl/b.jsonl.gz": gzip.compress("".join(json.dumps({"text": f"Bu {i}. belge Türkçe yazılmıştır."}) + "\n"
                                              for i in range(2000)).encode())[:300],
    "english.jsonl": "".join(json.dumps({"text": f"This is sentence number {i}, written in English about the "
                                                 "weather in the garden in spring."}) + "\n"
                             for i in range(20)).encode(),
}

# (command line, what the one line must contain)
MATRIX: list[tuple[str, str]] = [
    # data prepare
    ("data prepare --source missing.jsonl --out out", "source path not found: missing.jsonl"),
    ("data prepare --source latin1.txt --out out", "latin1.txt"),
    ("data prepare --source bad.jsonl --out out", "bad.jsonl:2"),
    ("data prepare --source empty.jsonl --out out", "empty.jsonl"),
    ("data prepare --source notes.txt --out out --val-fraction 1.5", "--val-fraction"),
    ("data prepare --source notes.txt --out existing", "already exists"),
    ("data prepare --source notes.txt --out out --near-dup 1.5", "--near-dup must be in (0, 1)"),
    ("data prepare --config bad.yaml --source notes.txt --out out", "bad.yaml"),
    ("data prepare --config unknown.yaml --source notes.txt --out out", "max_stepz"),
    ("data prepare --source notes.txt --out out --skip-filter spam", "unknown filter 'spam' in --skip-filter"),
    ("data prepare --source notes.txt --out out --quality-set stop_words.min_count=-1",
     "stop_words.min_count must be a whole number, at least 0"),
    ("data prepare --source notes.txt --out out --quality-set lorem.x=1", "unknown filter 'lorem'"),
    ("data prepare --source hf:owner/name?spilt=train --out out", "unknown key 'spilt'"),
    ("data prepare --source notes.txt --out out --workers 0", "--workers must be at least 1"),
    ("data prepare --source crawl --out out --workers 2", "crawl/b.jsonl.gz is corrupt or truncated"),
    ("data prepare --source english.jsonl --out out", "no Turkish text left in english.jsonl"),
    ("data prepare --source notes.txt --out out --executor slurm", "--executor-option partition=..."),
    ("data prepare --source notes.txt --out out --quality-set language.min_confidence=2",
     "language.min_confidence must be a number in [0, 1]"),
    # data inspect
    ("data inspect missing", "data folder not found: missing"),
    ("data inspect {data} --filter spam", "no quality filter 'spam'"),
    # data instructions
    ("data instructions --out existing", "already exists"),
    # tokenizer
    ("tokenizer train --data missing --out t", "missing"),
    ("tokenizer train --data {data} --out existing", "already exists"),
    ("tokenizer train --data {data} --out t --algorithm magic", "magic"),
    ("tokenizer eval --tokenizer missing --text notes.txt", "missing"),
    ("tokenizer encode --data missing --tokenizer {tok}", "missing"),
    ("tokenizer encode --data {data} --tokenizer missing", "missing"),
    ("tokenizer import --out existing", "already exists"),
    # pretraining
    ("pretrain --data {data} --tokenizer missing --out r", "tokenizer not found"),
    ("pretrain --data missing --tokenizer {tok} --out r", "missing"),
    ("pretrain --data {data} --tokenizer {tok} --out r --preset huge", "unknown preset 'huge'"),
    ("pretrain --data {data} --tokenizer {tok} --out r --lr -1", "--lr must be positive"),
    ("pretrain --data {data} --tokenizer {tok} --out {run}", "already exists"),
    ("pretrain --data {data} --tokenizer {tok} --out r --max-steps 0", "--max-steps must be positive"),
    ("pretrain --config unknown.yaml --data {data} --tokenizer {tok} --out r", "max_stepz"),
    ("pretrain --data {data} --tokenizer {chat_tok} --out {run} --resume", "tokenizer"),
    # tuning and chat
    ("sft --model missing --data labelled.jsonl --out s", "missing"),
    ("sft --model {run} --data badchat.jsonl --out s", "badchat.jsonl:1: malformed JSON"),
    ("sft --model {run} --data notes.txt --out s", "notes.txt"),
    ("sft --model {run} --data empty.jsonl --out s", "empty.jsonl"),
    ("sft --model {cls} --data labelled.jsonl --out s", "text classifier"),
    ("chat --model missing", "missing"),
    ("serve --model missing", "missing"),
    ("serve --model {run} --max-batch 0", "--max-batch must be >= 1"),
    ("serve --model {run} --precision fp8", "--precision: invalid choice: 'fp8' (choose from 'auto', 'fp32'"),
    ("serve --model {run} --port 70000", "--port must be in 1..65535"),
    # generation and evaluation
    ("generate --model missing --prompt a", "missing"),
    ("generate --model {run} --tokenizer {chat_tok} --prompt a", "tokenizer"),
    ("generate --model {run} --prompt a --temperature -1", "--temperature"),
    ("generate --model {run} --prompt a --max-new-tokens 0", "--max-new-tokens must be positive"),
    ("generate --model {run} --prompt a --top-p 1.5", "--top-p"),
    ("generate --model {run} --prompt a --precision fp8", "--precision: invalid choice: 'fp8' (choose from 'auto'"),
    ("eval bpb --model {run} --text notes.txt --block-size 100000", "outside 1..32"),
    ("eval bpb --model {run} --text missing.txt", "missing.txt"),
    ("eval bpb --model {run} --text latin1.txt", "latin1.txt"),
    ("eval mc --model {run} --data no-such-set", "no-such-set"),
    ("eval lm-eval --model {run} --tasks tr-case --batch-size 0", "--batch-size must be positive"),
    ("eval samples --model missing --prompt a", "missing"),
    ("report missing", "missing"),
    ("compare {run} {data}", "not a run folder (it has no config.yaml)"),
    # adapting
    ("export hf --model missing --out h", "missing"),
    ("export hf --model {run} --out existing", "existing"),
    ("export gguf --model missing --out g", "model not found: missing"),
    ("export gguf --model {run} --out existing", "existing"),
    ("vocab extend --base {run} --data {data} --add 10 --out v", "transformers"),
    ("adapt plan --model missing/at/all", "model not found: missing/at/all"),
    ("adapt plan --model {run} --seq 0", "--seq"),
    ("generate --model fidan-test/absent-model", "not in the Hugging Face cache"),
    ("pretrain --init {run} --data {data} --out q --lora-r 4 --qlora", "is a fidan run: 4-bit loading"),
    ("pretrain --init {run} --data {data} --tokenizer {chat_tok} --out q", "has a vocabulary of"),
    ("sft --model {run} --data chat.jsonl --out s --chat-template base", "no chat template of its own"),
    # classification
    ("classify data builtin:nothing --out c", "builtin:nothing"),
    ("classify train --data cols.csv --out c", "its columns are: metin, etiket (pass --text-column)"),
    ("classify train --data single.jsonl --out c", "only one label"),
    ("classify train --data badlabel.jsonl --out c", "badlabel.jsonl:2"),
    ("classify train --data labelled.jsonl --out c --pooling max", "invalid choice: 'max'"),
    ("classify train --data labelled.jsonl --out c --model nowhere/at/all", "no such folder"),
    ("classify eval --model {cls} --data unseen.jsonl", "label 'c'"),
    ("classify predict --model {run} --input notes.txt", "not a text classifier"),
    ("classify predict --model {cls} --input latin1.txt", "latin1.txt"),
    ("classify predict --model {cls} --input notes.txt --batch-size 0", "--batch-size must be positive"),
    # benchmarks and demos
    ("bench peak --size 0", "--size"),
    ("bench train --data missing --tokenizer {tok}", "missing"),
    ("bench speedrun --minutes 0 --out b", "--minutes"),
    ("bench infer --model {run} --new-tokens 32", "no room for a prompt"),
    ("demo --minutes 0 --out d", "--minutes"),
    ("demo adapt --base-minutes 0 --out d", "--base-minutes"),
    ("demo classify --epochs 0 --out d", "--epochs"),
]


def test_every_command_is_in_the_matrix():
    covered = {" ".join(shlex.split(row)[:2]) if " ".join(shlex.split(row)[:2]) in COMMANDS else shlex.split(row)[0]
               for row, _ in MATRIX}
    assert set(COMMANDS) - covered == set()


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir, tokenizer_dir):
    """A tiny trained run, a TF-IDF classifier and a tokenizer with 6 more tokens, built once."""
    from fidan.artifacts.tokenizer import add_special_tokens
    from fidan.classify.train import classify_train
    from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS
    from fidan.training.pretrain import pretrain

    root = tmp_path_factory.mktemp("world")
    pretrain(data=str(data_dir), tokenizer=str(tokenizer_dir), out=str(root / "run"), max_steps=2, batch_size=2,
             block_size=32, depth=1, eval_every=2, eval_windows=2, quiet=True, precision="fp32", peak_gflops=100.0)
    (root / "labelled.jsonl").write_bytes(FILES["labelled.jsonl"])
    classify_train(data=str(root / "labelled.jsonl"), out=str(root / "cls"), quiet=True)
    add_special_tokens(tokenizer_dir, root / "chat_tok", CHAT_TOKENS, CHAT_TEMPLATE)
    return {"data": data_dir, "tok": tokenizer_dir, "run": root / "run", "cls": root / "cls",
            "chat_tok": root / "chat_tok"}


def snapshot(*folders) -> dict:
    return {str(p): p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row,expected", MATRIX, ids=[r for r, _ in MATRIX])
def test_bad_input_is_one_line_exit_2_and_nothing_lost(row, expected, world, tmp_path, monkeypatch, capsys):
    for name, content in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path, world["run"], world["cls"], world["data"], world["tok"])
    argv = [a.format(**{k: str(v) for k, v in world.items()}) for a in shlex.split(row)]
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    errors = [line for line in err if line.startswith("fidan: error:")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    assert expected in errors[0], errors[0]
    after = snapshot(tmp_path, world["run"], world["cls"], world["data"], world["tok"])
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed or lost
