"""A tiny real `raftkit align --algo grpo` through the CLI: the bundled model, 2 iterations, k = 2."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from raftkit.cli import main

pytestmark = pytest.mark.slow


def test_align_grpo_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "align", "--algo", "grpo", "--reward", "emoji", "--reward", "length",
        "--iterations", "2", "--prompts-per-iteration", "2", "--k", "2", "--max-new-tokens", "8",
        "--sampler", "hf", "--heldout", "0", "--output", str(run),
        "--beta", "0.04", "--num-iterations", "2", "--loss-type", "dr_grpo", "--epsilon-high", "0.28",
        # Without the answer gate, which zeroes some positive advantages, and with cut-off samples trained
        # (at 8 new tokens most are cut off): the groups must sum to 0 below.
        "--no-keep-answers", "--no-truncated-neutral",
    ])
    assert result.exit_code == 0, result.output + repr(result.exception)

    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["algorithm"] == "grpo"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1, 2]
    for m in lines:
        for key in ("loss", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "entropy", "advantage/mean",
                    "frac_reward_zero_std", "completions/mean_length", "learning_rate", "reward"):
            assert key in m, key
        assert m["kl"] >= 0 and 0 <= m["frac_reward_zero_std"] <= 1 and m["entropy"] > 0
        assert math.isfinite(m["loss"]) and math.isfinite(m["kl"])

    rollouts = [json.loads(line) for line in (run / "iterations" / "000002" / "rollouts.jsonl").open()]
    assert len(rollouts) == 4  # 2 prompts x k = 2
    for prompt in {r["prompt_index"] for r in rollouts}:
        group = [r["advantage"] for r in rollouts if r["prompt_index"] == prompt]
        assert sum(group) == pytest.approx(0.0, abs=1e-5)  # advantages are relative to the group mean

    config = (run / "config.yaml").read_text()
    assert "loss_type: dr_grpo" in config and "num_iterations: 2" in config
