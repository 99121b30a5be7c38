"""Long conversations and the chat page: the oldest turns are dropped (one function for `fidan chat` and
`fidan serve`), the answer keeps its room, and the page holds a 10-turn conversation in headless Chromium,
in Turkish, with its notes and errors."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from test_serve import chat_run, engine_answer, serving  # noqa: E402, F401  (chat_run: a fixture)

from fidan.artifacts.runs import copy_tokenizer, save_weights  # noqa: E402
from fidan.model.gpt import GPT  # noqa: E402
from fidan.serving.server import build_app  # noqa: E402
from fidan.text.chat_fit import fit_turns, prompt_room  # noqa: E402
from fidan.text.chat_template import encode_chat  # noqa: E402

SYSTEM = {"role": "system", "content": "Kısa cevap ver."}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page_run(chat_run, tmp_path_factory):  # noqa: F811
    """A model that never ends its answer early, so the page has a long answer to stream: its final norm
    gives one fixed vector, whatever the input, and only the row of one whole word points along it."""
    _, model, tok = chat_run
    rigged = GPT(model.config)
    rigged.load_state_dict(model.state_dict())
    with torch.no_grad():
        rigged.ln_f.weight.zero_()
        rigged.ln_f.bias.copy_(torch.randn(model.config.n_embd, generator=torch.Generator().manual_seed(1)))
        word = tok.encode(" ve")[0]  # a token that is whole text (a lone UTF-8 byte would be held back)
        rigged.lm_head.weight.zero_()
        rigged.lm_head.weight[word] = rigged.ln_f.bias
    run = tmp_path_factory.mktemp("page_run") / "mini-chat"
    save_weights(rigged, run)
    copy_tokenizer(tok, run)
    return run, rigged.eval(), tok


def conversation(n_turns: int, last: str = "Son soru: hangisi?") -> list[dict]:
    history = []
    for i in range(n_turns):
        history += [{"role": "user", "content": f"Soru {i}: bu ne?"}, {"role": "assistant", "content": f"Cevap {i}."}]
    return [SYSTEM, *history, {"role": "user", "content": last}]


def oracle(messages: list[dict], encode, room: int) -> int:
    """The fewest oldest turns to drop, found one by one (fit_turns bisects)."""
    k = 0
    while len(encode([messages[0], *messages[1 + 2 * k:]])) > room and 1 + 2 * k < len(messages) - 1:
        k += 1
    return k


def test_fit_turns_keeps_the_system_and_the_last_turn_and_drops_the_oldest_first(chat_run):  # noqa: F811
    tok = chat_run[2]
    calls = []

    def encode(messages):
        calls.append(len(messages))
        return encode_chat(tok, messages, add_generation_prompt=True)[0]

    messages = conversation(8)
    full = encode(messages)
    assert fit_turns(messages, encode, len(full)).ids == full  # it fits: nothing dropped
    alone = len(encode([SYSTEM, messages[-1]]))
    for room in range(alone, len(full) + 1, 3):
        fitted = fit_turns(messages, encode, room)
        k = oracle(messages, encode, room)
        assert fitted.dropped == k and k >= (room < len(full))
        assert fitted.messages == [SYSTEM, *messages[1 + 2 * k:]]  # the oldest turns went, whole
        assert fitted.ids == encode(fitted.messages) and len(fitted.ids) <= room
    hopeless = fit_turns(messages, encode, alone - 1)  # even the last turn alone is too long: all dropped
    assert hopeless.messages == [SYSTEM, messages[-1]] and not hopeless.fits(alone - 1)
    calls.clear()
    fit_turns(conversation(300), encode, alone + 20)
    assert len(calls) <= 12  # a bisection, not one encoding per turn
    assert prompt_room(96, 20) == 76 and prompt_room(96, 500) == 48  # the reserve is at most half the window


def test_the_server_drops_the_oldest_turns_so_the_answer_keeps_its_room(page_run):
    _, _, tok = page_run

    def encode(messages):
        return encode_chat(tok, messages, add_generation_prompt=True)[0]

    n = 0  # the fewest turns whose prompt fits the window but leaves less than 20 tokens for the answer
    while len(encode(conversation(n))) <= 96 - 20:
        n += 1
    messages = conversation(n)
    assert len(encode(messages)) < 96  # the old server answered it, with fewer than 20 tokens
    room = prompt_room(96, 20)
    app = build_app(str(page_run[0]), device="cpu", max_tokens=64)
    try:
        with TestClient(app) as c:
            r = c.post("/v1/chat/completions", json={"model": "mini-chat", "messages": messages, "max_tokens": 20,
                                                      "temperature": 0})
            assert r.status_code == 200, r.text
            k = oracle(messages, encode, room)
            assert k >= 1 and r.headers["x-fidan-dropped-turns"] == str(k)
            usage = r.json()["usage"]
            assert usage["prompt_tokens"] == len(encode([SYSTEM, *messages[1 + 2 * k:]]))
            assert usage["completion_tokens"] == 20  # the whole answer asked for, not what was left
            short = c.post("/v1/chat/completions", json={"model": "mini-chat", "messages": conversation(1),
                                                          "max_tokens": 5})
            assert short.headers["x-fidan-dropped-turns"] == "0"
            # a last question too long even alone: refused as before, saying the old turns were dropped
            r = c.post("/v1/chat/completions", json={"model": "mini-chat", "max_tokens": 20,
                                                      "messages": conversation(3, "kelime " * 300)})
            error = r.json()["error"]
            assert r.status_code == 400 and error["code"] == "context_length_exceeded"
            assert "even with its 3 oldest turns dropped" in error["message"] and "reads at most" in error["message"]
    finally:
        app.state.batcher.close()


def launch(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (`make test` installs it)")
def test_the_chat_page_streams_an_answer_in_a_real_browser(page_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    system, question = "Kısa cevap ver.", "Türkiye'nin başkenti neresi?"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    want, _ = engine_answer(page_run, messages, 64)  # the page asks for the server's default: 64 tokens here
    assert want.reason == "length" and want.text
    with serving(page_run[0], step_seconds=0.02) as live_server, playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(live_server + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('mini-chat')")
            page.fill("#system", system)
            page.fill("#temperature", "0")
            # every change to the answer bubble is recorded: a streamed answer grows in several steps
            page.evaluate("""() => { window.seen = []; new MutationObserver(() => {
                const a = document.querySelector('.assistant'); if (a) window.seen.push(a.textContent);
            }).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true}); }""")
            page.fill("#prompt", question)
            page.keyboard.press("Enter")
            page.wait_for_selector(".assistant:not(.pending)", timeout=30_000)
            assert page.inner_text(".user") == question
            shown = page.eval_on_selector(".assistant", "e => e.textContent")
            assert shown == want.text
            partial = {s for s in page.evaluate("window.seen") if s and s != shown}
            assert len(partial) >= 2, "the answer appeared at once, not streamed"
            page.screenshot(path=os.environ.get("FIDAN_CHAT_SCREENSHOT", str(tmp_path / "chat.png")))
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (`make test` installs it)")
def test_ten_turns_on_the_chat_page_fit_by_dropping_the_oldest(page_run):
    """The model's window (96) holds about three turns: without dropping, the fourth question would leave
    the answer a few tokens and a later one would be refused. Every answer here has its 12 tokens."""
    playwright = pytest.importorskip("playwright.sync_api")
    tok = page_run[2]
    questions = [f"{i + 1}. soru: Türkiye'de hangi şehir güzel?" for i in range(10)]
    want, _ = engine_answer(page_run, [SYSTEM, {"role": "user", "content": questions[0]}], 12)
    assert want.reason == "length"  # this model never ends an answer: each one runs to its limit
    whole = [SYSTEM] + [m for q in questions for m in ({"role": "user", "content": q},
                                                         {"role": "assistant", "content": want.text})]
    assert len(encode_chat(tok, whole[:-1], add_generation_prompt=True)[0]) > 3 * 96  # far past the window
    with serving(page_run[0], default_max_tokens=12) as live_server, playwright.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            dropped, sent = [], []
            page.on("response", lambda r: r.url.endswith("/v1/chat/completions") and r.ok and dropped.append(
                int(r.headers["x-fidan-dropped-turns"])))
            page.on("request", lambda r: r.url.endswith("/v1/chat/completions") and sent.append(
                len(r.post_data_json["messages"])))
            page.goto(live_server + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('mini-chat')")
            page.fill("#system", SYSTEM["content"])
            page.fill("#temperature", "0")
            for i, question in enumerate(questions):
                page.fill("#prompt", question)
                page.keyboard.press("Enter")
                page.wait_for_function(f"document.querySelectorAll('.assistant:not(.pending)').length === {i + 1}"
                                       " || document.querySelector('.error')", timeout=30_000)
                error = page.query_selector(".error")
                assert error is None, f"turn {i + 1}: {error.text_content()}"
            answers = page.eval_on_selector_all(".assistant", "es => es.map(e => e.textContent)")
            assert answers == [want.text] * 10  # all ten, each whole: the reserve kept the answer's room
            notes = page.eval_on_selector_all(".note", "es => es.map(e => e.textContent)")
            assert sum(dropped) >= 5 and sum(d > 0 for d in dropped) == sum("unutuldu" in n for n in notes)
            assert sum("uzunluk sınırına" in n for n in notes) == 10  # finish_reason "length", said in Turkish
            assert max(sent) <= 7  # the page stops sending what the model no longer sees

            page.fill("#prompt", "kelime " * 200)  # too long even alone: the server's error, in Turkish
            page.keyboard.press("Enter")
            error = page.wait_for_selector(".error", timeout=30_000).text_content()
            assert error.startswith("Hata: Mesajınız modelin okuyabileceğinden uzun")
            assert "Ayrıntı: the prompt is" in error and "reads at most" in error  # with the server's detail
            assert len(page.query_selector_all(".assistant")) == 10  # no empty bubble left for the failed one
        finally:
            browser.close()
