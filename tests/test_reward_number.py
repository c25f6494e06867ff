"""One reward number everywhere, TRL's metric names (older runs still read), and TRL's logging kwargs.

``reward`` is defined once (raftkit.runs.metrics.reward_metrics): the mean over the policy's own samples of
the weighted sum of the rewards. A tiny real run reads it back from the terminal, metrics.jsonl, a
TensorBoard event file, the report's embedded data and ``raftkit inspect --json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from raftkit import loop
from raftkit.algorithms.base import StepResult
from raftkit.cli import main
from raftkit.rewards import RewardError, RewardStack, completion_text
from raftkit.rewards.refs import register
from raftkit.runs import report
from raftkit.runs.metric_names import canonical, parse_reward_key, reward_key
from raftkit.runs.reward_log import RewardLog, trainer_state
from raftkit.runs.rundir import RunWriter


def logging_reward(completions, trainer_state, log_metric, log_extra, **kwargs):
    """A reward as TRL 1.16 calls it: it reads the trainer's state and logs a metric and a column."""
    chars = [len(completion_text(c)) for c in completions]
    log_metric("seen/global_step", trainer_state.global_step)
    log_metric("seen/max_steps", trainer_state.max_steps)
    log_metric("seen/chars", sum(chars) / len(chars))
    log_extra("chars", chars)
    log_extra("step", [trainer_state.global_step] * len(chars))
    return [float(n % 5) for n in chars]


def short_log(completions, log_extra, **kwargs):
    log_extra("oops", [1])  # one value for a whole batch
    return [0.0] * len(completions)


def test_reward_kwargs_reach_a_reward_and_what_it_logs_is_kept():
    stack = RewardStack.build([register(logging_reward), "length:target=3"])
    log = RewardLog(2)
    scores = stack.score(["p", "q"], ["abc", "abcdefg"], context=log.context(trainer_state(4, 10, 5)))
    assert scores.rewards["logging_reward"] == [3.0, 2.0]
    assert scores.rewards["length"][0] == 1.0  # a reward without the kwargs gets them through **kwargs
    assert log.metrics() == {"seen/global_step": 4.0, "seen/max_steps": 10.0, "seen/chars": 5.0}
    assert log.per_sample() == [{"extra": {"chars": 3, "step": 4}}, {"extra": {"chars": 7, "step": 4}}]
    # Without a context (`raftkit score`) a reward that does not ask for them is unaffected.
    assert RewardStack.build(["length:target=3"]).score(["p"], ["abc"]).rewards["length"] == [1.0]


def test_log_extra_with_the_wrong_count_names_the_reward():
    stack = RewardStack.build([register(short_log)])
    said = r"reward 'short_log' raised ValueError: log_extra\('oops', \.\.\.\): expected a list of 2 values"
    with pytest.raises(RewardError, match=said):
        stack.score(["p", "q"], ["a", "b"], context=RewardLog(2).context(trainer_state(0, 1, 1)))
    with pytest.raises(ValueError, match="finite number"):
        RewardLog(1).log_metric("x", float("nan"))


def test_logged_metrics_never_replace_the_algorithms():
    log = RewardLog(2)
    log.log_metric("loss", 5.0)
    log.log_metric("mine", 1.0)
    log.log_metric("mine", 2.0)  # several values in one iteration: averaged, as TRL does
    log.log_extra("tag", ["a", "b"])
    result = StepResult(metrics={"loss": 0.5})
    assert loop._add_reward_log(result, log) == {"mine"}
    assert result.metrics == {"loss": 0.5, "mine": 1.5}
    assert result.per_sample == [{"extra": {"tag": "a"}}, {"extra": {"tag": "b"}}]


def test_reward_keys_round_trip():
    for name in ("total", "emoji", "length:target=10", "a/b"):
        for stat in ("mean", "std", "selected_mean", "explore_mean", "explore_std"):
            assert parse_reward_key(reward_key(name, stat)) == (name, stat)
    assert parse_reward_key("completions/mean_length") is None and parse_reward_key("rewards") is None


OLD = {"iteration": 1, "reward/emoji/mean": 0.2, "reward/emoji/policy_mean": 0.25, "reward/emoji/std": 0.1,
       "reward/emoji/selected_mean": 0.9, "reward/total/mean": 0.3, "reward/total/policy_mean": 0.35,
       "reward/total/std": 0.2, "reward/total/selected_mean": 1.1, "truncated/rate": 0.5, "lr": 1e-5,
       "clip_frac_low": 0.01, "clip_frac_high": 0.02, "clip_frac": 0.03, "zero_adv_groups": 0.25,
       "length/tokens_mean": 12.0, "kl": 0.004}
