"""The Python API: raftkit.align / score / eval_model, and the config builder the CLI shares."""

from __future__ import annotations

import pytest
import yaml

import raftkit
from raftkit.api import Run, build_configs
from raftkit.config import ConfigError


def brevity(completions, **kwargs):
    """A plain TRL reward function: shorter is better."""
    return [-float(len(c if isinstance(c, str) else c[0]["content"])) for c in completions]


def closeness(completions, *, target: int = 3, **kwargs):
    return [1.0 / (1 + abs(len(raftkit.completion_text(c)) - target)) for c in completions]


TINY = {"sampler": "hf", "iterations": 1, "prompts_per_iteration": 2, "k": 2, "max_new_tokens": 4,
        "heldout": 0, "micro_batch_size": 2, "epochs_per_iteration": 1,
        # a random tiny model never says an accepted answer: the answer gate would keep nothing
        "keep_answers": False}


@pytest.mark.slow
def test_align_with_a_plain_function_and_a_dataset_object(tiny_model_path, tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_list([{"prompt": f"Say {w}.", "topic": w} for w in ("hi", "yes", "no")])
    run = raftkit.align([brevity, "length:target=5*0.5"], model=tiny_model_path, dataset=rows,
                        output=tmp_path / "run", filters=["stray_hash"], **TINY)
    assert isinstance(run, Run) and run.path == tmp_path / "run"
    assert run.info["status"] == "finished"
    [metrics] = run.metrics
    assert metrics["iteration"] == 1 and "rewards/brevity/mean" in metrics, metrics
    assert run.eval == {}  # heldout 0: no evaluation
    assert run.model_path == tmp_path / "run" / "model"
    # The function is recorded as a spec another process can load; the dataset moved into the run.
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert config["rewards"][0].endswith("test_api.py:brevity")
    assert config["dataset"] == str((run.path / "dataset.jsonl").resolve())
    assert (run.path / "dataset.jsonl").read_text().count("\n") == 3


@pytest.mark.slow
def test_align_resume_extends_a_run_from_its_saved_settings(tiny_model_path, tmp_path):
    from raftkit.runs.rundir import RunDirError

    rows = [{"prompt": "Say hi."}, {"prompt": "No."}]
    first = raftkit.align([brevity], model=tiny_model_path, dataset=rows, output=tmp_path / "run", **TINY)
    assert [m["iteration"] for m in first.metrics] == [1]
    # Only the new setting is given: rewards, model, dataset and the rest come from RUN/config.yaml.
    again = raftkit.align(resume=first, iterations=2)
    assert again.path == first.path and again.info["status"] == "finished"
    assert [m["iteration"] for m in again.metrics] == [1, 2]
    assert "rewards/brevity/mean" in again.metrics[1]
    assert yaml.safe_load((first.path / "config.yaml").read_text())["iterations"] == 2
    with pytest.raises(RunDirError):
        raftkit.align(resume=tmp_path / "no-such-run")


def test_score_takes_functions_and_specs():
    rows = raftkit.score(["p", [{"role": "user", "content": "q"}]], ["abc", "abcdefg"],
                         rewards=[closeness, "length:target=3"], filters=["stray_hash"])
    assert [r["closeness"] for r in rows] == [1.0, 0.2]
    assert rows[1]["completion"] == "abcdefg"  # as given, though the reward saw an assistant message
    assert set(rows[0]) >= {"prompt", "completion", "length", "stray_hash", "total", "dropped"}
    assert raftkit.score(None, ["ab"], closeness)[0]["total"] == 0.5
    with pytest.raises(ValueError, match="1 prompts for 2 completions"):
        raftkit.score(["p"], ["a", "b"], closeness)


def test_settings_are_checked_like_the_cli(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown option 'iteration'\. Did you mean 'iterations'"):
        raftkit.align([brevity], iteration=3, output=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"'beta' is a .*grpo.* setting; raft does not use it"):
        raftkit.align([brevity], beta=0.1, output=tmp_path / "r")
    with pytest.raises(ConfigError, match="--k must be at least 1"):
        raftkit.align([brevity], k=0, output=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    cfg, algo_cfg = build_configs({"algo": "grpo", "k": 4, "beta": 0.1})
    assert (cfg.k, algo_cfg.beta) == (4, 0.1)


def test_eval_model_refuses_unknown_settings():
    with pytest.raises(TypeError, match="unknown setting"):
        raftkit.eval_model("default", sample=3)
    assert raftkit.eval is raftkit.eval_model


def test_trl_setting_names_are_accepted_and_checked(tmp_path):
    # num_generations is raftkit's k: its check (k >= 1) fires, before any run directory exists.
    with pytest.raises(ConfigError, match="--k must be at least 1"):
        raftkit.align([brevity], num_generations=0, output=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"raftkit\.align: TRL's 'top_k' = 50 is not supported"):
        raftkit.align([brevity], top_k=50, output=tmp_path / "r")
    with pytest.raises(ConfigError, match="'learning_rate' is TRL's name for 'lr', and 'lr' is given too"):
        raftkit.align([brevity], learning_rate=1e-5, lr=1e-5, output=tmp_path / "r")
    with pytest.warns(UserWarning, match="'logging_steps' is ignored"), \
            pytest.raises(ConfigError, match="reward_weights' has 2 weight\\(s\\) for 1 reward"):
        raftkit.align([brevity], logging_steps=5, reward_weights=[1, 2], output=tmp_path / "r")
    assert not (tmp_path / "r").exists()
