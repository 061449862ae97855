"""Every example config loads, passes its checks and builds its model; README code runs."""

import re
from pathlib import Path

import pytest

from stackrnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"timemachine.toml", "shakespeare.toml", "ptb-small.toml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_builds(path, capsys):
    assert main(["summary", "--config", str(path), "--vocab-size", "50"]) == 0
    assert "Total params" in capsys.readouterr().out


def test_readme_python_examples_run():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python examples"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
