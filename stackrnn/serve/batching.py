"""Dynamic micro-batching: the requests that arrive together run as one forward pass.

An RNN step at batch 32 costs little more than at batch 1 (the weights are read once either way), so a server
that runs requests one by one wastes most of its time. Each served run has one worker thread that owns its model:

    event loop (HTTP)                         worker thread of a run (the model)
    ----------------                          ----------------------------------
    validate, tokenize  --Job-->  queue  -->  idle: wait for a job, then up to `window` seconds more for others,
                                              up to max_batch; run them as one batch
    await the answer    <--result--           generation: every step is one StackedRNN step for all sequences
    stream each token   <--token---           (each with its own prompt length, temperature, top-k/top-p, length
                                              and seed); new requests join at the next step, finished or
                                              abandoned ones leave it (continuous batching)

With batching off (`--no-batching`) a worker runs one request at a time, to completion: the baseline the
benchmark compares against.

Dimension key: B sequences in the batch, T prompt length, V vocabulary.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..decode import length_limits
from ..errors import InputError
from ..generate import IncrementalDecoder
from .limits import Limits, ServeError, past
from .metrics import Metrics

_STOP = object()


@dataclass(eq=False)
class Job:
    """One request's work, handed from the event loop to a run's worker. The worker answers through `future`
    (and, for a streamed generation, puts each token on `stream`); the event loop sets `cancelled` when the
    client has gone or the time ran out, and the worker then drops the job at its next step."""

    kind: str  # generate, predict, translate, activations or forecast
    request: dict  # the validated request (token ids included)
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    deadline: float  # time.monotonic() past which the request is answered 408
    stream: asyncio.Queue | None = None
    cancelled: bool = False
    arrived: float = field(default_factory=time.monotonic)

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        """From the worker: the request's result, or its error (a ServeError or a bug); a streamed job also gets
        it as its last event, ("done", result) or ("error", error)."""
        self.loop.call_soon_threadsafe(_settle, self, result, error)


def _settle(job: Job, result: Any, error: BaseException | None) -> None:
    if job.stream is not None:  # (a streamed job is answered through its stream alone)
        job.stream.put_nowait(("error", error) if error is not None else ("done", result))
    elif not job.future.done():  # (the handler may have given up on it: timeout, disconnect)
        job.future.set_exception(error) if error is not None else job.future.set_result(result)


def timed_out(limits: Limits) -> ServeError:
    return past("request_timeout", f"the request took longer than {limits.request_timeout:g} s", status=408)


# ---------------------------------------------------------------------------------------------- sampling
def sample_rows(logits: Tensor, temperature: Tensor, top_k: Tensor, top_p: Tensor, uniforms: Tensor) -> Tensor:
    """One token per row of logits (B, V) -> (B,), each row with its own temperature (B,), top_k (B,), top_p (B,)
    and uniform draw in [0, 1) (B,). Row by row the same arithmetic as generate.sample, so a row's tokens equal
    what `generate` draws for that prompt alone with the same generator (tests/test_serve.py checks it):
    temperature 0 is greedy (argmax, no draw), top_k 0 keeps every token, top_p 1 turns the nucleus off."""
    b, v = logits.shape
    greedy = temperature == 0
    scaled = logits / torch.where(greedy, 1.0, temperature)[:, None]
    limited = (top_k > 0) & (top_k < v)
    if bool(limited.any()):
        kth = scaled.sort(dim=-1, descending=True).values.gather(1, (top_k.clamp(1, v) - 1)[:, None])  # (B, 1)
        scaled = scaled.masked_fill((scaled < kth) & limited[:, None], float("-inf"))
    nucleus = top_p < 1
    if bool(nucleus.any()):
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens before it already reach top_p; the most likely token always stays
        drop = (probs.cumsum(dim=-1) - probs >= top_p[:, None]) & nucleus[:, None]
        scaled = scaled.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    cdf = scaled.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    u = uniforms.to(cdf.device, cdf.dtype)[:, None] * cdf[:, -1:]
    drawn = torch.searchsorted(cdf, u, right=True).clamp_(max=v - 1).squeeze(-1)
    return torch.where(greedy, logits.argmax(dim=-1), drawn)


# -------------------------------------------------------------------------------------------- generation
@dataclass(eq=False)
class Sequence:
    """One generation in the batch: its job, its settings, the uniform draws its seed gives, the tokens so far."""

    job: Job
    max_tokens: int
    uniforms: list[float]  # one per token; [] for greedy decoding
    ids: list[int] = field(default_factory=list)


class Decoding:
    """The language model's running batch: its sequences, their next-token logits (B, V) and per-layer states."""

    def __init__(self, run, name: str, metrics: Metrics) -> None:
        self.run, self.name, self.metrics = run, name, metrics
        self.decoder = IncrementalDecoder(run.model)
        self.tokenizer = run.tokenizer
        self.rows: list[Sequence] = []
        self.logits: Tensor | None = None  # (B, V)
        self.state: list | None = None
        self.settings: tuple[Tensor, Tensor, Tensor] | None = None  # temperature, top_k, top_p, each (B,)

    def admit(self, jobs: list[Job]) -> None:
        """Read the new jobs' prompts as one padded batch and add them to the running one."""
        prompts = [job.request["ids"] for job in jobs]
        lengths = torch.tensor([len(p) for p in prompts])
        padded = torch.zeros(int(lengths.max()), len(prompts), dtype=torch.long)  # (T, B), right-padded
        for b, ids in enumerate(prompts):
            padded[: len(ids), b] = torch.tensor(ids)
        logits, state = self.decoder.prime(padded.to(self.run.device), lengths)
        self.metrics.batch(self.name, "generate_prime", len(jobs))
        settings = (torch.tensor([float(j.request["temperature"]) for j in jobs]),
                    torch.tensor([int(j.request["top_k"]) for j in jobs]),
                    torch.tensor([float(j.request["top_p"]) for j in jobs]))
        new = [Sequence(j, j.request["max_tokens"], _uniforms(j.request)) for j in jobs]
        if self.rows:
            logits, state = torch.cat([self.logits, logits]), [_cat(a, b) for a, b in zip(self.state, state)]
            settings = tuple(torch.cat([a, b]) for a, b in zip(self.settings, settings))
        self.rows, self.logits, self.state, self.settings = self.rows + new, logits, state, settings

    def step(self, limits: Limits) -> None:
        """Draw the next token of every sequence, hand it on, let the finished ones leave, and step the rest."""
        now = time.monotonic()
        for row in self.rows:
            if now > row.job.deadline and not row.job.cancelled:
                self._fail(row.job, timed_out(limits))
        self._keep([i for i, row in enumerate(self.rows) if not row.job.cancelled])
        if not self.rows:
            return
        n = len(self.rows)
        uniforms = torch.tensor([row.uniforms[len(row.ids)] if row.uniforms else 0.0 for row in self.rows])
        tokens = sample_rows(self.logits, *self.settings, uniforms).tolist()  # (B,)
        streamed, done = [], []
        for row, token in zip(self.rows, tokens):
            previous = row.ids[-1] if row.ids else None
            row.ids.append(token)
            if row.job.stream is not None:
                streamed.append((row.job.stream, ("token", self.piece(token, previous))))
            if len(row.ids) == row.max_tokens:
                row.job.cancelled = True  # (done: it leaves the batch below)
                done.append(row)
        if streamed:  # one wake-up of the event loop per step, before the answers (which end the streams)
            self.rows[0].job.loop.call_soon_threadsafe(_deliver, streamed)
        for row in done:
            row.job.answer(self.result(row))
        keep = [i for i, row in enumerate(self.rows) if not row.job.cancelled]
        self._keep(keep)
        if self.rows:
            stepped = torch.tensor([tokens[i] for i in keep], device=self.run.device)
            self.logits, self.state = self.decoder.step(stepped, self.state)
            self.metrics.batch(self.name, "generate_step", len(self.rows))
        elif n:
            self.logits = self.state = self.settings = None

    def _keep(self, keep: list[int]) -> None:
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.logits = self.state = self.settings = None
            return
        index = torch.tensor(keep)
        on_device = index.to(self.logits.device)
        self.logits = self.logits.index_select(0, on_device)
        self.state = [tuple(t.index_select(0, on_device) for t in s) if isinstance(s, tuple) else s.index_select(0, on_device)
                      for s in self.state]
        self.settings = tuple(t.index_select(0, index) for t in self.settings)

    def _fail(self, job: Job, error: ServeError) -> None:
        job.cancelled = True
        job.answer(error=error)

    def piece(self, token: int, previous: int | None) -> str:
        """The text one new token adds to the completion, so that the pieces join to tokenizer.decode(ids)."""
        word = self.tokenizer.itos[token]
        if self.tokenizer.level == "char":
            return word
        eos = self.tokenizer.eos_id
        if token == eos:
            return "\n"
        return word if previous is None or previous == eos else " " + word

    def result(self, row: Sequence) -> dict:
        prompt = row.job.request["prompt"]
        completion = self.tokenizer.decode(row.ids)
        joiner = "" if self.tokenizer.level == "char" else " "  # as generate() joins them
        return {"prompt": prompt, "completion": completion, "text": prompt + joiner + completion,
                "tokens": len(row.ids), "finish_reason": "length"}


