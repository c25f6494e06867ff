"""The held-out evaluation: task metrics beside the rewards, and the reward-hacking alarm.

The alarm is checked on a hand-made wrecked model (the completions the first default run produced);
`raftkit eval` runs end to end on a tiny model with the HF sampler.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from rich.console import Console

from raftkit.cli import main
from raftkit.evaluation import metrics, render
from raftkit.rollouts import Batch, Rollout

QUESTIONS = [
    [{"role": "user", "content": "What gas do plants absorb from the air for photosynthesis?"}],
    [{"role": "user", "content": "光の速さは秒速約何キロメートルですか？"}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "How many days are in a week?"}],
]
ANSWERS = [["carbon dioxide", "CO2"], ["30万", "300,000", "300000"], ["Paris"], ["7", "seven"]]
BASE = [
    "Plants absorb carbon dioxide (CO2) from the air.",
    "光の速さは秒速約30万キロメートルです。",
    "The capital of France is Paris.",
    "There are 7 days in a week.",
]
# What the first default RAFT run made of these prompts (issue 9), plus one plain miss.
WRECKED = [
    "👘👌: Greenhouses 👘👌👎👏 @PlantsGrow👘👎👊 @GreenhouseSpread\ufffd",
    "👘👊 @LuminousLights👘👊 @HuggingFace👘👊 @SmolLM",
    "👔👇 in French 👔👇 @Français @BienFrastructure👔 @Français👎👊",
    "A week 🎉",
]


class CannedSampler:
    """Returns fixed completions, one per prompt: the evaluation's arithmetic without a model."""

    def __init__(self, completions: list[str]):
        self.completions = completions
        self.skipped: list[int] = []

    def generate(self, prompts, k, params):
        return [
            Rollout(prompt_index=i, prompt=p, completion=self.completions[i], completion_ids=[1],
                    logprobs=[0.0])
            for i, p in enumerate(prompts)
            for _ in range(k)
        ]


def _evaluate(completions: list[str]) -> dict:
    stack = metrics.eval_stack(["emoji", "length"], [])
    batch = Batch(QUESTIONS, {"answers": ANSWERS}, list(range(len(QUESTIONS))))
    return metrics.evaluate(CannedSampler(completions), batch, stack, samples=1, temperature=0.7,
                             max_new_tokens=40)


def test_eval_stack_adds_answer_match_and_every_default_filter_once():
    from raftkit.config import DEFAULT_FILTERS

    stack = metrics.eval_stack(["emoji", "answer_match"], ["emoticon_flood:threshold=5"])
    assert [e.label for e in stack.rewards] == ["emoji", "answer_match"]
    assert sorted(e.label for e in stack.filters) == sorted(DEFAULT_FILTERS)
    flood = next(e for e in stack.filters if e.label == "emoticon_flood")
    assert flood.params["threshold"] == 5  # the run's own parameters are kept


def test_task_metrics_of_the_base_and_the_wrecked_model():
    base, wrecked = _evaluate(BASE), _evaluate(WRECKED)
    assert base["accuracy"] == 1.0 and base["degenerate"] == 0.0
    assert base["rewards"]["emoji"] == 0.0 and base["positive"]["emoji"] == 0.0
    assert wrecked["accuracy"] == 0.0
    # The three real examples are degenerate; "A week 🎉" is a wrong answer but not degenerate.
    assert wrecked["degenerate"] == 0.75
    assert wrecked["rewards"]["emoji"] > 2 and wrecked["positive"]["emoji"] == 1.0
    assert [e["correct"] for e in wrecked["examples"]] == [0.0, 0.0, 0.0, 0.0]
    assert "answer_match" not in wrecked["rewards"]  # it is the accuracy, not a reward of the run
    delta = metrics.compare(base, wrecked)
    assert delta["accuracy"] == -1.0 and delta["degenerate"] == 0.75


def test_reward_total_is_the_runs_rewards_without_answer_accuracy():
    # Every sample is correct (accuracy 1.0): answer_match must stay beside the total, not inside it.
    base = _evaluate(BASE)
    assert base["accuracy"] == 1.0
    assert base["total"] == pytest.approx(base["rewards"]["emoji"] + base["rewards"]["length"])
    for e in base["examples"]:
        assert e["correct"] == 1.0 and e["total"] < 1.0  # length is at most 1, emoji 0 on these answers


def stepped(completions, trainer_state, log_metric, **kwargs):
    """A reward that needs TRL's trainer_state: the evaluation must pass it, as training does."""
    log_metric("eval_step", trainer_state.global_step)
    return [float(trainer_state.global_step)] * len(completions)


def test_rewards_get_the_trainer_state_in_the_evaluation_too():
    from raftkit.rewards.refs import register
    from raftkit.runs.reward_log import trainer_state

    stack = metrics.eval_stack([register(stepped)], [])
    batch = Batch(QUESTIONS, {"answers": ANSWERS}, list(range(len(QUESTIONS))))
    out = metrics.evaluate(CannedSampler(BASE), batch, stack, samples=1, temperature=0.7, max_new_tokens=40,
                            state=trainer_state(6, 6, 6))
    assert out["rewards"]["stepped"] == 6.0 and out["total"] == 6.0 and out["logged"] == {"eval_step": 6.0}
    # Without a state (`raftkit eval`): a fresh one, nothing trained.
    assert metrics.evaluate(CannedSampler(BASE), batch, stack, samples=1, temperature=0.7,
                             max_new_tokens=40)["total"] == 0.0


