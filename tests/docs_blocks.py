"""Reading the fenced blocks of a page, and running the blocks that are not `fidan` commands: requests to a
live `fidan serve` and Python snippets (used by test_docs.py, whose docstring describes the markers)."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MARKER = re.compile(r"^<!--\s*fidan-test(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^\s*(`{3,})\s*([\w+-]*)")
# What makes a block an example a reader would run: a shell line starting fidan (or a make target that
# does), a request, or Python that imports fidan or the openai client.
EXAMPLE = re.compile(r"^\s*(?:fidan\s|torchrun\s|python3?\s+-m\s+fidan|make\s+(?:demo|test)\b|curl\s"
                     r"|import\s+fidan|from\s+fidan|from\s+openai\s)", re.M)
CODE_LANGS = {"", "bash", "sh", "shell", "console", "python", "py"}
URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):\d+")


@dataclass(frozen=True)
class Block:
    marker: str | None  # the marker's argument ("" for a bare marker), None when the block has no marker
    lang: str
    text: str
    line: int  # the marker's line, or the opening fence's when there is none

    @property
    def kind(self) -> str:
        return (self.marker or "").split(" ", 1)[0]

    @property
    def rest(self) -> str:
        return (self.marker or "").partition(" ")[2].strip()

    def shows_example(self) -> bool:
        return self.lang in CODE_LANGS and bool(EXAMPLE.search(self.text))


def fences(page: Path) -> list[Block]:
    """Every top-level fenced block of a page, with the marker right above it if any.

    Markers and fences inside a fenced block (a page showing how to write one) do not count.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    found, fence, lang, start = [], "", "", 0
    for i, line in enumerate(lines):
        ticks = FENCE.match(line)
        if ticks and (not fence or (ticks.group(1).startswith(fence) and not ticks.group(2))):
            if fence:
                m = MARKER.match(lines[start - 1].strip()) if start else None
                found.append(Block(None if m is None else (m.group(1) or "").strip(), lang,
                                   "\n".join(lines[start + 1:i]) + "\n", start if m else start + 1))
                fence = ""
            else:
                fence, lang, start = ticks.group(1), ticks.group(2).lower(), i
            continue
        if not fence and MARKER.match(line.strip()) and not (i + 1 < len(lines) and FENCE.match(lines[i + 1])):
            raise AssertionError(f"{page.name}:{i + 1}: a fidan-test marker must sit right above a ``` fence")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """An ASGI wrapper that notes the path and status of every answer the app sends."""

    def __init__(self, app):
        self.app, self.answers = app, []

    async def __call__(self, scope, receive, send):
        async def sending(message):
            if message["type"] == "http.response.start":
                self.answers.append((scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, sending if scope["type"] == "http" else send)


@contextlib.contextmanager
def serving(argv: list[str]) -> Iterator[tuple[str, Recorder]]:
    """`fidan serve ARGV` as the command builds it (options parsed by the CLI, the app by ``build_app``), on
    a free loopback port (the command's --host and --port aside), in a thread: the URL and its answers."""
    import uvicorn

    from fidan.cli import parse_command
    from fidan.serving.server import build_app

    _, kwargs = parse_command("serve", argv)
    kwargs.pop("host", None), kwargs.pop("port", None)
    app = build_app(**kwargs)
    recorder, port = Recorder(app), free_port()
    server = uvicorn.Server(uvicorn.Config(recorder, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started:
            assert time.time() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.batcher.close()


def check_serve_command(argv: list[str]) -> None:
    """A `fidan serve` line of a page: it starts and answers /health and /v1/models, then stops."""
    import httpx

    with serving(argv) as (url, _):
        for path in ("/health", "/v1/models"):
            r = httpx.get(url + path, timeout=30)
            assert r.status_code == 200 and r.json(), f"fidan serve {' '.join(argv)}: {path} answered {r.status_code}"


def run_client(block: Block, run: str, where: str, python: Callable[[str, str], None]) -> None:
    """A block of requests (curl lines in bash, or Python) against `fidan serve --model RUN`, its URLs
    pointed at the live server: it must finish without error and every answer it got must be a success."""
    assert Path(run).exists(), f"{where}: serve {run}: no such model; an earlier block of the page must make it"
    assert URL.search(block.text), f"{where}: the block has no http://127.0.0.1:PORT URL to point at the server"
    with serving(["--model", run, "--threads", "1"]) as (url, recorder):
        text = URL.sub(url, block.text)
        if block.lang in ("python", "py"):
            python(text, where)
        else:
            done = subprocess.run(["bash", "-c", "set -eo pipefail\n" + text], capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0 and done.stdout.strip(), f"{where}: exit {done.returncode}\n{done.stderr}"
    api = [a for a in recorder.answers if a[0].startswith("/v1/")]
    assert api and all(200 <= status < 300 for _, status in recorder.answers), f"{where}: answers {recorder.answers}"
