"""The loop's building blocks: per-iteration metrics, rollout records, checkpoints (incl. a killed swap)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from raftkit import loop
from raftkit.algorithms.raft import RAFT, RaftConfig
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.runs import checkpoint, rundir
from raftkit.runs.metrics import iteration_metrics, mean_std, rollout_records, summary_line


def _rollouts():
    # 2 prompts x 2 samples; the second sample of each prompt came from the hinted proposal
    return [
        Rollout(0, "q0", "a b c", [1, 2, 3], [0.0] * 3),
        Rollout(0, "q0", "a b", [1, 2], [0.0] * 2, hinted=True, sample_prompt="q0 Use emojis."),
        Rollout(1, "q1", "x y z w", [4, 5, 6, 7], [0.0] * 4, finish_reason="length", truncated=True),
        Rollout(1, "q1", "x", [4], [0.0], hinted=True, sample_prompt="q1 Use emojis."),
    ]


def _scores():
    return Scores(
        rewards={"a": [1.0, None, 3.0, 0.0], "b": [0.5, 0.5, 0.5, 0.5]},
        weights={"a": 1.0, "b": 1.0},
        hits={"f": [0, 2, 0, 0]},
        total=[1.5, -1.0, 3.5, 0.5],
        dropped=[False, False, False, True],
    )


def test_iteration_metrics_on_hand_made_scores():
    m = iteration_metrics(_rollouts(), _scores(), selected=[True, False, True, False])
    assert m["n_samples"] == 4 and m["n_prompts"] == 2
    # The reward metrics are over the policy's own samples, 0 and 2 (1 and 3 are hinted). The weighted sum
    # per sample (a + b, None left out): 1.5, 0.5, 3.5, 0.5; the filter-capped total (-1.0) is not used.
    assert m["reward"] == pytest.approx(2.5) and m["reward_std"] == pytest.approx(1.0)
    assert m["rewards/a/mean"] == pytest.approx(2.0) and m["rewards/a/std"] == pytest.approx(1.0)
    assert m["rewards/b/mean"] == pytest.approx(0.5) and m["rewards/b/std"] == 0.0
    # The hinted samples 1 and 3, apart: a is None on sample 1, so a's mean is sample 3's 0.0.
    assert m["explore/reward"] == pytest.approx(0.5) and m["explore/reward_std"] == 0.0
    assert m["explore/rewards/a/mean"] == 0.0 and m["explore/rewards/b/mean"] == pytest.approx(0.5)
    # RAFT's selected samples 0 and 2.
    assert m["selected/reward"] == pytest.approx(2.5) and m["selected/rewards/a/mean"] == pytest.approx(2.0)
    assert not any(k.startswith("reward/") for k in m)  # the old names are gone
    # Completions: over every sample, in tokens as TRL counts them (3, 2, 4, 1).
    assert m["completions/mean_length"] == pytest.approx(2.5)
    assert (m["completions/min_length"], m["completions/max_length"]) == (1.0, 4.0)
    assert m["completions/clipped_ratio"] == 0.25
    assert m["length/chars_mean"] == pytest.approx((5 + 3 + 7 + 1) / 4)
    assert m["length/selected_chars_mean"] == pytest.approx(6.0)
    assert m["filter/f/rate"] == 0.25 and m["filter/f/selected_rate"] == 0.0 and m["filter/any/rate"] == 0.25
    assert m["dropped/rate"] == 0.25 and m["hinted/share"] == 0.5
    # distinct-2 over all completions: bigrams (a b)(b c)(a b)(x y)(y z)(z w) -> 5 unique of 6
    assert m["distinct_2"] == pytest.approx(5 / 6)
    line = summary_line(3, 10, {**m, "loss": 1.25, "time/iteration": 12.0}, ["a", "b"])
    assert line.startswith("it 3/10 | reward 2.500 (sel 2.500) | a 2.000 (sel 2.000) | b 0.500")
    assert "loss 1.250" in line and "f 25%" in line


def test_reward_leaves_out_samples_no_reward_applies_to():
    # As TRL's `reward`: a sample every reward returned None for has no weighted sum and is left out.
    rollouts = [Rollout(0, "q", "x", [1], [0.0]), Rollout(0, "q", "y", [2], [0.0])]
    scores = Scores({"a": [None, 2.0], "b": [None, 1.0]}, {"a": 1.0, "b": -0.5}, {}, [0.0, 1.5],
                    [False, False])
    m = iteration_metrics(rollouts, scores)
    assert m["reward"] == 1.5 and m["reward_std"] == 0.0  # 2.0 - 0.5 * 1.0, sample 0 left out


def test_metrics_without_selection_or_hints():
    rollouts = [Rollout(0, "q", "hello there", [1], [0.0])]
    scores = Scores({"a": [None]}, {"a": 1.0}, {}, [0.0], [False])
    m = iteration_metrics(rollouts, scores)
    assert math.isnan(m["rewards/a/mean"]) and math.isnan(m["reward"])
    assert not any(k.startswith(("selected/", "explore/")) for k in m)
    assert mean_std([2.0, 4.0]) == (3.0, 1.0)


def test_rollout_records():
    batch = Batch(["q0", "q1"], {"lang": ["en", "ja"]}, indices=[17, 4])
    per_sample = [{"selected": i == 2} for i in range(4)]
    recs = rollout_records(5, batch, _rollouts(), _scores(), per_sample)
    assert [(r["prompt_index"], r["row"], r["sample"]) for r in recs] == [
        (0, 17, 0),
        (0, 17, 1),
        (1, 4, 0),
        (1, 4, 1),
    ]
    r = recs[2]
    assert r["iteration"] == 5 and r["completion"] == "x y z w" and r["selected"] is True
    assert r["rewards"] == {"a": 3.0, "b": 0.5} and r["hits"] == {"f": 0} and r["total"] == 3.5
    assert r["truncated"] is True and r["finish_reason"] == "length" and r["n_tokens"] == 4
    assert (
        recs[1]["hinted"] is True
        and recs[1]["sample_prompt"] == "q0 Use emojis."
        and recs[1]["prompt"] == "q0"
    )
    assert recs[3]["dropped"] is True
    json.dumps(recs)  # plain JSON
    unscored = rollout_records(5, batch, _rollouts(), None)
    assert "total" not in unscored[0] and unscored[0]["completion"] == "a b c"


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_path):
    from raftkit.policy import Policy

    return Policy(tiny_model_path, bf16=False)


def test_checkpoint_round_trip_and_a_killed_swap(tiny_policy, tmp_path):
    algo = RAFT(tiny_policy, RaftConfig(), lr=1e-3, total_steps=3, k=2, sampling=None)
    weight = next(tiny_policy.model.parameters())
    original = weight.detach().clone()

    random.seed(1)
    loop.save_checkpoint(tmp_path, tiny_policy, algo, 1)
    expected_draw = random.random()  # what the run would draw next, had it not been stopped
    with torch.no_grad():
        weight.add_(1.0)
    random.seed(99)
    path, marker = rundir.latest_checkpoint(tmp_path)
    assert loop.load_checkpoint(path, marker, tiny_policy, algo) == 1
    assert torch.equal(weight, original)
    assert random.random() == expected_draw
    with pytest.raises(checkpoint.CheckpointError, match="from raft, not grpo"):
        loop.load_checkpoint(path, marker, tiny_policy, type("Other", (), {"name": "grpo"})())

    loop.save_checkpoint(tmp_path, tiny_policy, algo, 2)
    assert not (tmp_path / "checkpoint.tmp").exists() and not (tmp_path / "checkpoint.old").exists()
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["iteration"] == 2
    # A kill inside the swap (after checkpoint -> checkpoint.old, before checkpoint.tmp -> checkpoint):
    # the complete newer folder is still the one found.
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.tmp")
    path, marker = rundir.latest_checkpoint(tmp_path)
    assert path.name == "checkpoint.tmp" and marker["iteration"] == 2
    # A half-written folder (no state.json yet) never counts.
    (path / "state.json").unlink()
    assert rundir.latest_checkpoint(tmp_path) is None


def test_keep_copy_links_the_checkpoint(tiny_policy, tmp_path):
    algo = RAFT(tiny_policy, RaftConfig(), lr=1e-3, total_steps=3, k=2, sampling=None)
    loop.save_checkpoint(tmp_path, tiny_policy, algo, 4)
    loop.keep_copy(tmp_path, 4)
    kept = tmp_path / "checkpoints" / "iter-000004"
    assert json.loads((kept / "state.json").read_text())["iteration"] == 4
    loop.save_checkpoint(tmp_path, tiny_policy, algo, 5)  # replacing the latest leaves the copy intact
    assert (kept / "policy.pt").is_file() and json.loads((kept / "state.json").read_text())["iteration"] == 4


def test_default_run_dir_and_latest_link(tmp_path):
    a = loop.default_run_dir("raft", tmp_path)
    a.mkdir()
    b = loop.default_run_dir("raft", tmp_path)
    assert a != b and a.name.endswith("-raft")
    loop.link_latest(a)
    loop.link_latest(a)  # replacing an existing link works
    assert (tmp_path / "latest").resolve() == a.resolve()


def test_starting_the_sampler_keeps_a_restored_random_state(monkeypatch):
    """Regression: the vLLM engine reseeds Python, NumPy and torch at start, after a resume had restored
    the checkpoint's state, so the resumed run continued from the engine's seed instead."""
    import numpy as np

    def reseeding_sampler(cfg, model_path):
        random.seed(0), np.random.seed(0), torch.manual_seed(0)  # what vLLM's engine start does
        return object()

    monkeypatch.setattr(loop, "make_sampler", reseeding_sampler)
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    state = loop.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loop.set_rng_state(state)
    loop.start_sampler(None, "model")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
