"""`fidan serve`: load a model, start the batcher, serve the API and the chat page with uvicorn."""

from __future__ import annotations

import errno
import signal
import socket
from pathlib import Path
from typing import Literal

from fidan.artifacts.loader import load_model
from fidan.errors import BadInput, MissingExtra
from fidan.inference.precision import LOAD_DTYPE, apply_precision, check_precision
from fidan.runtime.device import pick_device, set_threads


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto",
    threads: int | None = None,
    device: str = "auto",
    max_batch: int = 16,
    max_waiting: int = 64,
    max_tokens: int = 512,
    default_max_tokens: int = 256,
    max_body_kb: int = 1024,
    name: str | None = None,
    tokenizer: str | None = None,
) -> None:
    """Serve a model over OpenAI's chat and completion API, with a chat page at / (needs fidan[serve]).

    Args:
        model: a fidan run folder (or checkpoint), a transformers causal-LM folder, a hub name from the local
            Hugging Face cache, or a LoRA adapter folder (served over its base, unmerged).
        host: the address to listen on; 127.0.0.1 takes only this machine's connections (0.0.0.0 takes all:
            set --api-key then).
        port: the TCP port.
        api_key: if set, every API request must send `Authorization: Bearer KEY`.
        precision: auto (the checkpoint's own dtype), fp32, bf16 or int8 weights for inference.
        threads: CPU threads for the model (default: torch's own choice).
        device: auto, cpu or cuda.
        max_batch: requests decoded together at most; later ones wait for a free row.
        max_waiting: requests that may wait for a row; beyond it the server answers 503.
        max_tokens: the most new tokens one request may ask for.
        default_max_tokens: new tokens when a request does not say (capped by the model's window).
        max_body_kb: the largest request body, in KiB (larger: 413).
        name: the model id clients send (default: the folder's name; RUN-adapter for RUN/adapter; a hub name as
            it is).
        tokenizer: a tokenizer folder (default: the model's own).
    """
    if not 0 < port < 65536:
        raise BadInput(f"--port must be in 1..65535, got {port}")
    listener = _listen(host, port)  # first: a busy port is one line and exit 2, before the model loads
    try:
        app = build_app(model, api_key=api_key, precision=precision, threads=threads, device=device,
                        max_batch=max_batch, max_waiting=max_waiting, max_tokens=max_tokens,
                        default_max_tokens=default_max_tokens, max_body_kb=max_body_kb, name=name,
                        tokenizer=tokenizer)
    except BaseException:
        listener.close()
        raise
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            if sig == signal.SIGTERM:  # a stop request ends the server with status 0, not by the signal again
                self._captured_signals.remove(sig)

    shown = f"[{host}]" if ":" in host else host
    print(f"fidan: serving {app.state.name} at http://{shown}:{port}/ (API: /v1, chat page: /)", flush=True)
    try:
        _Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
    finally:
        listener.close()
        app.state.batcher.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or one line that says why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT is free
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise BadInput(f"cannot listen on {host}:{port} ({why}); pick another --port or --host") from None
    sock.set_inheritable(True)
    return sock


def build_app(model: str, api_key: str | None = None, precision: str = "auto", threads: int | None = None,
              device: str = "auto", max_batch: int = 16, max_waiting: int = 64, max_tokens: int = 512,
              default_max_tokens: int = 256, max_body_kb: int = 1024, name: str | None = None,
              tokenizer: str | None = None):
    """The app for a model folder as `fidan serve` runs it (tests use it directly); ``app.state.batcher`` is
    its batcher, to ``close()`` when done."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtra("`fidan serve` needs FastAPI and uvicorn: pip install 'fidan[serve]'") from None
    from fidan.inference.batcher import Batcher
    from fidan.serving.app import Limits, create_app
    from fidan.serving.prompts import Prompter

    for flag, value, low in (("--max-batch", max_batch, 1), ("--max-waiting", max_waiting, 0),
                             ("--max-tokens", max_tokens, 1), ("--default-max-tokens", default_max_tokens, 1),
                             ("--max-body-kb", max_body_kb, 1)):
        if value < low:
            raise BadInput(f"{flag} must be >= {low}, got {value}")
    if api_key is not None and not api_key.strip():
        raise BadInput("--api-key is empty; give a key or leave the option out")
    check_precision(precision)
    set_threads(threads)
    device = pick_device(device)
    net, tok = load_model(model, tokenizer, device, dtype=LOAD_DTYPE[precision])
    net = apply_precision(net, precision)
    batcher = Batcher(net, decode=tok.decode, max_batch=max_batch, max_waiting=max_waiting)
    limits = Limits(max_body_bytes=max_body_kb * 1024, max_tokens=max_tokens,
                    default_max_tokens=min(default_max_tokens, max_tokens))
    folder = Path(model).resolve()
    # a run's adapter folder is served under the run's name; a hub name under its own
    served = name or (f"{folder.parent.name}-adapter" if folder.name == "adapter" else
                      folder.name if Path(model).exists() else str(model))
    return create_app(batcher, Prompter(tok), served, limits, api_key)
