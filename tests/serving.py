"""Shared by the server's tests: tiny runs of every task, and a live server (uvicorn in a thread, on a free port
of 127.0.0.1) over them."""

from __future__ import annotations

import random
import threading
import time
from contextlib import contextmanager

import pytest

import stackrnn

WORDS = "the a movie film plot was is very long short dull bright".split()
LEXICON = {"the": "le", "red": "rouge", "cat": "chat", "dog": "chien", "sees": "voit", "eats": "mange", "fish": "poisson"}


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    rng = random.Random(0)
    for split, n in (("train", 120), ("dev", 20), ("test", 20)):
        rows = []
        for i in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
            if i % 2 == 0:
                words.insert(rng.randrange(len(words) + 1), "great")
            rows.append(f"{' '.join(words)}\t{'pos' if i % 2 == 0 else 'neg'}\n")
        (folder / f"{split}.tsv").write_text("text\tlabel\n" + "".join(rows), encoding="utf-8")
    return stackrnn.fit(task="classify", data=folder, out=tmp_path_factory.mktemp("serve") / "sentiment", epochs=2,
                        embedding_size=16, hidden_size=16, num_layers=1, batch_size=16, lr=0.01, progress=False, seed=1)


@pytest.fixture(scope="module")
def translator_run(tmp_path_factory):
    rng = random.Random(0)
    lines = []
    for _ in range(200):
        words = [rng.choice(list(LEXICON)) for _ in range(rng.randint(2, 5))]
        lines.append(f"{' '.join(words).capitalize()}.\t{' '.join(LEXICON[w] for w in words).capitalize()} .")
    path = tmp_path_factory.mktemp("parallel") / "toy.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {"task": "translate", "model": {"embedding_size": 16, "encoder_hidden_size": 16, "decoder_hidden_size": 16,
                                             "dropout": 0.0},
              "data": {"data": str(path), "batch_size": 32, "valid_fraction": 0.1, "test_fraction": 0.1},
              "train": {"epochs": 5, "lr": 0.01, "progress": False, "seed": 1}}
    return stackrnn.fit(config, out=tmp_path_factory.mktemp("serve") / "fr")


@contextmanager
def live(runs: dict, limits=None, **options):
    """A server of `runs` ({name: Run}) on 127.0.0.1; yields (base url, app). Stopped on leaving."""
    import uvicorn

    from stackrnn.serve import bind, make_app

    sock = bind("127.0.0.1", 0)
    app = make_app(runs, limits, **options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory):
    """A Student-t forecaster of three daily series (tests/export_runs.py's data), 20 steps on one thread."""
    from .export_runs import FORECAST, one_thread, write_forecast_data

    data = write_forecast_data(tmp_path_factory.mktemp("series"), "daily.csv")
    with one_thread():
        return stackrnn.fit(task="forecast", data=data, out=tmp_path_factory.mktemp("serve") / "sales", head="student_t",
                            **{**FORECAST, "max_steps": 20})
