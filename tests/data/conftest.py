"""The data tests run offline: downloads go nowhere (file:// URLs still open) and the cache is a fresh folder."""

import urllib.error
import urllib.request

import pytest


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Every test runs offline (file:// URLs still open) and with an empty private cache ($STACKRNN_CACHE)."""
    real = urllib.request.urlopen

    def offline(url, *args, **kwargs):
        if str(url).startswith("file:"):
            return real(url, *args, **kwargs)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("STACKRNN_CACHE", str(tmp_path / "cache"))
