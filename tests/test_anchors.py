"""RAFT's anchors: where no sample can be selected, the clean unhinted sample closest to the start."""

from __future__ import annotations

import copy
import doctest

import pytest

from raftkit.algorithms import anchors, sft
from raftkit.algorithms.raft import RAFT, RaftConfig
from raftkit.config import ConfigError
from raftkit.rewards import RewardStack
from raftkit.rollouts import Batch, Rollout


def _rollouts(spec):
    """(prompt index, hinted) per sample."""
    return [Rollout(g, f"q{g}", "a", [1], [0.0], hinted=bool(h)) for g, h in spec]


def test_the_doctests_hold():
    assert doctest.testmod(anchors).failed == 0


def test_candidates_skip_served_prompts_hinted_and_blocked_samples():
    rs = _rollouts([(0, 0), (0, 1), (1, 0), (1, 1), (1, 0), (2, 0), (2, 0), (3, 1)])
    blocked = [False, False, False, False, True, True, True, False]
    # prompt 0 had something to select; prompt 2's plain samples are both blocked; prompt 3 has only a
    # hinted sample: only prompt 1 can anchor, with its clean plain sample 2 (4 is blocked, 3 hinted).
    assert anchors.candidates(rs, blocked, served={0}, limit=10) == {1: [2]}


def test_candidates_keep_at_most_limit_prompts_in_batch_order():
    rs = _rollouts([(3, 0), (1, 0), (1, 0), (2, 0)])
    assert anchors.candidates(rs, [False] * 4, served=set(), limit=2) == {3: [0], 1: [1, 2]}
    assert anchors.candidates(rs, [False] * 4, served=set(), limit=0) == {}
    with pytest.raises(ValueError, match="one entry per sample"):
        anchors.candidates(rs, [False], served=set(), limit=1)


def test_limit_rounds_up_the_share_of_the_selected():
    assert [anchors.limit(n, 0.5) for n in (0, 1, 2, 3, 12)] == [0, 1, 1, 2, 6]
    assert anchors.limit(7, 1.0) == 7 and anchors.limit(7, 0.0) == 0


def test_pick_takes_the_smallest_log_ratio_per_prompt():
    found = {0: [0, 1, 2], 5: [8, 9]}
    assert anchors.pick(found, {0: 1.0, 1: -2.0, 2: 0.5, 8: 3.0, 9: 3.0}) == [1, 8]  # a tie: the earlier


def test_anchor_share_is_checked():
    with pytest.raises(ConfigError, match="anchor-share"):
        RaftConfig(anchor_share=1.5)


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_path):
    from raftkit.policy import Policy

    return Policy(tiny_model_path, bf16=False)


def test_raft_update_trains_on_the_selected_and_the_most_reference_like_anchor(tiny_policy):
    """Prompt 0 has an answering sample: it is selected. Prompt 1's samples all miss its answer: nothing is
    selected there, and of its two clean plain samples the one the policy has NOT drifted toward anchors
    (the policy was trained on the other). Its hinted sample never anchors; with anchor_share 0, none."""
    tok = tiny_policy.tokenizer
    batch = Batch(["capital of France?", "capital of Peru?"], {"answers": [["Paris"], ["Lima"]]}, [0, 1])
    spec = [(0, "Paris.", False), (0, "Rome.", False), (1, "Cusco.", False), (1, "Quito!", False),
            (1, "Bogota", True)]
    rollouts = [
        Rollout(prompt_index=g, prompt=batch.prompts[g], completion=t, logprobs=[0.0], finish_reason="length",
                completion_ids=tok(t, add_special_tokens=False).input_ids, hinted=h)
        for g, t, h in spec
    ]
    scores = RewardStack.build(["length"], []).score_rollouts(rollouts, batch)
    policy = copy.deepcopy(tiny_policy)  # drifted toward "Cusco.": the reference-like one is "Quito!"
    drift = sft.make_example(tok, batch.prompts[1], rollouts[2].completion_ids, "length")
    sft.train(policy, [drift], lr=1e-2, epochs=5, micro_batch_size=1)

    def update(share):
        algo = RAFT(policy, RaftConfig(rank_beta=0.0, anchor_share=share), lr=0.0, total_steps=1, k=3,
                    sampling=None)
        algo._reference = tiny_policy.model
        algo.moved = True  # the policy drifted before this step, so its log-ratios are not all 0
        return algo.update(batch, rollouts, scores, iteration=1)  # lr 0: selects and reports only

    step = update(0.5)
    assert [s["selected"] for s in step.per_sample] == [True, False, False, False, False]
    assert [s.get("anchor", False) for s in step.per_sample] == [False, False, False, True, False]
    assert [(s["index"], s["anchor"]) for s in step.selected] == [(0, False), (3, True)]
    assert step.metrics["n_selected"] == 1 and step.metrics["n_anchors"] == 1
    none = update(0.0)
    assert none.metrics["n_anchors"] == 0 and [s["index"] for s in none.selected] == [0]
