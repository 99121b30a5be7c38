"""`fidan chat`: answers stop at </RESP>, history and the REPL commands."""

from __future__ import annotations

import pytest
import torch

from fidan.artifacts.runs import copy_tokenizer, save_weights
from fidan.artifacts.tokenizer import add_special_tokens
from fidan.conversation.repl import ChatSession, chat, run_repl
from fidan.errors import FidanError
from fidan.model.gpt import GPT, GPTConfig
from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, RESP_END, encode_chat


@pytest.fixture(scope="module")
def chat_tok(tmp_path_factory, tokenizer_dir):
    return add_special_tokens(tokenizer_dir, tmp_path_factory.mktemp("chat_tok") / "t", CHAT_TOKENS, CHAT_TEMPLATE)


@torch.no_grad()
def rigged_model(vocab_size: int, favourite: int) -> GPT:
    """A model whose next token is always ``favourite``: the final norm outputs a fixed vector and only
    that token's output row points along it."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    model.ln_f.weight.zero_()
    model.ln_f.bias.zero_()
    model.ln_f.bias[0] = 1.0
    model.lm_head.weight.zero_()
    model.lm_head.weight[favourite, 0] = 20.0
    return model.eval()


def test_answer_stops_at_end_of_response(chat_tok):
    end = chat_tok.tokenizer.token_to_id(RESP_END)
    session = ChatSession(rigged_model(chat_tok.vocab_size, end), chat_tok, temperature=0.0, max_new_tokens=30)
    calls = []
    real = session.model.forward

    def counting(idx, *args, **kwargs):
        calls.append(idx.shape)
        return real(idx, *args, **kwargs)

    session.model.forward = counting
    assert session.reply("Merhaba") == ""
    assert len(calls) == 1  # the prompt's one pass gave </RESP>: no decoding step after it
    assert session.history[-1] == {"role": "assistant", "content": ""}


def test_answer_runs_to_the_limit_without_end_token(chat_tok):
    a = chat_tok.encode("a")[0]
    session = ChatSession(rigged_model(chat_tok.vocab_size, a), chat_tok, temperature=0.0, max_new_tokens=7)
    pieces: list[str] = []
    answer = session.reply("Merhaba", on_text=pieces.append)
    assert answer == chat_tok.decode([a] * 7)
    assert "".join(pieces) == answer  # streamed text adds up to the answer


def test_history_system_and_truncation(chat_tok):
    a = chat_tok.encode("a")[0]
    session = ChatSession(rigged_model(chat_tok.vocab_size, a), chat_tok, system="Kısa cevap ver.",
                          temperature=0.0, max_new_tokens=4)
    session.reply("Bir")
    ids = session.prompt_ids("İki")
    expected, _ = encode_chat(chat_tok, [{"role": "system", "content": "Kısa cevap ver."},
                                         {"role": "user", "content": "Bir"},
                                         {"role": "assistant", "content": chat_tok.decode([a] * 4)},
                                         {"role": "user", "content": "İki"}], add_generation_prompt=True)
    assert ids == expected
    for i in range(6):  # a long conversation: old turns are dropped to leave room for the answer
        session.reply(f"Bir soru daha ({i})?")
    ids = session.prompt_ids("Son soru")
    assert len(ids) <= 64 - 4 and 2 <= len(session.history) < 14
    system, _ = encode_chat(chat_tok, [{"role": "system", "content": "Kısa cevap ver."}])
    assert ids[:len(system)] == system  # the system message stays; the oldest turns went first
    assert session.history[-2]["content"] == "Bir soru daha (5)?"
    assert [m["role"] for m in session.history] == ["user", "assistant"] * (len(session.history) // 2)


def test_repl_commands(chat_tok, tmp_path, monkeypatch, capsys):
    end = chat_tok.tokenizer.token_to_id(RESP_END)
    run = tmp_path / "run"
    save_weights(rigged_model(chat_tok.vocab_size, end), run)
    copy_tokenizer(chat_tok, run)
    lines = iter(["/temp 0", "/temp x", "/system Sen bir asistansın.", "Merhaba", "/reset", "/nope", "/exit", "never"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    chat(model=str(run), device="cpu")
    out = capsys.readouterr().out
    assert "(temperature 0)" in out and "/temp needs a number" in out
    assert "system message set" in out and "(new conversation)" in out and "unknown command /nope" in out
    assert next(lines) == "never"  # /exit ended the loop

    session = ChatSession(rigged_model(chat_tok.vocab_size, end), chat_tok)
    feed = iter(["/system Kısa konuş.", "/temp 0.3", "soru"])

    def read(prompt: str) -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    written: list[str] = []
    run_repl(session, read=read, write=written.append)
    assert session.system == "Kısa konuş." and session.temperature == 0.3
    assert [m["role"] for m in session.history] == ["user", "assistant"]


def test_chat_needs_a_chat_model(tokenizer_dir, tmp_path, capsys):
    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.cli import main

    tok = load_tokenizer(tokenizer_dir)
    run = tmp_path / "plain"
    save_weights(GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16)), run)
    copy_tokenizer(tok, run)
    assert main(["chat", "--model", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fidan: error: ") and err.count("\n") == 1  # one line, no traceback
    assert "has no chat token" in err and "fidan sft" in err  # says what is missing and how to get it


def test_chat_bad_settings_say_which_flag(chat_tok, tmp_path, capsys):
    from fidan.cli import main

    run = tmp_path / "run"
    save_weights(rigged_model(chat_tok.vocab_size, 0), run)
    copy_tokenizer(chat_tok, run)
    for flag, value in [("--temperature", "-1"), ("--max-new-tokens", "0"), ("--top-p", "2"),
                        ("--repetition-penalty", "0")]:
        assert main(["chat", "--model", str(run), "--device", "cpu", flag, value]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"fidan: error: {flag} must be") and err.count("\n") == 1, err
    with pytest.raises(FidanError, match="--top-k"):
        ChatSession(rigged_model(chat_tok.vocab_size, 0), chat_tok, top_k=-1)


@pytest.mark.parametrize("order", ["function first", "module first"])
def test_fidan_chat_is_the_command_and_the_package_in_any_order(order, tmp_path):
    import subprocess
    import sys

    first, second = "f = fidan.chat", "import fidan.conversation.repl; s = fidan.conversation.repl.ChatSession"
    if order == "module first":
        first, second = second, first
    code = (f"import fidan\n{first}\n{second}\n"
            "assert fidan.conversation.repl.ChatSession.__name__ == 'ChatSession' and callable(fidan.chat)\n"
            f"fidan.chat(model={str(tmp_path / 'missing')!r})\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "BadInput: model not found" in result.stderr, result.stderr  # the command ran and refused


@pytest.mark.parametrize("name", ["report", "demo"])
def test_report_and_demo_are_callable_after_their_modules_load(name, tmp_path):
    """Like fidan.chat: importing fidan.reporting.report or fidan.demos.pipeline leaves the command a function."""
    import subprocess
    import sys

    modules = {"report": "fidan.reporting.report", "demo": "fidan.demos.pipeline"}
    call = {"report": f"fidan.report(run={str(tmp_path / 'missing')!r})",
            "demo": f"fidan.demo(out={str(tmp_path / 'd')!r}, minutes=-1)"}
    code = f"import fidan, {modules[name]}\nassert callable(fidan.{name})\n{call[name]}\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ("has no config.yaml" if name == "report" else "--minutes must be positive") in result.stderr, result.stderr
