"""Malformed requests, to check that a server answers every client mistake with a 4xx and keeps serving.

`malformed(n, runs)` makes n raw HTTP/1.1 requests of many kinds: bodies that are not JSON (truncated, binary,
not UTF-8, nested 10,000 deep), fields of the wrong type or out of range, huge and empty inputs, tokens outside
the vocabulary, unknown routes, methods and runs, wrong content types, and clients that disconnect (mid-body,
and mid-stream after the first token). `send` sends one over a plain socket (so that any bytes can be sent and
a connection dropped at any point) and returns the status, or None for a client that left on purpose.
tests/test_serve.py sends a few hundred of them, benchmarks/bench_serve.py a thousand.
"""

from __future__ import annotations

import json
import random
import socket
from dataclasses import dataclass


@dataclass
class Fault:
    """One malformed request: its raw bytes, and when the client leaves (None: it reads the answer)."""

    kind: str
    raw: bytes
    leave: str | None = None  # "mid-body": close after half the bytes; "mid-stream": close after the first bytes back


def http(method: str, path: str, body: bytes = b"", content_type: str | None = "application/json",
         headers: dict | None = None, length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    if body or length is not None or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body) if length is None else length}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _json(value) -> bytes:
    return json.dumps(value).encode()


def malformed(n: int, runs: dict[str, str], *, seed: int = 0, max_body_bytes: int = 65536) -> list[Fault]:
    """n malformed requests against a server of `runs` ({name: task}), drawn from every kind in turn."""
    rng = random.Random(seed)
    by_task = {task: [name for name, t in runs.items() if t == task] for task in set(runs.values())}
    lm = (by_task.get("lm") or ["missing"])[0]
    text_run = (by_task.get("classify") or by_task.get("translate") or [lm])[0]
    text_route = {"classify": "predict", "translate": "translate"}.get(runs.get(text_run), "predict")
    gen = f"/v1/runs/{lm}/generate"
    junk = [None, True, 3, -1, 2.5, "x", [], {}, [1, "a"], {"a": 1}, 10**30, -10**30, 1e308, "", "\u0000"]
    bad_fields = {
        "prompt": [None, 3, True, [], {}, ["The "], "", "\u2603\u2603", "\ud7ff" * 3],
        "max_tokens": ["5", 5.5, True, -1, 0, 10**30, 10**9, None, []],
        "temperature": ["hot", -1, -1e-9, 1e9, None, [], True],
        "top_k": [-1, 1.5, 2**70, "3", None],
        "top_p": [0, 1.5, -0.1, "0.9", None, 2],
        "seed": [-1, 2**64, "x", 1.5, []],
        "stream": ["yes", 1, None, []],
        "extra": [1, "field"],
    }

    def generate_fault() -> Fault:
        field = rng.choice(list(bad_fields))
        body = {"prompt": "The ", "max_tokens": 5, field: rng.choice(bad_fields[field])}
        return Fault(f"generate: bad {field}", http("POST", gen, _json(body)))

    def text_fault() -> Fault:
        body = rng.choice([{"text": rng.choice(junk)}, {"texts": rng.choice(junk)}, {"texts": ["a", 3]},
                           {"text": "a", "texts": ["a"]}, {}, {"texts": []}, {"texts": ["a good film"] * 1000},
                           {"text": "   "}, {"text": "a", "beam": rng.choice(junk)}, {"text": "word " * 5000}])
        return Fault(f"{text_route}: bad texts", http("POST", f"/v1/runs/{text_run}/{text_route}", _json(body)))

    def not_json() -> Fault:
        body = rng.choice([b"{bad", b'{"prompt": "The "', b"\xff\xfe\x00garbage", b"[" * 10_000 + b"]" * 10_000,
                           b'{"prompt": NaN}', b'{"prompt": "a", "max_tokens": Infinity}', b"null", b"42", b'"str"',
                           b"[]", b'{"prompt": "\\ud800"}', b"\x00" * 100, b'{"prompt": "a",}', b"{}" * 50,
                           b'{"prompt": 1e999999}'])
        return Fault("not JSON", http("POST", gen, body))

    def huge_or_empty() -> Fault:
        choice = rng.randrange(5)
        if choice == 0:
            return Fault("body past the cap", http("POST", gen, _json({"prompt": "a" * (max_body_bytes + 10)})))
        if choice == 1:
            return Fault("declared length past the cap", http("POST", gen, b"{}", length=max_body_bytes * 100), leave="mid-body")
        if choice == 2:
            return Fault("prompt past max_input_tokens", http("POST", gen, _json({"prompt": "e" * (max_body_bytes // 2)})))
        if choice == 3:
            return Fault("empty body", http("POST", gen, b""))
        return Fault("empty prompt", http("POST", gen, _json({"prompt": ""})))

    def unknown() -> Fault:
        choice = rng.randrange(6)
        name = rng.choice(["nope", "..", "%2e%2e%2fetc%2fpasswd", "x" * 2000, "%00", "runs", "tiny%2F..%2F"])
        if choice == 0:
            return Fault("unknown run", http("POST", f"/v1/runs/{name}/generate", _json({"prompt": "a"})))
        if choice == 1:
            return Fault("unknown route", http(rng.choice(["GET", "POST"]), rng.choice(
                ["/v2/x", "/admin", "/v1/run", "/v1/runs/" + lm, "/../../etc/passwd", "/v1/runs/a/b/c", "/%ff"])))
        if choice == 2:
            return Fault("wrong method", http(rng.choice(["GET", "PUT", "DELETE", "PATCH"]), gen, b""))
        if choice == 3:
            return Fault("wrong task", http("POST", f"/v1/runs/{lm}/{rng.choice(['predict', 'translate'])}",
                                            _json({"text": "a"})))
        if choice == 4:
            return Fault("wrong content type", http("POST", gen, _json({"prompt": "a"}),
                                                    content_type=rng.choice(["text/plain", None, "application/x-www-form-urlencoded",
                                                                             "multipart/form-data; boundary=x"])))
        return Fault("bad query", http("GET", "/metrics?format=" + rng.choice(["xml", "", "%ff", "json" * 100])))

    def disconnect() -> Fault:
        if rng.random() < 0.5:
            return Fault("client leaves mid-body", http("POST", gen, _json({"prompt": "The ", "max_tokens": 50})),
                         leave="mid-body")
        body = _json({"prompt": "The ", "max_tokens": 500, "stream": True, "temperature": 0.9})
        return Fault("client leaves mid-stream", http("POST", gen, body), leave="mid-stream")

    forecaster = (by_task.get("forecast") or [None])[0]

    def forecast_fault() -> Fault:
        body = rng.choice([{"series": rng.choice(junk)}, {"series": ["no-such-series"]}, {"series": []},
                           {"series": ["x"] * 10_000}, {"horizon": rng.choice([0, -1, 10**9, "3", 2.5, None, True])},
                           {"samples": rng.choice([0, -5, 10**9, "100", 1.5, []])}, {"split": rng.choice(["train", 1, ""])},
                           {"history": rng.choice([-1, 10**9, "x"])}, {"extra": 1}])
        return Fault("forecast: bad field", http("POST", f"/v1/runs/{forecaster}/forecast", _json(body)))

    makers = [generate_fault, text_fault, not_json, huge_or_empty, unknown, disconnect]
    if forecaster is not None:
        makers.append(forecast_fault)
    return [makers[i % len(makers)]() for i in range(n)]


def send(host: str, port: int, fault: Fault, timeout: float = 30.0) -> int | None:
    """Send one fault; its status (None for a client that leaves on purpose; 0 if the server closed without
    answering)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if fault.leave == "mid-body":
            sock.sendall(fault.raw[: max(1, len(fault.raw) - 8)])
            return None
        sock.sendall(fault.raw)
        if fault.leave == "mid-stream":
            sock.recv(256)  # the status line and the first bytes, then gone
            return None
        head = b""
        try:
            while b"\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        except ConnectionResetError:
            pass
        parts = head.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
