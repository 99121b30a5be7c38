"""`fidan serve`: the OpenAI API through a test client and the `openai` client on a real port; streamed and
whole answers agree with the engine; limits and bad requests get OpenAI-shaped errors; 50 concurrent greedy
streams on loopback each finish with the engine's answer (the chat page: test_serve_page.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from fidan.artifacts.runs import copy_tokenizer, save_weights  # noqa: E402
from fidan.artifacts.tokenizer import add_special_tokens  # noqa: E402
from fidan.inference import Engine, Sampling  # noqa: E402
from fidan.inference.batcher import Job  # noqa: E402
from fidan.model.gpt import GPT, GPTConfig  # noqa: E402
from fidan.serving.server import build_app  # noqa: E402
from fidan.text.chat_template import CHAT_TEMPLATE, CHAT_TOKENS, encode_chat  # noqa: E402

CHAT = [{"role": "system", "content": "Kısa cevap ver."}, {"role": "user", "content": "Türkiye'nin başkenti neresi?"}]


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory, tokenizer_dir):
    """A run folder with a random model (varied answers) and the chat tokens."""
    tok = add_special_tokens(tokenizer_dir, tmp_path_factory.mktemp("serve_tok") / "t", CHAT_TOKENS, CHAT_TEMPLATE)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=96, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    run = tmp_path_factory.mktemp("serve_run") / "mini-chat"
    save_weights(model, run)
    copy_tokenizer(tok, run)
    return run, model.eval(), tok


@pytest.fixture(scope="module")
def client(chat_run):
    app = build_app(str(chat_run[0]), device="cpu", max_batch=8, max_waiting=64, max_tokens=64, max_body_kb=8)
    with TestClient(app) as c:
        yield c
    app.state.batcher.close()


def engine_answer(chat_run, messages, n, seed=None, temperature=0.0):
    _, model, tok = chat_run
    ids, _ = encode_chat(tok, messages, add_generation_prompt=True)
    end = tok.tokenizer.token_to_id("</RESP>")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    done = Engine(model, decode=tok.decode).generate([ids], n, Sampling(temperature, None, 1.0), gen,
                                                     stop_ids={end, tok.eos_id})
    return done[0], len(ids)


NEAR_TIE = 1e-4  # the top-2 logit gap below which two equal computations may pick different greedy tokens


def parts_only_at_a_near_tie(chat_run, prompt: list[int], want, got: str) -> bool:
    """Whether a served greedy answer ``got`` that differs from the engine's (``want``, a Completion) parts
    from it only after a near-tie. A row's logits in a batch are not bit for bit those of the row alone, so
    where the two best tokens are within ``NEAR_TIE`` the pick may go either way; anywhere else the answers
    must be equal. The text does not say which token parted first, only that it was at or before the first
    token whose text is no longer a prefix of ``got``: one of those steps must be a near-tie."""
    _, model, tok = chat_run
    window = model.config.block_size
    seen = len(want.tokens) + 1  # the step after the engine's last token (it stopped where the server did not)
    for k in range(len(want.tokens)):
        if not got.startswith(tok.decode(want.tokens[:k + 1]).rstrip("\ufffd")):
            seen = k + 1
            break
    gaps = []
    with torch.no_grad():
        for j in range(min(seen, len(want.tokens) + 1)):
            logits = model(torch.tensor([(prompt + want.tokens[:j])[-window:]]))[0][0, -1]
            top = logits.topk(2).values
            gaps.append(float(top[0] - top[1]))
    return min(gaps) < NEAR_TIE


def sse_chunks(text: str) -> list:
    lines = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(x) for x in lines[:-1]]


def test_models_health_and_page(client):
    assert client.get("/v1/models").json()["data"][0]["id"] == "mini-chat"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["chat"] and health["window"] == 96
    page = client.get("/")
    assert page.status_code == 200 and "Gönder" in page.text and "Sıcaklık" in page.text


def test_chat_completion_equals_the_engine_and_counts_usage(client, chat_run):
    want, n_prompt = engine_answer(chat_run, CHAT, 20, seed=3, temperature=0.9)
    r = client.post("/v1/chat/completions", json={"model": "mini-chat", "messages": CHAT, "max_tokens": 20,
                                                   "temperature": 0.9, "seed": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": want.text, "refusal": None}
    assert choice["finish_reason"] == ("length" if want.reason == "length" else "stop")
    assert body["usage"]["prompt_tokens"] == n_prompt
    assert body["usage"]["total_tokens"] == n_prompt + body["usage"]["completion_tokens"]


def test_streamed_chat_adds_up_to_the_whole_answer(client, chat_run):
    want, n_prompt = engine_answer(chat_run, CHAT, 24)
    r = client.post("/v1/chat/completions", json={"model": "mini-chat", "messages": CHAT, "max_tokens": 24,
                                                   "temperature": 0, "stream": True,
                                                   "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_chunks(r.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == want.text
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == n_prompt


def test_completions_stop_strings_and_echo(client, chat_run):
    _, model, tok = chat_run
    full = Engine(model, decode=tok.decode).generate([tok.encode("Ankara")], 30, Sampling(0.0))[0].text
    stop = full[5:8]
    r = client.post("/v1/completions", json={"model": "mini-chat", "prompt": "Ankara", "max_tokens": 30,
                                              "temperature": 0, "stop": [stop], "echo": True})
    body = r.json()
    assert body["object"] == "text_completion"
    text = body["choices"][0]["text"]
    assert text == "Ankara" + full[:full.index(stop)] and body["choices"][0]["finish_reason"] == "stop"
    r = client.post("/v1/completions", json={"model": "mini-chat", "prompt": "Ankara", "max_tokens": 30,
                                              "temperature": 0, "stream": True})
    assert "".join(c["choices"][0]["text"] for c in sse_chunks(r.text)) == full


def test_an_answer_past_the_window_slides_as_the_engine_does(client, chat_run):
    """One rule past the window for `fidan serve` and `fidan generate`: the window slides (it once cut
    max_tokens to the window's rest here)."""
    _, model, tok = chat_run
    prompt = "Ankara'da güzel bir gün. " * 5
    ids = tok.encode(prompt)
    assert 50 < len(ids) < 95  # a prompt the server takes, and 64 new tokens run past the window of 96
    want = Engine(model, decode=tok.decode).generate([ids], 64, Sampling(0.0), stop_ids={tok.eos_id})[0]
    r = client.post("/v1/completions", json={"model": "mini-chat", "prompt": prompt, "max_tokens": 64,
                                              "temperature": 0})
    assert r.status_code == 200
    got = r.json()["choices"][0]["text"]
    assert got == want.text or parts_only_at_a_near_tie(chat_run, ids, want, got)
    if want.reason == "length":
        assert r.json()["usage"]["total_tokens"] == len(ids) + 64 > 96


BAD = [
    ("not json", 400, "not valid JSON"),
    ([1, 2], 400, "JSON object"),
    ({"model": "mini-chat"}, 400, "messages"),
    ({"model": "mini-chat", "messages": []}, 400, "messages"),
    ({"model": "mini-chat", "messages": [{"role": "user", "content": "  "}]}, 400, "empty"),
    ({"model": "mini-chat", "messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
    ({"model": "mini-chat", "messages": CHAT, "temperature": "hot"}, 400, "temperature"),
    ({"model": "mini-chat", "messages": CHAT, "temperature": 7}, 400, "temperature"),
    ({"model": "mini-chat", "messages": CHAT, "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "mini-chat", "messages": CHAT, "max_tokens": 10_000}, 400, "at most 64"),
    ({"model": "mini-chat", "messages": CHAT, "n": 3}, 400, "only n=1"),
    ({"model": "mini-chat", "messages": CHAT, "presence_penalty": 0.5}, 400, "penalties are not supported"),
    ({"model": "mini-chat", "messages": CHAT, "stop": ["a", "b", "c", "d", "e"]}, 400, "at most 4"),
    ({"model": "mini-chat", "messages": CHAT, "tempreature": 0.5}, 400, "Unrecognized request argument"),
    ({"model": "gpt-4o", "messages": CHAT}, 404, "does not exist"),
    ({"model": "mini-chat", "messages": [{"role": "user", "content": "kelime " * 300}]}, 400, "reads at most"),
    ({"model": "mini-chat", "messages": [{"role": "assistant", "content": "x"}]}, 400, "user"),
]


@pytest.mark.parametrize(("payload", "status", "words"), BAD, ids=[b[2] for b in BAD])
def test_bad_requests_get_openai_shaped_errors(client, payload, status, words):
    kwargs = {"content": payload} if isinstance(payload, str) else {"json": payload}
    r = client.post("/v1/chat/completions", **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"] and error["type"]


def test_body_size_limit_and_api_key(chat_run):
    app = build_app(str(chat_run[0]), device="cpu", api_key="gizli", max_body_kb=1)
    try:
        with TestClient(app) as c:
            assert c.get("/v1/models").status_code == 401
            assert c.get("/v1/models", headers={"Authorization": "Bearer yanlis"}).json()["error"]["code"] == \
                "invalid_api_key"
            auth = {"Authorization": "Bearer gizli"}
            assert c.get("/v1/models", headers=auth).status_code == 200
            assert c.get("/").status_code == 200  # the page itself holds nothing; it asks for the key
            assert c.get("/openapi.json").status_code == 200 and c.get("/health").status_code == 401
            big = {"model": "mini-chat", "messages": [{"role": "user", "content": "a" * 5000}]}
            r = c.post("/v1/chat/completions", json=big, headers=auth)
            assert r.status_code == 413 and "at most 1024" in r.json()["error"]["message"]
    finally:
        app.state.batcher.close()


def test_a_full_queue_answers_503(chat_run):
    app = build_app(str(chat_run[0]), device="cpu", max_batch=1, max_waiting=0, max_tokens=90)
    try:
        with TestClient(app) as c:
            started = threading.Event()
            busy = app.state.batcher.submit(Job([1], 90, lambda ev: started.set()))  # holds the only row
            assert started.wait(10)
            r = c.post("/v1/completions", json={"model": "mini-chat", "prompt": "b", "max_tokens": 5})
            assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
            busy.cancel()  # freed at the batcher's next step
            deadline = time.time() + 10
            while app.state.batcher.load()["active"] and time.time() < deadline:
                time.sleep(0.01)
            r = c.post("/v1/completions", json={"model": "mini-chat", "prompt": "b", "max_tokens": 5})
            assert r.status_code == 200  # the row is free again
    finally:
        app.state.batcher.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(run, step_seconds: float = 0.0, default_max_tokens: int = 256):
    """The app under uvicorn on a real loopback port, in a thread; ``step_seconds`` makes every decoding
    step at least that long (a tiny model answers faster than a browser could show the pieces apart)."""
    import uvicorn

    app = build_app(str(run), device="cpu", max_batch=16, max_waiting=64, max_tokens=64,
                    default_max_tokens=default_max_tokens)
    if step_seconds:
        backend = app.state.batcher.runner.backend
        step = backend.step
        backend.step = lambda *a: (time.sleep(step_seconds), step(*a))[1]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.batcher.close()


@pytest.fixture(scope="module")
def live_server(chat_run):
    with serving(chat_run[0]) as url:
        yield url


def test_the_openai_client_works_streaming_and_not(live_server, chat_run):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=live_server + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["mini-chat"]
    want, n_prompt = engine_answer(chat_run, CHAT, 16)
    out = client.chat.completions.create(model="mini-chat", messages=CHAT, max_tokens=16, temperature=0)
    assert out.choices[0].message.content == want.text and out.usage.prompt_tokens == n_prompt
    stream = client.chat.completions.create(model="mini-chat", messages=CHAT, max_tokens=16, temperature=0,
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == want.text
    text = client.completions.create(model="mini-chat", prompt="Ankara", max_tokens=8, temperature=0)
    assert text.choices[0].text and text.usage.completion_tokens <= 8
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="mini-chat", messages=[], max_tokens=4)


def test_a_client_that_hangs_up_mid_stream_leaves_the_server_serving(live_server, chat_run):
    httpx = pytest.importorskip("httpx")
    payload = {"model": "mini-chat", "prompt": "Ankara", "max_tokens": 90, "temperature": 1.0, "stream": True}
    with httpx.Client(base_url=live_server, timeout=30) as c, c.stream("POST", "/v1/completions", json=payload) as r:
        next(r.iter_lines())  # the answer has started; the client hangs up here
    deadline = time.time() + 20
    while (state := httpx.get(live_server + "/health").json())["active"] and time.time() < deadline:
        time.sleep(0.05)
    assert state["active"] == 0 and state["status"] == "ok"
    r = httpx.post(live_server + "/v1/completions", json={**payload, "stream": False, "max_tokens": 4})
    assert r.status_code == 200  # and the server goes on serving


def test_fifty_concurrent_streams_all_finish_with_their_own_answers(live_server, chat_run):
    """50 greedy requests at once give, each, the answer the engine gives that request alone. The one
    difference allowed is at a near-tie (the two best logits within NEAR_TIE at the step where the answers
    part): batched rows are not bit for bit rows alone. The test checks the gap whenever answers differ."""
    httpx = pytest.importorskip("httpx")
    questions = [f"Soru {i}: {w} nedir?" for i, w in enumerate(["bilim", "sanat", "Ankara", "deniz", "kitap"] * 10)]

    async def ask(client, q):
        payload = {"model": "mini-chat", "messages": [{"role": "user", "content": q}], "max_tokens": 24,
                   "temperature": 0, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=payload) as r:
            assert r.status_code == 200
            text = "".join([line async for line in r.aiter_text()])
        return "".join(c["choices"][0]["delta"].get("content", "") for c in sse_chunks(text) if c["choices"])

    async def main():
        async with httpx.AsyncClient(base_url=live_server, timeout=120) as client:
            return await asyncio.gather(*(ask(client, q) for q in questions))

    answers = asyncio.run(main())
    assert len(answers) == 50
    _, _, tok = chat_run
    differ = []
    for q, got in zip(questions, answers, strict=True):
        messages = [{"role": "user", "content": q}]
        want, _ = engine_answer(chat_run, messages, 24)
        if got != want.text:
            prompt = encode_chat(tok, messages, add_generation_prompt=True)[0]
            assert parts_only_at_a_near_tie(chat_run, prompt, want, got), \
                f"{q!r}: the server's answer {got!r} differs from the engine's {want.text!r} away from a near-tie"
            differ.append(q)
    print(f"{len(differ)} of 50 answers parted from the engine's at a near-tie: {differ}")


def test_precision_and_bad_server_settings(chat_run):
    from fidan.errors import BadInput

    app = build_app(str(chat_run[0]), device="cpu", precision="bf16")
    try:
        with TestClient(app) as c:
            r = c.post("/v1/completions", json={"model": "mini-chat", "prompt": "Ankara", "max_tokens": 5})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    finally:
        app.state.batcher.close()
    for kwargs, words in (({"precision": "fp8"}, "precision"), ({"max_batch": 0}, "--max-batch"),
                          ({"api_key": " "}, "--api-key")):
        with pytest.raises(BadInput, match=words):
            build_app(str(chat_run[0]), device="cpu", **kwargs)


def test_a_model_with_its_own_jinja_template_or_none(tokenizer_dir, tmp_path):
    import shutil as sh

    from fidan.artifacts.tokenizer import load_tokenizer
    from fidan.errors import BadInput
    from fidan.serving.prompts import Prompter

    plain = Prompter(load_tokenizer(tokenizer_dir))  # a pretrained model's tokenizer: no chat format
    assert not plain.can_chat
    with pytest.raises(BadInput, match="no chat format"):
        plain.chat([{"role": "user", "content": "Merhaba"}])
    assert plain.complete("") == ([plain.tok.eos_id], {plain.tok.eos_id})
    folder = tmp_path / "tok"
    sh.copytree(tokenizer_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    templated = Prompter(load_tokenizer(folder))
    ids, ends, dropped = templated.chat([{"role": "user", "content": "Merhaba"}])
    assert templated.tok.decode(ids) == "user: Merhaba\nassistant:" and templated.tok.eos_id in ends and not dropped


def test_a_busy_port_is_one_line_and_sigterm_stops_the_server_with_status_0(chat_run, tmp_path):
    import signal
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "fidan", "serve", "--model", str(chat_run[0]), "--port",
                               str(port), "--device", "cpu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "serving" not in proc.stdout
    assert proc.stderr.strip().count("\n") == 0 and "already in use" in proc.stderr
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fidan", "serve", "--model", str(chat_run[0]), "--port",
                               str(port), "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            assert time.time() < deadline and server.poll() is None, "the server did not start"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
