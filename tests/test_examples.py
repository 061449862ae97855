"""Every example config loads, passes its checks and builds its model; README code runs."""

import re
from pathlib import Path

import pytest

from stackrnn.cli import main

from .conftest import SHARED

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"timemachine.toml", "shakespeare.toml", "ptb-small.toml", "airline.toml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_builds(path, capsys):
    assert main(["summary", "--config", str(path), "--vocab-size", "50"]) == 0
    assert "Total params" in capsys.readouterr().out


def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_python_examples_for_the_api_and_the_layers():
    blocks = _readme_blocks()
    assert any("stackrnn.fit(" in b and "stackrnn.load(" in b for b in blocks)
    assert any("StackedRNN(" in b for b in blocks)


@pytest.mark.parametrize("index", range(len(_readme_blocks())))
def test_readme_python_example_runs_as_written(index, tmp_path, monkeypatch):
    """Each python block of the README, run from a folder laid out as the README assumes: the repository's
    examples/ beside it and ../shared/data above (a block that reads ../shared skips where it is absent). The
    runs it trains go into that temporary folder."""
    block = _readme_blocks()[index]
    if "../shared" in block:
        if not SHARED.is_dir():
            pytest.skip("../shared/data is not beside the repository")
        (tmp_path / "shared").symlink_to(SHARED.parent)
    work = tmp_path / "stackrnn"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(work)
    exec(compile(block, f"README.md python block {index + 1}", "exec"), {})
