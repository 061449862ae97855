"""`stackrnn serve`: every route against the library's own answers, streaming, micro-batching that really merges
requests, the limits (a 4xx naming each), a few hundred malformed requests (never a 5xx, good requests still
served), clients that leave mid-stream, and the command's bad arguments (one line, exit 2)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import stackrnn
from stackrnn.generate import sample
from stackrnn.serve.batching import sample_rows

fastapi = pytest.importorskip("fastapi", reason="fastapi (the serve extra) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the serve extra) is not installed")

from stackrnn.serve import Limits  # noqa: E402
from stackrnn.serve.faults import malformed, send  # noqa: E402

from tests.serving import classifier_run, live, translator_run  # noqa: E402,F401 (fixtures)


# ------------------------------------------------------------------------------------- the per-row sampler
@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.5, 3, 0.6),
                                                     (0.0, 0, 1.0), (1.0, 1000, 1.0)])
def test_sample_rows_draws_what_sample_draws_row_by_row(temperature, top_k, top_p):
    torch.manual_seed(0)
    logits = torch.randn(6, 40) * 3  # (B, V)
    for seed in range(4):
        expected = sample(logits, temperature, top_k, top_p, torch.Generator().manual_seed(seed))
        u = torch.rand(6, 1, generator=torch.Generator().manual_seed(seed))[:, 0]
        got = sample_rows(logits, torch.full((6,), temperature), torch.full((6,), top_k), torch.full((6,), top_p), u)
        assert torch.equal(got, expected)


def test_sample_rows_takes_each_rows_own_settings():
    torch.manual_seed(1)
    logits = torch.randn(4, 30)
    settings = [(0.0, 0, 1.0), (0.8, 4, 1.0), (1.2, 0, 0.7), (1.0, 2, 0.5)]
    u = torch.rand(4)
    got = sample_rows(logits, *(torch.tensor([s[i] for s in settings]) for i in range(3)), u)
    for b, (t, k, p) in enumerate(settings):
        one = sample_rows(logits[b:b + 1], torch.tensor([t]), torch.tensor([k]), torch.tensor([p]), u[b:b + 1])
        assert got[b] == one[0]
    assert got[0] == logits[0].argmax()


# ----------------------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def runs(trained_run, classifier_run, translator_run):
    return {"tiny": stackrnn.load(trained_run), "sentiment": classifier_run, "fr": translator_run}


@pytest.fixture(scope="module")
def server(runs):
    with live(runs, Limits(max_input_tokens=200, max_new_tokens=300, max_batch=8), window=0.02) as (url, app):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, app


def _metrics(client) -> dict:
    return client.get("/metrics", params={"format": "json"}).json()


def _batch_sizes(client, run: str, kind: str) -> Counter:
    for entry in _metrics(client)["batch_sizes"]:
        if entry["run"] == run and entry["kind"] == kind:
            return Counter({int(k): v for k, v in entry["sizes"].items()})
    return Counter()


def test_generate_equals_the_library(server, runs):
    client, _ = server
    for settings in ({"temperature": 0.8, "top_k": 5, "seed": 3}, {"temperature": 1.2, "top_p": 0.8, "seed": 4},
                     {"temperature": 0}):
        answer = client.post("/v1/runs/tiny/generate", json={"prompt": "The ", "max_tokens": 40, **settings})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        library = runs["tiny"].generate("The ", 40, **settings)
        assert body["text"] == library and body["prompt"] + body["completion"] == library
        assert body["tokens"] == 40 and body["finish_reason"] == "length"


def test_streaming_sends_one_event_per_token_then_the_result(server, runs):
    client, _ = server
    events = []
    with client.stream("POST", "/v1/runs/tiny/generate",
                       json={"prompt": "The ", "max_tokens": 25, "seed": 9, "stream": True}) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        kind = "message"
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                kind = "message"
    tokens = [e["token"] for k, e in events if k == "message"]
    assert len(tokens) == 25 and events[-1][0] == "done"
    result = events[-1][1]
    assert "".join(tokens) == result["completion"] and result["text"] == runs["tiny"].generate("The ", 25, seed=9)


def test_predict_and_translate_equal_the_library(server, runs):
    client, _ = server
    texts = ["a great movie", "the plot was dull"]
    answer = client.post("/v1/runs/sentiment/predict", json={"texts": texts})
    assert answer.status_code == 200 and answer.json()["results"] == runs["sentiment"].predict(texts)
    one = client.post("/v1/runs/sentiment/predict", json={"text": "a great film"}).json()["results"]
    assert len(one) == 1 and one[0]["label"] in runs["sentiment"].labels

    sentences = ["The cat sees the dog.", "The red fish eats."]
    answer = client.post("/v1/runs/fr/translate", json={"texts": sentences, "beam": 3})
    assert answer.status_code == 200
    assert [r["translation"] for r in answer.json()["results"]] == runs["fr"].translate(sentences, beam=3)
    with_map = client.post("/v1/runs/fr/translate", json={"text": sentences[0], "beam": 1, "attention": True}).json()
    result = with_map["results"][0]
    weights, source, target = runs["fr"].task.attention_map(runs["fr"].model, sentences[0], result["translation"],
                                                            ended=True)
    attention = result["attention"]
    assert attention["source"] == source and attention["target"] == target
    assert torch.allclose(torch.tensor(attention["weights"]), weights, atol=1e-4)


def test_activations_are_the_inspect_view(server, runs, trained_run):
    from stackrnn.inspect.page import analyse, page_data

    client, _ = server
    text = "The time machine."
    answer = client.post("/v1/runs/tiny/activations", json={"text": text, "units": 5})
    assert answer.status_code == 200
    run = runs["tiny"]
    tokens = run.tokenizer.tokenize(text)
    reports, shown = analyse(run.model, torch.tensor(run.tokenizer.encode(text))[:, None], tokens, 5)
    assert answer.json() == json.loads(json.dumps(page_data("tiny", "char", tokens, reports, shown)))


def test_health_runs_metrics_and_docs(server):
    client, _ = server
    assert client.get("/health").json() == {"status": "ok", "runs": ["fr", "sentiment", "tiny"]}
    described = {r["name"]: r for r in client.get("/v1/runs").json()["runs"]}
    assert described["tiny"]["task"] == "lm" and described["tiny"]["level"] == "char"
    assert set(described["sentiment"]["labels"]) == {"neg", "pos"} and described["fr"]["attention"] is True
    client.get("/health")
    text = client.get("/metrics").text
    assert 'stackrnn_requests_total{route="/health",status="200"}' in text
    assert "# TYPE stackrnn_batch_size histogram" in text and "stackrnn_request_seconds_bucket" in text
    latency = _metrics(client)["latency_seconds"]["/health"]
    assert latency["count"] >= 1 and 0 < latency["p50"] <= latency["p99"]
    schema = client.get("/openapi.json").json()
    assert {"/v1/runs/{name}/generate", "/v1/runs/{name}/predict", "/v1/runs/{name}/translate", "/health",
            "/metrics"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]


def test_concurrent_generations_run_as_one_batch(server, runs):
    client, _ = server
    before = _batch_sizes(client, "tiny", "generate_step")
    prompts = ["The ", "A ", "In the ", "It was ", "We ", "He said ", "Of ", "To be "]
    start = threading.Barrier(len(prompts))

    def one(prompt):
        start.wait()
        return client.post("/v1/runs/tiny/generate", json={"prompt": prompt, "max_tokens": 30, "temperature": 0}).json()

    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(one, prompts))
    for prompt, result in zip(prompts, results):
        assert result["text"] == runs["tiny"].generate(prompt, 30, temperature=0)
    steps = _batch_sizes(client, "tiny", "generate_step") - before
    assert max(steps) >= 4, steps  # requests that arrived together stepped together
    assert sum(size * n for size, n in steps.items()) == 8 * 29  # each sequence stepped once per token but its last


def test_without_batching_every_pass_is_one_request(runs):
    with live({"tiny": runs["tiny"]}, batching=False) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            with ThreadPoolExecutor(6) as pool:
                list(pool.map(lambda p: client.post("/v1/runs/tiny/generate", json={"prompt": p, "max_tokens": 10}),
                              ["The "] * 6))
            assert set(_batch_sizes(client, "tiny", "generate_step")) == {1}
            assert _batch_sizes(client, "tiny", "generate_prime") == Counter({1: 6})


# ---------------------------------------------------------------------------------------------- the limits
@pytest.mark.parametrize("route,body,status,limit", [
    ("tiny/generate", {"prompt": "e" * 201}, 422, "max_input_tokens"),
    ("tiny/generate", {"prompt": "The ", "max_tokens": 301}, 422, "max_new_tokens"),
    ("tiny/activations", {"text": "e" * 201}, 422, "max_input_tokens"),
    ("sentiment/predict", {"texts": ["a"] * 9}, 422, "max_batch"),
    ("sentiment/predict", {"text": "great " * 201}, 422, "max_input_tokens"),
    ("fr/translate", {"text": "the cat", "max_length": 301}, 422, "max_new_tokens"),
    ("fr/translate", {"text": "the cat " * 100}, 422, "max_new_tokens"),  # its default length: 2 x 200 + 10
    ("tiny/generate", {"prompt": "a" * 70_000}, 413, "max_body_bytes"),
])
def test_a_request_past_a_limit_gets_a_4xx_naming_it(server, route, body, status, limit):
    client, _ = server
    answer = client.post(f"/v1/runs/{route}", json=body)
    assert answer.status_code == status and answer.json()["limit"] == limit and limit in answer.json()["error"]


def test_the_time_and_queue_limits(runs):
    limits = Limits(request_timeout=0.3, max_new_tokens=10**6, max_queue=2)
    with live({"tiny": runs["tiny"]}, limits, batching=False) as (url, _):
        with httpx.Client(base_url=url, timeout=30) as client:
            slow = {"prompt": "The ", "max_tokens": 10**6}
            answer = client.post("/v1/runs/tiny/generate", json=slow)
            assert answer.status_code == 408 and answer.json()["limit"] == "request_timeout"
            with ThreadPoolExecutor(8) as pool:
                statuses = Counter(pool.map(lambda _: client.post("/v1/runs/tiny/generate", json=slow).status_code,
                                            range(8)))
            assert set(statuses) <= {408, 429} and statuses[429] >= 1, statuses
            refused = client.post("/v1/runs/tiny/generate", json=slow)
            assert refused.status_code in (408, 429) and refused.json()["limit"] in ("request_timeout", "max_queue")
            # afterwards the server answers as before
            assert client.post("/v1/runs/tiny/generate", json={"prompt": "The ", "max_tokens": 5}).status_code == 200


# ---------------------------------------------------------------------------------------------- faults
def test_malformed_requests_get_4xx_never_5xx_and_good_ones_still_succeed(server, runs):
    client, app = server
    host, port = client.base_url.host, client.base_url.port
    faults = malformed(300, {name: run.kind for name, run in runs.items()}, seed=1)
    good = {"prompt": "The ", "max_tokens": 8, "seed": 1}
    expected = runs["tiny"].generate("The ", 8, seed=1)
    statuses: Counter = Counter()
    for i, fault in enumerate(faults):
        status = send(host, port, fault)
        statuses[status] += 1
        assert status is None or 400 <= status < 500, (fault.kind, fault.raw[:300], status)
        if i % 25 == 0:
            assert client.post("/v1/runs/tiny/generate", json=good).json()["text"] == expected
    assert statuses[None] >= 30 and sum(n for s, n in statuses.items() if s) >= 200
    assert not [r for r in _metrics(client)["requests"] if r["status"] >= 500]
    # every abandoned generation has left the batch
    deadline = time.monotonic() + 5
    while app.state.served["tiny"].worker.decoding.rows and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not app.state.served["tiny"].worker.decoding.rows


def test_a_client_that_leaves_mid_stream_stops_its_generation(runs):
    with live({"tiny": runs["tiny"]}, Limits(max_new_tokens=10**6, request_timeout=60)) as (url, app):
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"prompt": "The ", "max_tokens": 10**6, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/runs/tiny/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            assert b"data: " in sock.recv(4096) + sock.recv(4096)
            assert len(app.state.served["tiny"].worker.decoding.rows) == 1
        deadline = time.monotonic() + 5  # a million tokens would take minutes
        while app.state.served["tiny"].worker.decoding.rows and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not app.state.served["tiny"].worker.decoding.rows


# ------------------------------------------------------------------------------------------- the command
def _main(capsys, *argv) -> tuple[int, str]:
    from stackrnn.cli import main

    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def test_serve_refuses_bad_arguments_in_one_line(trained_run, tmp_path, capsys):
    code, err = _main(capsys, "serve", str(tmp_path / "no-run"))
    assert code == 2 and len(err.splitlines()) == 1 and "no-run" in err
    code, err = _main(capsys, "serve", str(trained_run), "--max-batch", "0")
    assert code == 2 and len(err.splitlines()) == 1 and "--max-batch" in err
    code, err = _main(capsys, "serve", str(trained_run), "--threads", "-1")
    assert code == 2 and len(err.splitlines()) == 1 and "--threads" in err
    code, err = _main(capsys, "serve", str(trained_run), str(trained_run))
    assert code == 2 and len(err.splitlines()) == 1 and "two runs are named" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, err = _main(capsys, "serve", str(trained_run), "--port", str(port))
    assert code == 2 and len(err.splitlines()) == 1 and f"--port {port}: already in use" in err
    code, err = _main(capsys, "serve", str(trained_run), "--host", "no.such.host.invalid")
    assert code == 2 and len(err.splitlines()) == 1 and "--host" in err


# ------------------------------------------------------------------------------------------------ forecasting
from tests.serving import forecast_run  # noqa: E402,F401 (fixture)

FORECAST_LIMITS = Limits(max_series=2, max_samples=300, max_batch=8)


@pytest.fixture(scope="module")
def forecaster(forecast_run):
    """A server of the forecasting run alone, torch on one thread (a tiny model is ten times faster so here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    # a window long enough that requests sent together meet in it even on a busy machine
    with live({"sales": forecast_run}, FORECAST_LIMITS, window=0.3) as (url, app):
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client, app
    torch.set_num_threads(before)


def test_forecast_equals_the_library(forecaster, forecast_run):
    client, _ = forecaster
    answer = client.post("/v1/runs/sales/forecast", json={"series": ["s0", "s2"], "samples": 50, "history": 10})
    assert answer.status_code == 200, answer.text
    got, want = answer.json()["results"], forecast_run.forecast(["s0", "s2"], samples=50)
    for g, w in zip(got, want, strict=True):
        assert g["series"] == w["series"] and g["timestamps"] == w["timestamps"] and len(g["median"]) == 14
        assert g["median"] == pytest.approx(w["median"].tolist(), abs=1e-5)
        assert g["quantiles"]["0.1"] == pytest.approx(w["quantiles"][0.1].tolist(), abs=1e-5)
        assert set(g["quantiles"]) == {"0.025", "0.1", "0.5", "0.9", "0.975"}
        assert g["history"] == pytest.approx(w["history"][-10:].tolist()) and g["actual"] is None
    # the test split with its held-out values, a shorter horizon; no series given: all of them
    test = client.post("/v1/runs/sales/forecast", json={"series": ["s1"], "split": "test", "horizon": 5}).json()
    one = test["results"][0]
    assert len(one["median"]) == len(one["actual"]) == 5
    assert one["median"] == pytest.approx(forecast_run.forecast("s1", split="test", horizon=5)["median"].tolist(), abs=1e-5)
    twice = client.post("/v1/runs/sales/forecast", json={"series": ["s2", "s2", "s0"], "samples": 10}).json()
    assert [r["series"] for r in twice["results"]] == ["s2", "s0"]  # each once, as the library forecasts them
    described = client.get("/v1/runs").json()
    assert described["runs"][0] == {"name": "sales", "task": "forecast", "routes": ["forecast"], "series": ["s0", "s1", "s2"],
                                    "horizon": 14, "freq": "D", "head": "student_t",
                                    "quantiles": [0.025, 0.1, 0.5, 0.9, 0.975]}
    assert described["limits"]["max_series"] == 2 and "/v1/runs/{name}/forecast" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("body,limit", [
    ({"series": ["s0", "s1", "s2"]}, "max_series"),
    ({}, "max_series"),  # every series of the run: three
    ({"series": ["s0"], "samples": 301}, "max_samples"),
    ({"series": ["s0"], "horizon": 15}, "horizon"),
])
def test_a_forecast_past_a_limit_gets_a_4xx_naming_it(forecaster, body, limit):
    client, _ = forecaster
    answer = client.post("/v1/runs/sales/forecast", json=body)
    assert answer.status_code == 422 and answer.json()["limit"] == limit and limit in answer.json()["error"], answer.text


def test_bad_forecasts_are_refused_and_other_tasks_routes_are_not_a_forecasters(forecaster):
    client, _ = forecaster
    for body, words in (({"series": ["nope"]}, "'nope' is not a series"), ({"series": []}, "is empty"),
                        ({"series": ["s0"], "split": "train"}, "split"), ({"series": "s0"}, "series"),
                        ({"series": ["s0"], "samples": 0}, "samples")):
        answer = client.post("/v1/runs/sales/forecast", json=body)
        assert answer.status_code == 422 and words in answer.json()["error"], (body, answer.text)
    answer = client.post("/v1/runs/sales/generate", json={"prompt": "a"})
    assert answer.status_code == 404 and "answers to forecast" in answer.json()["error"]


def test_forecasts_of_different_series_that_arrive_together_share_a_forward_pass(forecaster, forecast_run):
    """Each series' paths come from its own seed, so its forecast in a batch is the one it gets alone."""
    client, _ = forecaster
    before = _batch_sizes(client, "sales", "forecast")
    start = threading.Barrier(4)

    def one(series):
        start.wait()
        return client.post("/v1/runs/sales/forecast", json={"series": [series], "samples": 40}).json()["results"][0]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, ["s0", "s1", "s2", "s0"]))
    sizes = _batch_sizes(client, "sales", "forecast") - before
    # at most max_series (2) series a pass, and fewer passes than requests (a series asked twice in one pass is
    # forecast once, so the sizes need not add up to 4)
    assert max(sizes) == 2 and sum(sizes.values()) < 4, sizes
    for r in results:
        assert r["median"] == pytest.approx(forecast_run.forecast(r["series"], samples=40)["median"].tolist(), abs=1e-5)


def test_malformed_forecasts_get_4xx_never_5xx(forecaster):
    client, _ = forecaster
    host, port = client.base_url.host, client.base_url.port
    faults = [f for f in malformed(140, {"sales": "forecast"}, seed=2) if f.kind.startswith("forecast")]
    assert len(faults) == 20
    for fault in faults:
        status = send(host, port, fault)
        assert 400 <= status < 500, (fault.raw[-200:], status)
    assert client.post("/v1/runs/sales/forecast", json={"series": ["s0"], "samples": 10}).status_code == 200
