"""The HTTP app: OpenAI's chat and completion endpoints over the continuous batcher, and the chat page.

Every request becomes one ``Job`` of the ``Batcher``: requests that arrive while others decode join the
batch at the next step. Answers stream as server-sent events (``stream: true``) exactly as OpenAI sends
them (``data: {chunk}`` lines, then ``data: [DONE]``), so the ``openai`` client and chat front-ends work.
A chat longer than the model's window loses its oldest turns, and the answer says how many in a header;
an answer that runs past the window slides it, as `fidan generate` does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from fidan.errors import BadInput, FidanError
from fidan.inference import Sampling
from fidan.inference.batcher import Batcher, Job, QueueFull
from fidan.serving.prompts import Prompter
from fidan.serving.protocol import APIError, ChatRequest, CompletionRequest, parse
from fidan.text.chat_fit import prompt_room

FINISH = {"stop_id": "stop", "stop_string": "stop", "length": "length"}
DROPPED_HEADER = "X-Fidan-Dropped-Turns"  # how many of a chat's oldest turns did not fit the window
PUBLIC = {"/", "/docs", "/openapi.json"}  # pages that hold no data: with --api-key they still load, the API asks


@dataclass
class Limits:
    """What one request may ask for."""

    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int | None = None  # default: the model's window less one
    max_tokens: int = 512  # the most new tokens one request may ask for
    default_max_tokens: int = 256  # when a request does not say


def create_app(batcher: Batcher, prompter: Prompter, name: str, limits: Limits | None = None,
               api_key: str | None = None) -> FastAPI:
    """The FastAPI app serving ``batcher``'s model under the model id ``name``."""
    limits = limits or Limits()
    app = FastAPI(title="fidan", summary=f"OpenAI-compatible API for {name}", docs_url="/docs", redoc_url=None)
    app.state.batcher, app.state.name, app.state.started = batcher, name, int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        if api_key is not None and request.url.path not in PUBLIC:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                e = APIError(401, "Incorrect or missing API key: send the header 'Authorization: Bearer KEY'",
                             "invalid_request_error", code="invalid_api_key")
                return JSONResponse(e.body(), status_code=401)
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
            e = APIError(413, f"the request body is {int(size)} bytes; this server takes at most "
                              f"{limits.max_body_bytes}", code="request_too_large")
            return JSONResponse(e.body(), status_code=413)
        return await call_next(request)

    async def body(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > limits.max_body_bytes:
            raise APIError(413, f"the request body is over {limits.max_body_bytes} bytes", code="request_too_large")
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise APIError(400, f"the request body is not valid JSON ({e})") from None

    def check_model(req) -> None:
        if req.model != name:
            raise APIError(404, f"The model '{req.model}' does not exist; this server serves '{name}'",
                           param="model", code="model_not_found")

    def prompt_limit() -> int:
        return batcher.window - 1 if limits.max_prompt_tokens is None else limits.max_prompt_tokens

    def wanted_tokens(req) -> int:
        wanted = req.wanted_tokens or limits.default_max_tokens
        if wanted > limits.max_tokens:
            raise APIError(400, f"max_tokens is {wanted}; this server gives at most {limits.max_tokens}",
                           param="max_tokens")
        return wanted

    def make_job(req, prompt: list[int], stop_ids: set[int], on_event, dropped: int = 0) -> Job:
        window_room = prompt_limit()
        if len(prompt) > window_room:
            trimmed = f" even with its {dropped} oldest turns dropped" if dropped else ""
            raise APIError(400, f"the prompt is {len(prompt)} tokens{trimmed}; this model reads at most "
                                f"{window_room} prompt tokens: shorten it", param="messages",
                           code="context_length_exceeded")
        wanted = wanted_tokens(req)
        generator = torch.Generator().manual_seed(req.seed) if req.seed is not None else None
        sampling = Sampling(req.temperature, None, req.top_p)
        return Job(prompt, wanted, on_event, sampling, generator, stop_ids, req.stop or [])

    async def run(request: Request, req, prompt: list[int], stop_ids: set[int], chunk, dropped: int | None = None):
        """Submit the job; stream its chunks or gather them into one answer. ``dropped``: the oldest turns
        left out of a chat, told in the ``X-Fidan-Dropped-Turns`` header."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job = make_job(req, prompt, stop_ids, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev),
                       dropped or 0)
        told = {} if dropped is None else {DROPPED_HEADER: str(dropped)}
        try:
            batcher.submit(job)
        except QueueFull as e:
            raise APIError(503, str(e), "server_overloaded", code="queue_full") from None
        except BadInput as e:
            raise APIError(400, str(e)) from None
        rid, created = f"{chunk.prefix}-{secrets.token_hex(12)}", int(time.time())

        def usage(n_new: int) -> dict:
            return {"prompt_tokens": len(prompt), "completion_tokens": n_new, "total_tokens": len(prompt) + n_new}

        if not req.stream:
            n_new = 0
            while True:
                ev = await events.get()
                n_new += 1
                if ev.done:
                    break
            if ev.reason == "error":
                raise APIError(500, f"generation failed: {ev.text}", "server_error")
            return JSONResponse({"id": rid, "object": chunk.object, "created": created, "model": name,
                                 "choices": [chunk.whole(ev.text, FINISH[ev.reason])], "usage": usage(n_new),
                                 "system_fingerprint": None}, headers=told)

        async def sse():
            n_new = 0
            try:
                head = chunk.first()
                if head is not None:
                    yield _sse(rid, chunk.stream_object, created, name, [head])
                while True:
                    ev = await events.get()
                    n_new += 1
                    if ev.reason == "error":
                        yield f"data: {json.dumps({'error': {'message': ev.text, 'type': 'server_error'}})}\n\n"
                        return
                    if ev.piece:
                        yield _sse(rid, chunk.stream_object, created, name, [chunk.piece(ev.piece, None)])
                    if ev.done:
                        yield _sse(rid, chunk.stream_object, created, name, [chunk.piece(None, FINISH[ev.reason])])
                        if req.include_usage:
                            yield _sse(rid, chunk.stream_object, created, name, [], usage(n_new))
                        yield "data: [DONE]\n\n"
                        return
            finally:  # the client went away (or the answer ended): free the row
                job.cancel()

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **told})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        req = parse(ChatRequest, await body(request))
        check_model(req)
        try:
            messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                        for m in req.messages]
        except ValueError as e:
            raise APIError(400, str(e), param="messages") from None
        # A conversation longer than the window loses its oldest turns (as in `fidan chat`), keeping room
        # for the answer: without the reserve a long history leaves an answer of a few tokens.
        room = min(prompt_limit(), prompt_room(batcher.window, wanted_tokens(req)))
        try:
            prompt, stop_ids, dropped = prompter.chat(messages, room)
        except FidanError as e:
            raise APIError(400, str(e), param="messages") from None
        return await run(request, req, prompt, stop_ids, _ChatChunks(), dropped)

    @app.post("/v1/completions")
    async def completions(request: Request):
        req = parse(CompletionRequest, await body(request))
        check_model(req)
        prompt, stop_ids = prompter.complete(req.prompt)
        return await run(request, req, prompt, stop_ids, _TextChunks(req.prompt if req.echo else ""))

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": app.state.started,
                                            "owned_by": "fidan"}]}

    @app.get("/health")
    async def health():
        state = batcher.load()
        ok = batcher.error is None
        return JSONResponse({"status": "ok" if ok else "failed", "model": name, **state,
                             "window": batcher.window, "chat": prompter.can_chat},
                            status_code=200 if ok else 500)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return (resources.files("fidan.serving") / "static" / "index.html").read_text(encoding="utf-8")

    return app


def _sse(rid: str, obj: str, created: int, model: str, choices: list, usage: dict | None = None) -> str:
    data = {"id": rid, "object": obj, "created": created, "model": model, "choices": choices}
    if usage is not None:
        data["usage"] = usage
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


class _ChatChunks:
    prefix, object, stream_object = "chatcmpl", "chat.completion", "chat.completion.chunk"

    def first(self) -> dict:
        return {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}

    def piece(self, text: str | None, finish: str | None) -> dict:
        return {"index": 0, "delta": {} if text is None else {"content": text}, "logprobs": None,
                "finish_reason": finish}

    def whole(self, text: str, finish: str) -> dict:
        return {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None, "finish_reason": finish}


class _TextChunks:
    prefix, object, stream_object = "cmpl", "text_completion", "text_completion"

    def __init__(self, echo: str = ""):
        self.echo = echo

    def first(self) -> dict | None:
        return {"index": 0, "text": self.echo, "logprobs": None, "finish_reason": None} if self.echo else None

    def piece(self, text: str | None, finish: str | None) -> dict:
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

    def whole(self, text: str, finish: str) -> dict:
        return {"index": 0, "text": self.echo + text, "logprobs": None, "finish_reason": finish}
