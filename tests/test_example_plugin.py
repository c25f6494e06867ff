"""The example third-party package (examples/raftkit-shout) is discovered through its entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from raftkit.cli import main
from raftkit.rewards import load_registry

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "raftkit-shout"


def test_shout_is_discovered_and_credited_to_its_package():
    info = load_registry().get("shout")
    assert info.plugin == "raftkit-shout:shout"
    assert info.fn.__module__ == "raftkit_shout"
    assert Path(sys.modules["raftkit_shout"].__file__).is_relative_to(EXAMPLE)  # the editable install
    assert {p: info.params[p].default for p in info.params} == {"mode": "caps", "max_bangs": 3}


def test_raftkit_rewards_lists_shout():
    result = CliRunner().invoke(main, ["rewards", "--json"])
    assert result.exit_code == 0, result.output
    shout = next(r for r in json.loads(result.output)["rewards"] if r["name"] == "shout")
    assert shout["plugin"] == "raftkit-shout:shout" and shout["kind"] == "rule"
    assert shout["params"][0] == {"name": "mode", "type": "caps|bang", "required": False, "default": "caps"}


def test_score_with_the_plugin_through_the_cli():
    rows = '{"prompt": "Hi", "completion": "HELLO!!"}\n{"prompt": "Hi", "completion": "hello"}\n'
    result = CliRunner().invoke(
        main, ["score", "-r", "shout", "-r", "shout:mode=bang*2", "-i", "-", "--json"], input=rows
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [r["shout"] for r in lines] == [1.0, 0.0]
    assert [r["shout:mode=bang"] for r in lines] == [2 / 3, 0.0]
    assert [r["total"] for r in lines] == [1.0 + 4 / 3, 0.0]


def test_the_example_packages_own_tests_pass():
    # The root test run covers the example's own test suite too (testpaths only lists tests/).
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