NEW = {"iteration": 1, "rewards/emoji/mean": 0.25, "rewards/emoji/std": 0.1,
       "selected/rewards/emoji/mean": 0.9, "reward": 0.35, "reward_std": 0.2, "selected/reward": 1.1,
       "completions/clipped_ratio": 0.5,
       "learning_rate": 1e-5, "clip_ratio/low_mean": 0.01, "clip_ratio/high_mean": 0.02,
       "clip_ratio/region_mean": 0.03, "frac_reward_zero_std": 0.25, "completions/mean_length": 12.0,
       "kl": 0.004}


def test_an_older_run_reads_under_the_current_names(tmp_path):
    # The policy's own samples (policy_mean) were the honest number of a run with hints: they become `reward`.
    assert canonical(OLD) == NEW
    assert canonical(NEW) == NEW  # current names pass through untouched
    root = tmp_path / "old"
    w = RunWriter.create(root, {"algo": "raft", "rewards": ["emoji"], "iterations": 2}, "raft")
    w.write_iteration(1, [{"prompt": "p", "completion": "c", "rewards": {"emoji": 0.25}, "total": 0.35}])
    w.commit_iteration(1, dict(OLD))
    w.finish()
    result = CliRunner().invoke(main, ["inspect", str(root), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rewards"] == ["emoji"] and untimed(data["iterations"]) == [NEW]
    table = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["inspect", str(root)]).stdout
    assert "0.350/1.100" in table and "0.250/0.900" in table  # reward/selected, emoji/selected
    page = report.build_report([root])
    assert 'data-key="reward"' in page and untimed(embedded(page)["runs"][0]["metrics"]) == [NEW]
    import raftkit

    assert untimed(raftkit.Run(root).metrics) == [NEW]
    # --resume rebuilds metrics.jsonl from the kept metrics.json files: under the current names.
    RunWriter.resume(root, 1)
    assert untimed(json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()) == [NEW]


def untimed(records) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "time"} for m in records]


def embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


@pytest.mark.slow
def test_one_reward_number_in_five_places(tiny_model_path, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = ["align", "--model", tiny_model_path, "--sampler", "hf", "--iterations", "2",
            "--prompts-per-iteration", "2", "--k", "2", "--max-new-tokens", "8", "--heldout", "0",
            "--micro-batch-size", "2", "--epochs-per-iteration", "1", "--no-keep-answers",
            "--reward", f"{Path(__file__).resolve()}:logging_reward", "--reward", "length:target=20*0.5",
            "--explore-hint", " Answer in one word.", "--report-to", "tensorboard", "--output", str(run)]
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    # 1. metrics.jsonl, checked against the rollouts it summarises: the weighted sum of the rewards over the
    # samples drawn from the plain prompt; the hinted ones are apart, under explore/.
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [1, 2]
    weights = {"logging_reward": 1.0, "length": 0.5}
    for m in lines:
        records = [json.loads(line) for line in
                   (run / "iterations" / f"{m['iteration']:06d}" / "rollouts.jsonl").read_text().splitlines()]
        assert any(r["hinted"] for r in records) and not all(r["hinted"] for r in records)
        own = [sum(weights[k] * v for k, v in r["rewards"].items()) for r in records if not r["hinted"]]
        hinted = [sum(weights[k] * v for k, v in r["rewards"].items()) for r in records if r["hinted"]]
        assert m["reward"] == pytest.approx(sum(own) / len(own))
        assert m["explore/reward"] == pytest.approx(sum(hinted) / len(hinted))
        # What the reward logged: its metrics in the line, its columns in every rollout record.
        step = m["iteration"] - 1  # trainer_state.global_step: the updates done before this scoring
        assert m["seen/global_step"] == step and m["seen/max_steps"] == 2
        assert all(r["extra"] == {"chars": len(r["completion"]), "step": step} for r in records)
        assert not any(k.startswith("reward/") for k in m)

    # 2. The terminal's line per iteration.
    shown = {int(it): float(v) for it, v in re.findall(r"it (\d)/2 \| reward (-?\d+\.\d{3})", result.output)}
    # 3. The TensorBoard event file.
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    board = {e.step: e.value for e in events.Scalars("reward")}
    assert [e.value for e in events.Scalars("seen/global_step")] == [0.0, 1.0]
    # 4. The report's embedded data (and its chart of what the reward logged).
    page = report.build_report([run])
    reported = {m["iteration"]: m["reward"] for m in embedded(page)["runs"][0]["metrics"]}
    assert 'data-key="seen/chars"' in page
    # 5. raftkit inspect.
    inspected = json.loads(CliRunner().invoke(main, ["inspect", str(run), "--json"]).stdout)
    viewed = {m["iteration"]: m["reward"] for m in inspected["iterations"]}

    for m in lines:
        it, value = m["iteration"], m["reward"]
        assert shown[it] == pytest.approx(value, abs=5e-4)  # printed with three decimals
        assert board[it] == pytest.approx(value, rel=1e-6)  # stored as float32
        assert reported[it] == value and viewed[it] == value
