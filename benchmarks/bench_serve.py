"""Benchmark: `stackrnn serve` under load, with dynamic micro-batching on and off, then 1,000 malformed requests.

The server runs in its own process (`stackrnn serve RUN --port 0`, on 127.0.0.1), once with batching and once
with --no-batching. Against each, C = 1, 8 and 32 clients each send generation requests one after another (a
kept-alive HTTP/1.1 connection per client, a minimal asyncio client so that the load generator costs the shared
CPU little) for --seconds or --requests, whichever comes first. Reported per C: requests per second and the
p50/p99 latency of a request (sent to last byte received). Target: at 32 clients, batching gives at least 4x the
requests per second of batching off, with a p99 latency no worse than 2x.

Then 1,000 malformed requests (stackrnn.serve.faults: bad JSON, wrong types, huge and empty inputs, unknown routes
and runs, clients that disconnect mid-body and mid-stream), 8 at a time, against the batching server, with a good
request every 20: the counts of their 2xx, 4xx and 5xx answers, and whether every good request succeeded.

With no --run, a small character LSTM (2 layers of 256) is trained first on the embedded corpus (about a minute).

    .venv/bin/python benchmarks/bench_serve.py [--run RUN] [--tokens 64] [--seconds 6] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
from stackrnn.serve.faults import malformed, send  # noqa: E402

CLIENTS = (1, 8, 32)
THREADS = 1  # torch threads per forward pass, in both modes: see `stackrnn serve --help` (--threads)


def train_small(folder: Path) -> Path:
    import stackrnn
    from stackrnn.data.corpora import embedded_text

    text = folder / "text.txt"
    text.write_text(embedded_text()[:200_000], encoding="utf-8")
    run = stackrnn.fit(data=text, out=folder / "lm", hidden_size=256, num_layers=2, embedding_size=64, batch_size=32,
                       num_steps=35, max_steps=150, lr=0.003, optimizer="adam", progress=False, seed=0)
    return run.path


class Server:
    """`stackrnn serve RUN --port 0` in a subprocess; its URL from the line it prints."""

    def __init__(self, run: Path, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "stackrnn.cli", "serve", str(run), "--port", "0",
                                         "--max-queue", "4096", "--threads", str(THREADS), *args], cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.process.stdout.readline()
        match = re.search(r"at http://([\d.]+):(\d+)/", line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"the server did not start: {line}{self.process.stdout.read()}")
        self.host, self.port = match.group(1), int(match.group(2))
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # (keep its pipe drained)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ------------------------------------------------------------------------------------------------- load
async def _request(reader, writer, path: str, body: bytes) -> tuple[int, bytes]:
    writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    return status, await reader.readexactly(length)


async def _client(host, port, run, tokens, stop_at, budget, latencies, failures, index):
    reader, writer = await asyncio.open_connection(host, port)
    n = 0
    try:
        while time.monotonic() < stop_at and budget[0] > 0:
            budget[0] -= 1
            body = json.dumps({"prompt": "The ", "max_tokens": tokens, "temperature": 0.8, "top_k": 20,
                               "seed": index * 100_000 + n}).encode()
            start = time.perf_counter()
            status, _ = await _request(reader, writer, f"/v1/runs/{run}/generate", body)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                failures[status] += 1
            n += 1
    finally:
        writer.close()


def load(server: Server, run: str, clients: int, tokens: int, seconds: float, requests: int) -> dict:
    latencies: list[float] = []
    failures: Counter = Counter()

    async def main():
        stop_at = time.monotonic() + seconds
        budget = [requests]
        await asyncio.gather(*(_client(server.host, server.port, run, tokens, stop_at, budget, latencies, failures, i)
                               for i in range(clients)))

    start = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return {"clients": clients, "requests": len(latencies), "seconds": round(elapsed, 2),
            "requests_per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "failures": dict(failures)}


# ------------------------------------------------------------------------------------------------ faults
def faults(server: Server, run: str, n: int) -> dict:
    """n malformed requests, 8 at a time, while good requests go on beside them one after another."""
    import httpx

    cases = malformed(n, {run: "lm"}, seed=0)
    good, good_ok = 0, 0
    with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=f"http://{server.host}:{server.port}", timeout=30) as client:
        futures = [pool.submit(send, server.host, server.port, f) for f in cases]
        while not all(f.done() for f in futures):
            answer = client.post(f"/v1/runs/{run}/generate", json={"prompt": "The ", "max_tokens": 16, "seed": good})
            good, good_ok = good + 1, good_ok + (answer.status_code == 200)
        statuses = [f.result() for f in futures]
        server_5xx = sum(r["count"] for r in client.get("/metrics", params={"format": "json"}).json()["requests"]
                         if r["status"] >= 500)
    counts = Counter("client left" if s is None else f"{s // 100}xx" if s else "no answer" for s in statuses)
    return {"sent": n, "answers": dict(sorted(counts.items())), "server_5xx": server_5xx, "good": good, "good_ok": good_ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a language-model run directory (default: train a small one)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--seconds", type=float, default=6.0, help="the most seconds of load per client count")
    parser.add_argument("--requests", type=int, default=3000, help="the most requests per client count")
    parser.add_argument("--faults", type=int, default=1000, help="malformed requests to send")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else train_small(Path(tmp))
        name = run.resolve().name
        results: dict = {"run": str(run), "tokens": args.tokens, "cpus": os.cpu_count(), "modes": {}}
        for mode, flags in (("batching", ()), ("no batching", ("--no-batching",))):
            server = Server(run, *flags)
            try:
                load(server, name, 4, args.tokens, 1.0, 40)  # warm up
                results["modes"][mode] = [load(server, name, c, args.tokens, args.seconds, args.requests) for c in CLIENTS]
                if mode == "batching":
                    results["faults"] = faults(server, name, args.faults)
            finally:
                server.stop()

    on, off = results["modes"]["batching"], results["modes"]["no batching"]
    print(f"\ngeneration of {args.tokens} tokens per request, run {name}, {results['cpus']} CPUs, server and clients "
          "on 127.0.0.1\n")
    print("| clients | batching req/s | p50 ms | p99 ms | no batching req/s | p50 ms | p99 ms | req/s ratio | p99 ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for a, b in zip(on, off):
        print(f"| {a['clients']} | {a['requests_per_s']:.1f} | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | "
              f"{b['requests_per_s']:.1f} | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | "
              f"{a['requests_per_s'] / b['requests_per_s']:.2f}x | {a['p99_ms'] / b['p99_ms']:.2f}x |")
    a, b = on[-1], off[-1]
    speedup, p99 = a["requests_per_s"] / b["requests_per_s"], a["p99_ms"] / b["p99_ms"]
    print(f"\ntarget at 32 clients: >= 4x the requests/s of batching off ({speedup:.2f}x: "
          f"{'met' if speedup >= 4 else 'NOT met'}), p99 <= 2x ({p99:.2f}x: {'met' if p99 <= 2 else 'NOT met'})")
    failed = {m: [r["failures"] for r in rs if r["failures"]] for m, rs in results["modes"].items()}
    if any(failed.values()):
        print(f"non-200 answers under load: {failed}")
    f = results["faults"]
    print(f"\nmalformed requests: {f['sent']} sent; answers {f['answers']}; 5xx counted by the server: "
          f"{f['server_5xx']}; good requests between them: {f['good_ok']}/{f['good']} answered 200")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
