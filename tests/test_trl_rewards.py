"""trl.rewards' own functions and factories, unchanged, through `raftkit score`, raftkit.score,
raftkit.align and `raftkit align --resume`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

import raftkit
from raftkit.cli import main
from raftkit.rewards import RewardError

trl_rewards = pytest.importorskip("trl.rewards")
pytest.importorskip("math_verify")

SHORT, LONG = "<think>1+1</think> The answer is $2$.", "word " * 60


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _overlong(n_tokens: int, limit: int = 16, cache: int = 4) -> float:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), by hand."""
    if n_tokens <= limit - cache:
        return 0.0
    return (limit - cache - n_tokens) / cache if n_tokens <= limit else -1.0


def test_trl_rewards_through_raftkit_score(default_tokenizer):
    rows = [{"prompt": chat("What is 1+1?"), "completion": SHORT, "solution": "$2$"},
            {"prompt": chat("What is 1+1?"), "completion": LONG, "solution": "$2$"}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    result = CliRunner().invoke(main, [
        "score", "-r", "trl.rewards:think_format_reward", "-r", "trl.rewards:accuracy_reward",
        "-r", "trl.rewards:get_soft_overlong_punishment:max_completion_len=16,soft_punish_cache=4",
        "--input", "-", "--json"], input=text)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.splitlines()]
    assert [r["think_format_reward"] for r in out] == [1.0, 0.0]
    assert [r["accuracy_reward"] for r in out] == [1.0, 0.0]
    # completion_ids came from the bundled model's tokenizer, as in training.
    n_short = len(default_tokenizer(SHORT, add_special_tokens=False)["input_ids"])
    assert [r["get_soft_overlong_punishment"] for r in out] == [_overlong(n_short), -1.0]


def test_trl_reward_objects_through_raftkit_score():
    soft, softer = (trl_rewards.get_soft_overlong_punishment(16, 4),
                    trl_rewards.get_soft_overlong_punishment(max_completion_len=64, soft_punish_cache=8))
    rows = raftkit.score([chat("q")] * 2, [SHORT, LONG], [trl_rewards.think_format_reward, soft, softer],
                         columns={"completion_ids": [[1] * 14, [1] * 60]})
    keys = [k for k in rows[0] if "overlong" in k]
    # Two instances, two rewards: TRL's name for them, told apart by their arguments.
    assert keys == ["soft_overlong_punishment_reward:max_completion_len=16,soft_punish_cache=4",
                    "soft_overlong_punishment_reward:max_completion_len=64,soft_punish_cache=8"]
    assert [rows[0][k] for k in keys] == [_overlong(14), 0.0]
    assert [rows[1][k] for k in keys] == [-1.0, (56 - 60) / 8]
    assert rows[0]["think_format_reward"] == 1.0


def test_a_missing_column_says_which_and_how():
    needs = r"needs the keyword argument\(s\) 'solution'.*columns=\{'solution'"
    with pytest.raises(RewardError, match=needs):
        raftkit.score([chat("q")], [SHORT], [trl_rewards.accuracy_reward])
    result = CliRunner().invoke(main, ["score", "-r", "trl.rewards:accuracy_reward", "--input", "-"],
                                input=json.dumps({"prompt": chat("q"), "completion": SHORT}) + "\n")
    assert result.exit_code == 1
    assert "'solution' comes from the dataset column of that name: add a 'solution' column" in result.output


ROWS = [{"prompt": chat("What is 1+1?"), "solution": "$2$"},
        {"prompt": chat("What is 2+2?"), "solution": "$4$"}]
TINY = {"sampler": "hf", "iterations": 1, "prompts_per_iteration": 2, "heldout": 0, "micro_batch_size": 2,
        "epochs_per_iteration": 1, "keep_answers": False}


def _means(metrics: dict, label: str) -> list[str]:
    """The keys of the per-reward means whose label holds ``label`` (``rewards/LABEL/mean``)."""
    return sorted(k for k in metrics if k.split("/")[0] in ("reward", "rewards") and k.endswith("/mean")
                  and label in k)


@pytest.mark.slow
def test_trl_rewards_train_and_resume(tiny_model_path, tmp_path):
    rewards = [trl_rewards.think_format_reward, trl_rewards.accuracy_reward,
               trl_rewards.get_soft_overlong_punishment(max_completion_len=4, soft_punish_cache=2),
               trl_rewards.get_soft_overlong_punishment(max_completion_len=8, soft_punish_cache=2)]
    # TRL's names for k and max_new_tokens, as a GRPOConfig would spell them.
    run = raftkit.align(rewards, model=tiny_model_path, dataset=ROWS, output=tmp_path / "run",
                        num_generations=2, max_completion_length=6, **TINY)
    assert run.info["status"] == "finished"
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert (config["k"], config["max_new_tokens"]) == (2, 6) and "num_generations" not in config
    assert config["rewards"][:2] == ["trl.rewards.format_rewards:think_format_reward",
                                     "trl.rewards.accuracy_rewards:accuracy_reward"]
    assert config["rewards"][2:] == [
        {"name": "trl.rewards.other_rewards:_SoftOverlongPunishment",
         "params": {"max_completion_len": n, "soft_punish_cache": 2}} for n in (4, 8)]
    first = run.metrics[0]
    soft = _means(first, "soft_overlong_punishment_reward:")
    assert len(soft) == 2 and len(_means(first, "think_format_reward")) == 1

    # Another process knows none of these objects: only what config.yaml says.
    done = subprocess.run([sys.executable, "-m", "raftkit", "align", "--resume", str(run.path),
                           "--iterations", "2"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = raftkit.Run(run.path).metrics
    assert [m["iteration"] for m in metrics] == [1, 2]
    assert _means(metrics[1], "soft_overlong_punishment_reward:") == soft
    # 6-token completions: over 4 is -1, and 6 of 8 with a cache of 2 is (8 - 2 - 6) / 2 = 0 or less.
    assert metrics[1][soft[0]] <= metrics[1][soft[1]] <= 0.0


@pytest.mark.slow
def test_the_command_takes_trl_option_names(tiny_model_path, tmp_path):
    run = tmp_path / "cli"
    result = CliRunner().invoke(main, [
        "align", "--model", tiny_model_path, "--sampler", "hf", "--iterations", "1",
        "--prompts-per-iteration", "2", "--heldout", "0", "--micro-batch-size", "2",
        "--epochs-per-iteration", "1", "--no-keep-answers",
        "--num-generations", "2", "--max-completion-length", "6", "--learning-rate", "1e-5",
        "--reward", "trl.rewards:think_format_reward",
        "--reward", "trl.rewards:get_soft_overlong_punishment:max_completion_len=4,soft_punish_cache=2",
        "--reward-weights", "1,0.5", "--output", str(run)])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["k"], config["max_new_tokens"], config["lr"]) == (2, 6, 1e-5)
    assert not {"num_generations", "max_completion_length", "learning_rate", "reward_weights"} & set(config)
    assert config["rewards"] == [
        "trl.rewards:think_format_reward",
        "trl.rewards:get_soft_overlong_punishment:max_completion_len=4,soft_punish_cache=2*0.5"]
