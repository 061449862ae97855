"""`stackrnn serve`: trained runs over HTTP, with a page for people.

    stackrnn serve runs/lm runs/sentiment --port 8000       # then open http://127.0.0.1:8000/

From Python: `serve({"lm": stackrnn.load("runs/lm")})`, or `make_app(...)` for an ASGI app to mount or test.
The modules: app (routes, the body cap, errors), batching (the worker of each run: dynamic micro-batching and
the generation loop), limits, metrics, schemas (the request bodies), page (the HTML at /).

Security defaults: the server binds 127.0.0.1 unless told otherwise; it serves only the runs named on the command
line, each by its directory's name (no part of a request reaches the file system); nothing is pickled (runs load
from safetensors and JSON); request bodies are capped (max_body_bytes) before they are read.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from ..errors import InputError, require
from .limits import Limits, ServeError, check_limits

__all__ = ["Limits", "ServeError", "bind", "load_runs", "make_app", "serve"]


def make_app(*args, **kwargs):
    """See app.make_app (imported on use: fastapi is the serve extra)."""
    from .app import make_app as make

    return make(*args, **kwargs)


def check_installed() -> None:
    require("fastapi", "uvicorn", message="serving needs fastapi and uvicorn: pip install 'stackrnn[serve]'")


def load_runs(paths: list[str], *, weights: str = "best", device: str = "cpu") -> dict:
    """The runs to serve, by name (each directory's name); two runs of the same name are refused."""
    from ..api import load

    if not paths:
        raise InputError("give at least one run directory to serve")
    runs: dict = {}
    for path in paths:
        name = Path(path).resolve().name
        if name in runs:
            raise InputError(f"two runs are named {name!r} ({runs[name].path} and {path}): requests name a run by "
                             "its directory's name, so serve runs whose names differ")
        runs[name] = load(path, weights=weights, device=device)
    return runs


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or an InputError in one line (the port is taken, the host unknown)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"--port: expected a port number in 0..65535, got {port!r}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"--host {host}: not an address of this machine ({e})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise InputError(f"--port {port}: already in use on {host}: stop what listens there or pick another "
                             "--port") from None
        raise InputError(f"--host {host} --port {port}: cannot listen there ({e.strerror})") from None
    return sock


def serve(runs: dict, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          batching: bool = True, window: float = 0.005, threads: int = 0, log_level: str = "warning",
          ready=None) -> None:
    """Serve `runs` ({name: api.Run}) until interrupted. `threads` > 0 sets torch's CPU threads per forward pass.
    `ready(url)` is called once the socket listens."""
    check_installed()
    import torch
    import uvicorn

    if threads:
        torch.set_num_threads(threads)
    limits = limits or Limits()
    check_limits(limits)
    sock = bind(host, port)
    app = make_app(runs, limits, batching=batching, window=window)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    if ready is not None:
        bound_host, bound_port = sock.getsockname()[:2]
        ready(f"http://{'[' + bound_host + ']' if ':' in bound_host else bound_host}:{bound_port}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
