"""The examples/ folder: config files, the TRL reward file (CLI and API), and the seed-004 script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import raftkit
from raftkit.api import build_configs, check_options
from raftkit.cli import main
from raftkit.cli.align import command as align_command
from raftkit.config import check_keys, load_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TRL_FILE = EXAMPLES / "trl_reward_file.py"


@pytest.mark.parametrize("algo", ["raft", "raftpp", "reinforce_rej", "grpo"])
def test_each_config_file_is_valid_for_its_algorithm(algo):
    path = EXAMPLES / "configs" / f"{algo}.yaml"
    values = load_file(path)
    check_keys(values, align_command.config_fields(), str(path))
    check_options(values, algo, str(path))  # no other algorithm's settings
    cfg, algo_cfg = build_configs(values, str(path))
    assert cfg.algo == algo and cfg.rewards and type(algo_cfg) is not object
    raftkit.RewardStack.build(cfg.rewards, cfg.filters)  # the rewards resolve


def test_the_trl_reward_file_through_the_cli(tmp_path):
    text = json.dumps({"prompt": "Hi", "completion": "Hello there!"}) + "\n"
    result = CliRunner().invoke(main, ["score", "-r", f"{TRL_FILE}:reward_len", "-i", "-", "--json"],
                                input=text)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reward_len"] == -8.0


def test_the_trl_reward_file_through_the_api_and_as_a_script():
    chat = [{"role": "user", "content": "2 + 2?"}]
    rows = raftkit.score([chat, chat], ["<think>x</think><answer>4</answer>", "4"],
                         rewards=[f"{TRL_FILE}:format_reward_func"])
    assert [r["format_reward_func"] for r in rows] == [1.0, 0.0]
    out = subprocess.run([sys.executable, str(TRL_FILE)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[1.0,", "0.0]", "-8.0"]


@pytest.mark.slow
def test_the_python_api_emoji_script_runs_tiny(tiny_model_path, tmp_path):
    env = {**os.environ, "RAFTKIT_EXAMPLE_MODEL": tiny_model_path,
           "RAFTKIT_EXAMPLE_OUTPUT": str(tmp_path / "run"), "COLUMNS": "200"}
    out = subprocess.run([sys.executable, str(EXAMPLES / "emoji_python_api.py"), "--tiny"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "emoji " in out.stdout and "length " in out.stdout
    assert raftkit.Run(tmp_path / "run").info["status"] == "finished"
    rewards = load_file(tmp_path / "run" / "config.yaml")["rewards"]
    assert rewards[0].endswith("emoji_python_api.py:emoji_count")
