"""The HTTP API over the served runs (FastAPI on uvicorn): one route per task, health, metrics, the page.

    GET  /                               the page for people (page.py)
    GET  /health                         {"status": "ok", "runs": [...]}
    GET  /metrics                        Prometheus text; ?format=json for JSON (metrics.py)
    GET  /v1/runs                        the served runs: name, task, vocabulary level, labels; and the limits
    POST /v1/runs/{name}/generate        language models; "stream": true answers with server-sent events
    POST /v1/runs/{name}/activations     language models: the activation view of `stackrnn inspect`
    POST /v1/runs/{name}/predict         classifiers
    POST /v1/runs/{name}/translate       translators; "attention": true adds the attention maps
    POST /v1/runs/{name}/forecast        forecasters: quantiles, median and mean of each series' next steps
    GET  /docs, /openapi.json            the OpenAPI docs

A run is named by its directory's name, given on the command line; no part of a request reaches the file system.
Every refusal is a 4xx JSON object {"error": "...", "limit": "..." (when a limit was passed)}. A client's
mistake (bad JSON, wrong types, a token outside the vocabulary, a prompt past a limit, an unknown run or route)
is never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..tasks import a_run_of
from .batching import Job, Worker, timed_out
from .limits import Limits, ServeError, past
from .metrics import Metrics
from .schemas import (ActivationsRequest, ForecastRequest, ForecastResponse, GenerateRequest, GenerateResponse,
                      PredictRequest, PredictResponse, TextsRequest, TranslateRequest, TranslateResponse)

#: what each task's run answers to
ROUTES = {"lm": ("generate", "activations"), "classify": ("predict",), "translate": ("translate",),
          "forecast": ("forecast",)}
ERRORS = {status: {"description": why, "content": {"application/json": {"example": {"error": "...", "limit": "..."}}}}
          for status, why in ((400, "the body is not JSON"), (404, "no such run, or not one of this task"),
                              (408, "past request_timeout"), (413, "past max_body_bytes"),
                              (422, "a field is wrong or past a limit"), (429, "past max_queue"))}


@dataclass
class Served:
    name: str
    run: Any  # an api.Run
    worker: Worker


def make_app(runs: dict, limits: Limits | None = None, *, batching: bool = True, window: float = 0.005) -> FastAPI:
    """The app serving `runs` ({name: a loaded api.Run}). batching=False runs one request at a time; `window` is
    how long (seconds) an idle run waits for more requests to batch with the first."""
    limits = limits or Limits()
    metrics = Metrics()
    for run in runs.values():
        if run.kind == "forecast":
            run.task._loaded()  # (a forecaster reads its series now: a missing data file fails here, not in a request)
    served = {name: Served(name, run, Worker(name, run, limits, metrics, batching=batching, window=window))
              for name, run in runs.items()}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for s in served.values():
            s.worker.start()
        yield
        for s in served.values():
            s.worker.stop()

    app = FastAPI(title="stackrnn serve", version=_version(), lifespan=lifespan,
                  description="Stacked-RNN runs over HTTP: generation (streamed as server-sent events), "
                              "classification, translation, forecasting. Requests that arrive together run as one "
                              "batch.")
    app.state.served, app.state.metrics, app.state.limits = served, metrics, limits
    app.add_middleware(Guard, limits=limits, metrics=metrics)

    @app.exception_handler(ServeError)
    async def refused(request: Request, e: ServeError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        return _invalid(e)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        message = {404: f"no route {request.method} {request.url.path}: see /docs",
                   405: f"{request.method} is not allowed on {request.url.path}: see /docs"}.get(e.status_code, str(e.detail))
        return JSONResponse({"error": message}, status_code=e.status_code, headers=getattr(e, "headers", None))

    def run_for(name: str, route: str) -> Served:
        s = served.get(name)
        if s is None:
            raise ServeError(404, f"no run named {name!r}; this server serves {', '.join(sorted(served)) or 'none'}")
        if route not in ROUTES[s.run.kind]:
            raise ServeError(404, f"run {name!r} is {a_run_of(s.run.kind)}: it answers to "
                                  f"{', '.join(ROUTES[s.run.kind])}, not {route}")
        return s

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        from .page import render_page

        # the page runs its own inline code only, and talks to this server alone
        return HTMLResponse(render_page(), headers={
            "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                       "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)  # (browsers ask for one; an empty answer keeps their consoles quiet)

    @app.get("/health")
    async def health():
        return {"status": "ok", "runs": sorted(served)}

    @app.get("/metrics", responses={200: {"content": {"text/plain": {}}}})
    async def get_metrics(format: str = "prometheus"):
        if format == "json":
            return metrics.to_dict()
        if format != "prometheus":
            raise ServeError(422, f"format: expected prometheus or json, got {format!r}")
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/runs")
    async def list_runs():
        return {"runs": [_describe(s) for s in served.values()],
                "limits": {k: getattr(limits, k) for k in Limits.__dataclass_fields__},
                "batching": batching}

    @app.post("/v1/runs/{name}/generate", response_model=GenerateResponse, responses={
        **ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "the result, or with stream: true, "
                        "`data: {\"token\": ...}` events and a closing `event: done` with the result"}})
    async def generate(name: str, body: GenerateRequest, request: Request):
        s = run_for(name, "generate")
        ids = _token_ids(s.run.tokenizer, body.prompt, "prompt", limits)
        if body.max_tokens > limits.max_new_tokens:
            raise past("max_new_tokens", f"max_tokens: {body.max_tokens} is more than the {limits.max_new_tokens} "
                                         "tokens a generation may have")
        job = _job("generate", {**body.model_dump(), "ids": ids}, limits, stream=body.stream)
        s.worker.submit(job)
        if not body.stream:
            return await _answer(job, request, limits)
        first = await _next_event(job, limits)  # a request refused before its first token gets a JSON 4xx
        if first[0] == "error":
            raise first[1]
        return StreamingResponse(_events(job, first, limits), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/runs/{name}/activations", responses=ERRORS)
    async def activations(name: str, body: ActivationsRequest, request: Request):
        s = run_for(name, "activations")
        ids = _token_ids(s.run.tokenizer, body.text, "text", limits)
        tokens = s.run.tokenizer.tokenize(body.text)
        return await _answer(_submit(s, "activations", {"ids": ids, "tokens": tokens, "units": body.units}, limits),
                             request, limits)

    @app.post("/v1/runs/{name}/predict", response_model=PredictResponse, responses=ERRORS)
    async def predict(name: str, body: PredictRequest, request: Request):
        s = run_for(name, "predict")
        texts = _texts(body, limits, s.run.task.tokenizer)
        return await _answer(_submit(s, "predict", {"texts": texts}, limits), request, limits)

    @app.post("/v1/runs/{name}/translate", response_model=TranslateResponse, responses=ERRORS)
    async def translate(name: str, body: TranslateRequest, request: Request):
        s = run_for(name, "translate")
        texts = _texts(body, limits, s.run.task.source_tokenizer)
        _check_prepared(s.run.task, texts)
        if body.max_length is not None and body.max_length > limits.max_new_tokens:
            raise past("max_new_tokens", f"max_length: {body.max_length} is more than the {limits.max_new_tokens} "
                                         "tokens a translation may have")
        if body.max_length is None:  # the decoder's default, twice the source's length plus 10, within the limit too
            task = s.run.task
            for i, prepared in enumerate(task.prepare_input(texts)):
                default = 2 * len(task.source_tokenizer.encode(prepared)) + 10
                if default > limits.max_new_tokens:
                    raise past("max_new_tokens", f"text {i + 1}: its translation may have {default} tokens (twice "
                                                 f"the source's, plus 10), more than the {limits.max_new_tokens} "
                                                 "allowed: give a max_length")
        if body.attention and s.run.model.attention is None:
            raise ServeError(422, f"attention: run {name!r} has no attention (model.attention = 'none')")
        request_fields = body.model_dump(exclude={"text", "texts"})
        return await _answer(_submit(s, "translate", {**request_fields, "texts": texts}, limits), request, limits)

    @app.post("/v1/runs/{name}/forecast", response_model=ForecastResponse, responses=ERRORS)
    async def forecast(name: str, body: ForecastRequest, request: Request):
        s = run_for(name, "forecast")
        known, trained = s.run.series, s.run.task.shape.horizon
        series = list(known) if body.series is None else list(dict.fromkeys(body.series))  # (each once, in order)
        if not series:
            raise ServeError(422, "series: is empty: give at least one series id, or leave series out for all")
        if len(series) > limits.max_series:
            what = "series" if body.series is not None else f"series left out means all {len(series)} of the run's"
            raise past("max_series", f"{what}: more than the {limits.max_series} series one request may forecast"
                       + ("" if body.series is not None else ": name the series"))
        unknown = sorted(set(series) - set(known))
        if unknown:
            raise ServeError(422, f"series: {unknown[0]!r} is not a series of run {name!r} ({len(unknown)} unknown); "
                                  f"it knows {len(known)}: {', '.join(known[:5])}{' ...' if len(known) > 5 else ''}")
        if body.horizon is not None and body.horizon > trained:
            raise past("horizon", f"horizon: {body.horizon} steps, more than the {trained} the run was trained to "
                                  "forecast")
        if body.samples > limits.max_samples:
            raise past("max_samples", f"samples: {body.samples} paths, more than the {limits.max_samples} allowed")
        return await _answer(_submit(s, "forecast", {**body.model_dump(), "series": series}, limits), request, limits)

    return app


# ---------------------------------------------------------------------------------------------- requests
def _token_ids(tokenizer, text: str, field: str, limits: Limits) -> list[int]:
    """The ids of a prompt or a text to inspect: every token in the vocabulary, at least one, at most the limit."""
    tokens = tokenizer.tokenize(text)
    if len(tokens) > limits.max_input_tokens:
        raise past("max_input_tokens", f"{field}: {len(tokens)} tokens, more than the {limits.max_input_tokens} allowed")
    if not tokens:
        raise ServeError(422, f"{field}: is empty after tokenization: give at least one token")
    unknown = sorted({t for t in tokens if t not in tokenizer.stoi})
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:10])
        raise ServeError(422, f"{field}: {len(unknown)} token(s) not in the run's vocabulary ({shown}): use only "
                              "tokens seen in training")
    return [tokenizer.stoi[t] for t in tokens]


def _texts(body: TextsRequest, limits: Limits, tokenizer) -> list[str]:
    """`text` or `texts` (exactly one), each non-empty and within max_input_tokens, at most max_batch of them."""
    if (body.text is None) == (body.texts is None):
        raise ServeError(422, "give the input as text (one string) or texts (a list of strings), one of them")
    texts = [body.text] if body.text is not None else body.texts
    if not texts:
        raise ServeError(422, "texts: is empty: give at least one text")
    if len(texts) > limits.max_batch:
        raise past("max_batch", f"texts: {len(texts)} texts, more than the {limits.max_batch} one request may send")
    for i, text in enumerate(texts):
        n = len(tokenizer.tokenize(text))
        if n > limits.max_input_tokens:
            raise past("max_input_tokens", f"text {i + 1}: {n} tokens, more than the {limits.max_input_tokens} allowed")
        if not text.strip():
            raise ServeError(422, f"text {i + 1} is empty: give some words")
    return texts


def _check_prepared(task, texts: list[str]) -> None:
    """A sentence that is empty once prepared as the training data was (the translator's normalisation may strip
    what remains) is refused here, naming it, rather than in the batch it would share."""
    from ..errors import InputError

    try:
        task.prepare_input(texts)
    except InputError as e:
        raise ServeError(422, str(e)) from None


def _job(kind: str, request: dict, limits: Limits, stream: bool = False) -> Job:
    loop = asyncio.get_running_loop()
    return Job(kind, request, loop, loop.create_future(), time.monotonic() + limits.request_timeout,
               stream=asyncio.Queue() if stream else None)


def _submit(s: Served, kind: str, request: dict, limits: Limits) -> Job:
    job = _job(kind, request, limits)
    s.worker.submit(job)
    return job


async def _answer(job: Job, request: Request, limits: Limits):
    """The job's result; 408 past the time limit; nothing (and the job dropped) if the client goes away."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job.future, gone}, timeout=max(0.0, job.deadline - time.monotonic()) + 1.0,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if job.future.done():
        return job.future.result()  # (a ServeError raises here, and its handler answers)
    job.cancelled = True
    job.future.cancel()  # (an answer that comes later is dropped)
    if gone.done() and not gone.cancelled():
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
    raise timed_out(limits)


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (its body already read, the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _next_event(job: Job, limits: Limits) -> tuple[str, Any]:
    try:
        return await asyncio.wait_for(job.stream.get(), timeout=max(0.0, job.deadline - time.monotonic()) + 1.0)
    except asyncio.TimeoutError:
        job.cancelled = True
        return ("error", timed_out(limits))


async def _events(job: Job, first: tuple[str, Any], limits: Limits):
    """Server-sent events: `data: {"token": ...}` per token, then `event: done` with the whole result (or `event:
    error` with the refusal, such as the time limit). A client that leaves stops its generation at the next step."""
    event = first
    try:
        while True:
            kind, value = event
            if kind == "token":
                yield f"data: {json.dumps({'token': value}, ensure_ascii=False)}\n\n"
            elif kind == "done":
                yield f"event: done\ndata: {json.dumps(value, ensure_ascii=False)}\n\n"
                return
            else:
                body = value.body() if isinstance(value, ServeError) else {"error": "internal error"}
                yield f"event: error\ndata: {json.dumps(body, ensure_ascii=False)}\n\n"
                return
            event = await _next_event(job, limits)
    finally:
        job.cancelled = True  # (done, or the client left: either way it leaves the batch)


def _invalid(e: RequestValidationError) -> JSONResponse:
    """A body that is not JSON (400), or a field of the wrong type or out of range (422), in one line."""
    errors = e.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return JSONResponse({"error": f"the body is not valid JSON: {first.get('ctx', {}).get('error', 'decode error')}"},
                            status_code=400)
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    if first.get("type") == "model_attributes_type" and not where:
        message = "the body must be a JSON object (Content-Type: application/json)"
    elif first.get("type") == "missing" and not where:
        message = "the body is missing: send a JSON object (Content-Type: application/json)"
    else:
        message = f"{where or 'body'}: {first.get('msg', 'invalid')}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return JSONResponse({"error": message + more}, status_code=422)


def _describe(s: Served) -> dict:
    run, out = s.run, {"name": s.name, "task": s.run.kind, "routes": list(ROUTES[s.run.kind])}
    if run.kind == "lm":
        out["level"] = run.tokenizer.level
        out["layers"] = len(run.model.rnn.specs)
    elif run.kind == "classify":
        out["labels"] = list(run.labels)
    elif run.kind == "forecast":
        shape = run.task.shape
        out.update(series=list(shape.ids), horizon=shape.horizon, freq=shape.freq, head=run.model.head,
                   quantiles=list(run.config.model.quantiles))
    else:
        out["attention"] = run.model.attention is not None
    return out


def _version() -> str:
    from .. import __version__

    return __version__


# ------------------------------------------------------------------------------------------- middleware
class Guard:
    """ASGI middleware before everything: the body cap (413 before the app sees a byte past max_body_bytes),
    and the request metrics (route, status, seconds to the answer's last byte; 499 for a client that left)."""

    def __init__(self, app, limits: Limits, metrics: Metrics) -> None:
        self.app, self.limits, self.metrics = app, limits, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.monotonic(), [499]
        cap = self.limits.max_body_bytes

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            declared = dict(scope.get("headers") or []).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                return await _too_large(sending, cap)
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > cap:
                    return await _too_large(sending, cap)
                chunks.append(chunk)
                more = message.get("more_body", False)
            replayed = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

            async def replay():
                return replayed.pop() if replayed else await receive()

            await self.app(scope, replay, sending)
        finally:
            self.metrics.request(_route(scope), status[0], time.monotonic() - start)


def _route(scope) -> str:
    """The route's template (/v1/runs/{name}/generate), so that mistyped paths do not each become a series."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


async def _too_large(send, cap: int) -> None:
    body = past("max_body_bytes", f"the request body is larger than {cap} bytes", status=413)
    payload = json.dumps(body.body()).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