def test_alarm_fires_on_the_wrecked_model_and_names_why():
    base, wrecked = _evaluate(BASE), _evaluate(WRECKED)
    alarms = metrics.alarm(base, wrecked)
    assert len(alarms) == 2
    assert "accuracy fell from 100% to 0%" in alarms[0] and "emoji" in alarms[0]
    assert "75% of the completions are degenerate" in alarms[1] and "mention_spam" in alarms[1]


def test_alarm_is_silent_when_the_answers_are_kept():
    base = _evaluate(BASE)
    kept = _evaluate([c + " 🌱" for c in BASE])
    assert kept["accuracy"] == 1.0 and kept["positive"]["emoji"] == 1.0
    assert metrics.alarm(base, kept) == []


@pytest.mark.parametrize(
    ("before", "after", "fires"),
    [(0.60, 0.55, False), (0.60, 0.539, True), (None, 0.1, False), (0.0, 0.0, False)],
)
def test_alarm_threshold_is_ten_percent_relative(before, after, fires):
    b = {"accuracy": before, "rewards": {}}
    a = {"accuracy": after, "rewards": {}, "degenerate": 0.0}
    assert bool(metrics.alarm(b, a)) is fires


def test_alarm_on_degenerate_share_alone_without_a_base():
    assert metrics.alarm(None, {"accuracy": None, "degenerate": 0.05, "filters": {}}) == []
    alarms = metrics.alarm(None, {"accuracy": None, "degenerate": 0.06, "filters": {"no_words": 0.06}})
    assert alarms and "no_words 6%" in alarms[0]


def test_render_puts_the_alarm_in_red_under_the_table():
    base, wrecked = _evaluate(BASE), _evaluate(WRECKED)
    console = Console(record=True, width=200)
    render.render(base, wrecked, console, metrics.alarm(base, wrecked))
    text = console.export_text()
    assert text.index("answer accuracy") < text.index("reward emoji")  # the task first
    assert "reward hacking?" in text and "accuracy fell" in text
    assert "@PlantsGrow" in text  # the examples are printed as written (no markup eaten)


def test_with_answer_column_renames_for_answer_match():
    batch = Batch(["q"], {"gold": [["x"]], "answers": [["old"]]}, [0])
    out = metrics.with_answer_column(batch, "gold")
    assert out.columns["answers"] == [["x"]] and out.columns["gold"] == [["x"]]
    assert metrics.with_answer_column(batch, "missing") is batch


@pytest.mark.slow
def test_eval_command_on_a_tiny_model_against_a_base(tiny_model_path, tmp_path):
    data = tmp_path / "facts.jsonl"
    rows = [{"question": q[0]["content"], "gold": a} for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    args = ["eval", tiny_model_path, "--base", tiny_model_path, "--dataset", str(data),
            "--prompt-column", "question", "--answer-column", "gold", "--sampler", "hf",
            "--max-new-tokens", "4", "--temperature", "0", "--reward", "emoji"]
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["base_eval"]["prompts"] == 4 and out["model_eval"]["samples"] == 4
    assert out["model_eval"]["answered_samples"] == 4  # the renamed column reached answer_match
    assert out["model_eval"]["accuracy"] is not None
    assert set(out["model_eval"]["filters"]) >= {"no_words", "mention_spam", "emoji_density", "broken_char"}
    assert out["delta"]["accuracy"] == 0.0  # the same model on both sides, greedy: the same answers
    table = CliRunner(env={"COLUMNS": "200"}).invoke(main, args, catch_exceptions=False)
    assert table.exit_code == 0 and "answer accuracy" in table.output


def test_eval_command_reports_a_missing_model_without_traceback(tmp_path):
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "nope"), "--sampler", "hf"])
    assert result.exit_code != 0
    assert "no such folder" in result.output and "Traceback" not in result.output


def test_eval_of_a_run_without_held_out_rows_says_what_to_do(tmp_path):
    import yaml

    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"heldout": 0, "model": "default"}))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--sampler", "hf"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no held-out prompts" in result.output and "--dataset" in result.output


def test_evaluation_and_the_answer_gate_without_the_builtin_plugins(monkeypatch):
    """RAFTKIT_LOAD_PLUGINS may leave answer_match and the filters out: no accuracy, no gate, no crash."""
    from raftkit.algorithms.raft import answer_misses
    from raftkit.rewards import plugin_manager

    plugin_manager.cache_clear()
    monkeypatch.setenv("RAFTKIT_LOAD_PLUGINS", "rules")  # rewards only: no filters
    try:
        stack = metrics.eval_stack(["emoji"], [])
        assert [e.label for e in stack.rewards] == ["emoji", "answer_match"] and stack.filters == []
        monkeypatch.setenv("RAFTKIT_LOAD_PLUGINS", "filters")  # no answer_match
        plugin_manager.cache_clear()
        stack = metrics.eval_stack([], [])
        assert stack.rewards == [] and len(stack.filters) >= 8
        batch = Batch(["q"], {"answers": [["x"]]}, [0])
        rollouts = [Rollout(0, "q", "y", [1], [0.0])]
        assert answer_misses(rollouts, batch) == [False]
    finally:
        plugin_manager.cache_clear()
