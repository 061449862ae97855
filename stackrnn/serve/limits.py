"""What a request may ask of the server, and how a refusal looks.

Every limit is a field of `Limits` (and so a `stackrnn serve --flag` with its help). A request past one gets a
4xx JSON answer that names it, `{"error": "...", "limit": "max_input_tokens"}`, so a client can tell "my prompt
is too long" from "the server is busy" without parsing prose. A client's mistake is never a 5xx.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import check_value, option


@dataclass
class Limits:
    """How much one request, and the server as a whole, may take on."""

    max_input_tokens: int = option(1024, "the most tokens a prompt or a text to classify or translate may have",
                                   within="[1, inf)")
    max_new_tokens: int = option(512, "the most tokens one generation (or one translation) may produce",
                                 within="[1, inf)")
    max_batch: int = option(32, "the most requests (or texts) run as one forward pass; also the most texts one "
                            "request may send", within="[1, inf)")
    request_timeout: float = option(30.0, "seconds a request may take, waiting included; past it the answer is 408",
                                    metavar="SECONDS", within="(0, inf)")
    max_body_bytes: int = option(65536, "the largest request body accepted, in bytes; past it the answer is 413",
                                 metavar="BYTES", within="[1, inf)")
    max_queue: int = option(256, "the most requests waiting per run; past it the answer is 429", within="[1, inf)")
    max_series: int = option(64, "forecasting: the most series one request may forecast (also per forward pass)",
                             within="[1, inf)")
    max_samples: int = option(1000, "forecasting: the most sample paths per series a request may ask for",
                              within="[1, inf)")


class ServeError(Exception):
    """A request the server refuses: the HTTP status, one line saying why, and the limit it passed (if any)."""

    def __init__(self, status: int, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.limit = status, message, limit

    def body(self) -> dict:
        return {"error": self.message, **({"limit": self.limit} if self.limit else {})}


def past(limit: str, message: str, status: int = 422) -> ServeError:
    """The refusal of a request past `limit` (a Limits field name)."""
    return ServeError(status, f"{message} (limit {limit})", limit)


def check_limits(limits: Limits) -> None:
    """Limits the server can run with (also when built in Python), or an InputError naming the flag."""
    for f in dataclasses.fields(limits):
        check_value(Limits, f.name, getattr(limits, f.name), "", label=f"--{f.name.replace('_', '-')}")