def _uniforms(request: dict) -> list[float]:
    """The uniform draws of a request's sampling: torch.rand of a generator seeded as `generate` seeds its own,
    one per token (drawn at once: on the CPU the same numbers as one draw per step)."""
    if request["temperature"] == 0:
        return []
    generator = torch.Generator()
    if request.get("seed") is not None:
        generator.manual_seed(request["seed"])
    else:
        generator.seed()
    return torch.rand(request["max_tokens"], 1, generator=generator)[:, 0].tolist()


def _cat(a, b):
    return tuple(torch.cat([x, y]) for x, y in zip(a, b)) if isinstance(a, tuple) else torch.cat([a, b])


def _deliver(items: list[tuple[asyncio.Queue, tuple]]) -> None:
    for stream, item in items:
        stream.put_nowait(item)


# ------------------------------------------------------------------------------------------------ worker
class Worker:
    """The thread that owns one run's model and runs its requests in batches (see the module docstring)."""

    def __init__(self, name: str, run, limits: Limits, metrics: Metrics, *, batching: bool = True,
                 window: float = 0.005) -> None:
        self.name, self.run, self.limits, self.metrics = name, run, limits, metrics
        self.max_batch = limits.max_batch if batching else 1
        self.window = window if batching else 0.0
        self.queue: queue.Queue = queue.Queue()
        self.decoding = Decoding(run, name, metrics) if run.kind == "lm" else None
        self.thread = threading.Thread(target=self._loop, name=f"stackrnn-serve-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.thread.join(timeout=5)

    def submit(self, job: Job) -> None:
        if self.queue.qsize() >= self.limits.max_queue:
            raise past("max_queue", f"run {self.name!r} has {self.limits.max_queue} requests waiting: try again soon",
                       status=429)
        self.queue.put(job)

    def _loop(self) -> None:
        pending: deque[Job] = deque()
        with torch.inference_mode():
            while True:
                busy = bool(self.decoding and self.decoding.rows)
                if not pending and not busy:
                    pending.append(self.queue.get())  # idle: sleep until a request comes
                    until = time.monotonic() + self.window
                    while len(pending) < self.max_batch and (left := until - time.monotonic()) > 0:
                        try:
                            pending.append(self.queue.get(timeout=left))
                        except queue.Empty:
                            break
                while True:  # whatever else has arrived joins now
                    try:
                        pending.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                if _STOP in pending:
                    return
                self._drop_finished(pending)
                try:
                    self._work(pending)
                except Exception as error:  # noqa: BLE001 (a bug must not stop the worker: answer 500, go on)
                    for job in list(pending) + ([r.job for r in self.decoding.rows] if self.decoding else []):
                        job.cancelled = True
                        job.answer(error=error)
                    pending.clear()
                    if self.decoding:
                        self.decoding._keep([])

    def _drop_finished(self, pending: deque) -> None:
        """Forget the jobs whose client has gone; answer 408 to those whose time ran out while they waited."""
        now = time.monotonic()
        for job in list(pending):
            if not job.cancelled and now > job.deadline:
                job.cancelled = True
                job.answer(error=timed_out(self.limits))
            if job.cancelled:
                pending.remove(job)

    def _work(self, pending: deque) -> None:
        """One round: the next batch of pending requests, and one decoding step of the running generations."""
        if self.decoding is not None:
            for job in [j for j in pending if j.kind == "activations"]:
                pending.remove(job)
                self._one(job, self._activations)
            room = self.max_batch - len(self.decoding.rows)
            admitted = [job for job in list(pending)[:room] if job.kind == "generate"] if room > 0 else []
            for job in admitted:
                pending.remove(job)
            if admitted:
                self.decoding.admit(admitted)
            self.decoding.step(self.limits)
        elif pending and pending[0].kind == "forecast":
            self._forecast(pending)
        elif pending:
            self._batch(pending)

    def _forecast(self, pending: deque) -> None:
        """The first pending forecast and those after it with the same horizon, samples and split, up to
        max_series series (and max_batch requests): one call of the run's forecast, which batches their series
        (each series' paths from its own seed, so a series' forecast is the same alone and in a batch)."""
        first = pending[0]
        key = _forecast_key(first)
        jobs, count = [], 0
        for job in list(pending):
            n = len(job.request["series"])
            if jobs and (len(jobs) >= self.max_batch or count + n > self.limits.max_series or _forecast_key(job) != key):
                continue
            jobs.append(job)
            pending.remove(job)
            count += n
        everything = list(dict.fromkeys(i for job in jobs for i in job.request["series"]))  # (a series asked twice: once)
        try:
            results = {r["series"]: r for r in self.run.forecast(everything, **key)}
        except InputError as e:
            for job in jobs:
                job.answer(error=ServeError(422, str(e)))
            return
        self.metrics.batch(self.name, "forecast", len(everything))
        for job in jobs:
            job.answer({"results": [_forecast_json(results[i], job.request["history"]) for i in job.request["series"]]})

    def _batch(self, pending: deque) -> None:
        """Predict or translate: the first pending job and those after it that can share its forward pass, up to
        max_batch texts."""
        first = pending[0]
        key = _search_key(first)
        jobs, texts = [], 0
        for job in list(pending):
            n = len(job.request["texts"])
            if jobs and (texts + n > self.max_batch or _search_key(job) != key):
                continue
            jobs.append(job)
            pending.remove(job)
            texts += n
        everything = [t for job in jobs for t in job.request["texts"]]
        try:
            if first.kind == "predict":
                results = self.run.task.predict(self.run.model, everything, device=self.run.device)
            else:
                results = self.run.task.translate(self.run.model, everything, device=self.run.device, **key)
        except InputError as e:  # (validated before; a refusal from the library is still the client's)
            for job in jobs:
                job.answer(error=ServeError(422, str(e)))
            return
        self.metrics.batch(self.name, first.kind, len(everything))
        start = 0
        for job in jobs:
            mine = results[start:start + len(job.request["texts"])]
            start += len(job.request["texts"])
            if first.kind == "translate" and job.request.get("attention"):
                for r in mine:
                    r["attention"] = self._attention(r["source"], r["translation"], key["max_length"])
            job.answer({"results": mine})

    def _attention(self, source: str, translation: str, max_length: int | None) -> dict | None:
        """The attention of each target word over the source words, as drawn by `stackrnn translate
        --attention`; None for an empty translation (no word to draw)."""
        task = self.run.task
        if not translation.strip():
            return None
        (prepared,) = task.prepare_input([source])
        limit = length_limits(torch.tensor([len(task.source_tokenizer.encode(prepared))]), max_length)[0]
        weights, source_words, target_words = task.attention_map(self.run.model, source, translation,
                                                                  ended=len(translation.split()) < limit,
                                                                  device=self.run.device)
        return {"source": source_words, "target": target_words,
                "weights": [[round(float(w), 4) for w in row] for row in weights.tolist()]}

    def _activations(self, job: Job) -> dict:
        from ..inspect.page import analyse, page_data

        tokens = job.request["tokens"]
        ids = torch.tensor(job.request["ids"], device=self.run.device)[:, None]  # (T, 1)
        reports, shown = analyse(self.run.model, ids, tokens, job.request["units"])
        self.metrics.batch(self.name, "activations", 1)
        return page_data(self.name, self.run.tokenizer.level, tokens, reports, shown)

    def _one(self, job: Job, work) -> None:
        try:
            job.answer(work(job))
        except InputError as e:
            job.answer(error=ServeError(422, str(e)))


def _forecast_key(job: Job) -> dict:
    r = job.request
    return {"horizon": r["horizon"], "samples": r["samples"], "split": r["split"]}


def _numbers(values) -> list:
    """Floats for JSON (which has no NaN): missing values as null."""
    return [None if v != v else float(v) for v in values]


def _forecast_json(result: dict, history: int) -> dict:
    """A ForecasterRun forecast as the API answers it: lists of numbers, quantiles by level as text, the last
    `history` values before the forecast."""
    past = result["history"][-history:] if history else []
    return {"series": result["series"], "timestamps": result["timestamps"], "median": _numbers(result["median"]),
            "mean": _numbers(result["mean"]), "quantiles": {str(level): _numbers(v) for level, v in
                                                            result["quantiles"].items()},
            "history": _numbers(past), "actual": None if result["actual"] is None else _numbers(result["actual"])}


def _search_key(job: Job) -> dict:
    r = job.request
    if job.kind != "translate":
        return {}
    return {"beam": r["beam"], "max_length": r["max_length"], "length_penalty": r["length_penalty"]}
