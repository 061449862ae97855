"""What the server counts: requests by route and status, the sizes of the batches the model ran, and latencies.

GET /metrics gives them in Prometheus' text format (counters, and histograms with cumulative buckets, which any
Prometheus scrapes); GET /metrics?format=json gives the same figures as one JSON object, with p50/p99 latencies
from the last RECENT requests of each route, for people and tests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque

#: seconds: the latency histogram's bucket bounds
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: how many recent latencies per route the JSON percentiles are taken over
RECENT = 2048


class Metrics:
    """Thread-safe counters: the event loop records requests, the runs' workers record batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: Counter = Counter()  # (route, status) -> count
        self.batches: dict[tuple[str, str], Counter] = defaultdict(Counter)  # (run, kind) -> {batch size: count}
        self.latency_sum: Counter = Counter()  # route -> seconds
        self.latency_buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BUCKETS) + 1))
        self.recent: dict[str, deque] = defaultdict(lambda: deque(maxlen=RECENT))

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[route, status] += 1
            self.latency_sum[route] += seconds
            buckets = self.latency_buckets[route]
            buckets[next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), len(LATENCY_BUCKETS))] += 1
            self.recent[route].append(seconds)

    def batch(self, run: str, kind: str, size: int) -> None:
        """One forward pass of `run` over `size` sequences; kind: generate_step, generate_prime, predict, ..."""
        with self._lock:
            self.batches[run, kind][size] += 1

    def to_dict(self) -> dict:
        with self._lock:
            routes = sorted({route for route, _ in self.requests})
            latency = {}
            for route in routes:
                recent = sorted(self.recent[route])
                count = sum(n for (r, _), n in self.requests.items() if r == route)
                latency[route] = {"count": count, "mean": self.latency_sum[route] / max(count, 1),
                                  "p50": _quantile(recent, 0.5), "p99": _quantile(recent, 0.99)}
            return {
                "uptime_seconds": time.time() - self.started,
                "requests": [{"route": r, "status": s, "count": n} for (r, s), n in sorted(self.requests.items())],
                "batch_sizes": [{"run": run, "kind": kind, "sizes": {str(k): v for k, v in sorted(sizes.items())}}
                                for (run, kind), sizes in sorted(self.batches.items())],
                "latency_seconds": latency,
            }

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines = ["# HELP stackrnn_requests_total Requests answered, by route and HTTP status.",
                     "# TYPE stackrnn_requests_total counter"]
            lines += [f'stackrnn_requests_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in sorted(self.requests.items())]
            lines += ["# HELP stackrnn_batch_size Sequences per forward pass of the model, by run and kind of pass.",
                      "# TYPE stackrnn_batch_size histogram"]
            for (run, kind), sizes in sorted(self.batches.items()):
                labels, total, count = f'run="{run}",kind="{kind}"', 0, 0
                for size in sorted(sizes):
                    count += sizes[size]
                    total += size * sizes[size]
                    lines.append(f'stackrnn_batch_size_bucket{{{labels},le="{size}"}} {count}')
                lines += [f'stackrnn_batch_size_bucket{{{labels},le="+Inf"}} {count}',
                          f"stackrnn_batch_size_sum{{{labels}}} {total}", f"stackrnn_batch_size_count{{{labels}}} {count}"]
            lines += ["# HELP stackrnn_request_seconds Time from a request's arrival to its answer's end, by route.",
                      "# TYPE stackrnn_request_seconds histogram"]
            for route, buckets in sorted(self.latency_buckets.items()):
                cumulative = 0
                for bound, n in zip((*LATENCY_BUCKETS, "+Inf"), buckets):
                    cumulative += n
                    lines.append(f'stackrnn_request_seconds_bucket{{route="{route}",le="{bound}"}} {cumulative}')
                lines += [f'stackrnn_request_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}',
                          f'stackrnn_request_seconds_count{{route="{route}"}} {cumulative}']
            return "\n".join(lines) + "\n"


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
