"""`raftkit align` end to end through the CLI on a tiny model: the run directory, resume after a kill
mid-iteration, and a crashing reward. Slow: each run loads a (tiny) model twice and trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from raftkit.cli import main
from raftkit.rewards import hookimpl, plugin_manager, reward
from raftkit.runs.rundir import read_jsonl

pytestmark = pytest.mark.slow

TINY = [
    "--sampler",
    "hf",
    "--prompts-per-iteration",
    "2",
    "--k",
    "2",
    "--max-new-tokens",
    "8",
    "--heldout",
    "2",
    "--eval-samples",
    "1",
    "--micro-batch-size",
    "2",
    "--passes-per-batch",  # RAFT's epochs_per_iteration, by its clear name
    "1",
    "--reward",
    "emoji",
    "--reward",
    "length",
    "--lr",
    "1e-3",
    # A random tiny model never contains an accepted answer, so the answer gate would leave nothing to
    # train on; the gate has its own tests (test_raft.py).
    "--no-keep-answers",
]


def _align(*args: str) -> str:
    # a wide console so rich does not wrap the lines the test looks for
    result = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["align", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _metrics(run: Path) -> list[dict]:
    return list(read_jsonl(run / "metrics.jsonl"))


def test_align_writes_a_complete_run_and_resumes_after_a_kill(tiny_model_path, tmp_path):
    run = tmp_path / "run"
    out = _align(*TINY, "--model", tiny_model_path, "--iterations", "2", "--output", str(run))
    assert "it 2/2" in out and "Held-out evaluation" in out

    # --- the run directory
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["last_iteration"] == 2 and info["algorithm"] == "raft"
    metrics = _metrics(run)
    assert [m["iteration"] for m in metrics] == [1, 2]
    for key in (
        "rewards/emoji/mean",
        "selected/rewards/length/mean",
        "reward_std",
        "distinct_2",
        "filter/stray_hash/rate",
        "hinted/share",
        "loss",
        "time/sample",
        "time/sync",
        "n_selected",
    ):
        assert key in metrics[0], key
    # a process that imported torch holds well over 0.1 GiB; a peak never shrinks; KiB read as bytes or
    # the reverse would be off by 1024x
    assert 0.1 < metrics[0]["memory/peak_rss_gib"] <= metrics[1]["memory/peak_rss_gib"] < 64
    rollouts = list(read_jsonl(run / "iterations" / "000001" / "rollouts.jsonl"))
    assert len(rollouts) == 4  # 2 prompts x k=2
    assert sum(r["hinted"] for r in rollouts) == 2  # explore share 0.5 with the auto hint
    selected = list(read_jsonl(run / "iterations" / "000001" / "selected.jsonl"))
    assert len(selected) == sum(r["selected"] for r in rollouts) == metrics[0]["n_selected"]
    assert {r["prompt_index"] for r in selected} <= {0, 1}
    evals = json.loads((run / "eval.json").read_text())
    assert set(evals) == {"before", "after", "delta", "alarm"} and set(evals["before"]["rewards"]) == {
        "emoji",
        "length",
    }
    # The task is measured beside the rewards, with every built-in filter.
    assert {"accuracy", "degenerate", "positive"} <= set(evals["after"])
    assert evals["after"]["answered_samples"] == evals["after"]["samples"]  # the bundled answers
    assert isinstance(evals["alarm"], list)
    assert evals["before"]["prompts"] == 2 and len(evals["after"]["examples"]) == 2

    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(run / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert not torch.equal(
        trained.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight
    )

    # --- the config round trip: the saved file is a valid --config, and holds what was asked
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["k"] == 2 and saved["rewards"] == ["emoji", "length"] and saved["ranking"] == "local"
    # config.yaml records field names, the keys runs saved before the clear names have: the resumes
    # below read such a file
    assert saved["epochs_per_iteration"] == 1 and "passes_per_batch" not in saved

    # --- a kill mid-iteration 3: a partial iteration folder, a half-written metrics line, status running
    before = [m["time"] for m in metrics]
    partial = run / "iterations" / "000003"
    partial.mkdir()
    (partial / "rollouts.jsonl").write_text('{"iteration": 3, "completion": "half')
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 3, "reward/emoji/mean": 0.')
    info.update(status="running")
    (run / "run.json").write_text(json.dumps(info))

    out = _align("--resume", str(run), "--iterations", "3")
    assert "resuming" in out and "after iteration 2" in out and "it 3/3" in out
    metrics = _metrics(run)
    assert [m["iteration"] for m in metrics] == [1, 2, 3]
    assert [m["time"] for m in metrics[:2]] == before  # the completed iterations were not redone
    assert len(list(read_jsonl(partial / "rollouts.jsonl"))) == 4
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["last_iteration"] == 3 and info["iterations_planned"] == 3
    assert json.loads((run / "checkpoint" / "state.json").read_text())["iteration"] == 3
    assert yaml.safe_load((run / "config.yaml").read_text())["iterations"] == 3

    # --- a kill after iteration 3's checkpoint but before its metrics line: nothing is redone or lost
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:2]))
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))  # as the kill leaves it
    _align("--resume", str(run))
    assert [m["iteration"] for m in _metrics(run)] == [1, 2, 3]


@reward(name="boom")
def boom(completions, **kwargs):
    """A reward that breaks on every batch."""
    raise ValueError("boom: cannot score this")


class _BoomPlugin:
    @hookimpl
    def register_rewards(self, register):
        register(boom)


def test_a_crashing_reward_marks_the_run_and_stays_resumable(tiny_model_path, tmp_path):
    run = tmp_path / "run"
    pm = plugin_manager()
    pm.register(_BoomPlugin(), name="test-boom")
    try:
        args = [a for a in TINY if a not in ("emoji", "length", "--reward")]
        result = CliRunner(env={"COLUMNS": "250"}).invoke(
            main,
            [
                "align",
                *args,
                "--heldout",
                "0",
                "--reward",
                "boom",
                "--model",
                tiny_model_path,
                "--iterations",
                "2",
                "--output",
                str(run),
            ],
        )
    finally:
        pm.unregister(name="test-boom")
    assert result.exit_code == 1
    assert "iteration 1" in result.output and "boom" in result.output and "Traceback" not in result.output
    assert f"raftkit align --resume {run}" in result.output
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "crashed" and "reward 'boom' raised ValueError" in info["error"]
    dumped = list(read_jsonl(run / "crash" / "iteration-000001-rollouts.jsonl"))
    assert len(dumped) == 4 and "completion" in dumped[0] and "total" not in dumped[0]

    # fixed reward, same run: resume starts from scratch (no checkpoint yet) and finishes
    _align("--resume", str(run), "--reward", "length")
    assert [m["iteration"] for m in _metrics(run)] == [1, 2]
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_unknown_reward_fails_fast_with_a_suggestion(tmp_path):
    result = CliRunner().invoke(main, ["align", "--reward", "emojj", "--output", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Did you mean 'emoji'" in result.output
    result = CliRunner().invoke(main, ["align", "--output", str(tmp_path / "r2")])
    assert result.exit_code == 1 and "no reward given" in result.output
