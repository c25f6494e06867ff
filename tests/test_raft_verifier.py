"""RAFT on a 0/1 verifier: it never imitates a sample that earned nothing, never anchors one, never selects a
sample no reward scored, and computes log π/π_ref only where the KL penalty can change its choice.

The batch used throughout, worked by hand (k = 4, three prompts):
    prompt 0: 0 0 0 0   every sample wrong: nothing to imitate
    prompt 1: 1 0 1 0   two right ones tie: the KL penalty breaks the tie
    prompt 2: 0 0 0 1   one right one: chosen whatever the penalty
"""

from __future__ import annotations

import copy

import pytest

from raftkit.algorithms import sft
from raftkit.algorithms.raft import RAFT, Floor, RaftConfig, contested, exclusions, select_local
from raftkit.algorithms.raftpp import RAFTpp, RAFTppConfig
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout

VERDICTS = [0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1]
GROUPS = [i // 4 for i in range(12)]


def verifier_scores(verdicts, hits=None) -> Scores:
    n = len(verdicts)
    values = [None if v is None else float(v) for v in verdicts]
    return Scores({"correct": values}, {"correct": 1.0}, {"loop": hits or [0] * n},
                  [0.0 if v is None else v for v in values], [False] * n)


def rollouts_for(texts, groups, prompts) -> list[Rollout]:
    return [Rollout(prompt_index=g, prompt=prompts[g], completion=t, completion_ids=[1] * (len(t) + 1),
                    logprobs=[0.0] * (len(t) + 1), prompt_ids=[2])
            for t, g in zip(texts, groups, strict=True)]


def test_a_floor_needs_ties_and_learns_across_batches():
    floor = Floor()
    floor.update(verifier_scores([0.5, 0.7]))  # a continuous reward's single lowest sample sets no floor
    assert floor.earned_nothing([0.5, 0.7]) == [False, False]
    floor.update(verifier_scores([0.5, 0.9]))  # a second 0.5: the reward's least
    assert (floor.value, floor.ties) == (0.5, 2)
    assert floor.earned_nothing([0.5, 0.6]) == [True, False]
    floor.update(verifier_scores([1.0, 1.0]))  # an all-right batch later on does not raise it
    assert floor.earned_nothing([1.0]) == [False]


def test_degenerate_and_unscored_samples_do_not_set_the_floor():
    floor = Floor()
    floor.update(verifier_scores([0.0, 0.0, 1.0, None, None], hits=[1, 1, 0, 0, 0]))
    assert floor.value == 1.0 and floor.ties == 1  # hit and unscored samples left out


def test_local_ranking_on_a_verifier_selects_no_wrong_answer():
    """Before: prompt 0's best sample (a 0) was selected too, 1 of 3 selected samples scored the minimum.
    Now: prompt 0 contributes nothing."""
    scores = verifier_scores(VERDICTS)
    batch = Batch(["a", "b", "c"], {}, [0, 1, 2])
    rollouts = rollouts_for(["x"] * 12, GROUPS, batch.prompts)
    unfloored, _ = exclusions(rollouts, batch, scores, RaftConfig())
    before = select_local(scores.total, GROUPS, unfloored)
    assert before == [0, 4, 11] and sum(scores.total[i] == 0 for i in before) == 1
    floor = Floor()
    floor.update(scores)
    excluded, _ = exclusions(rollouts, batch, scores, RaftConfig(), floor)
    after = select_local(scores.total, GROUPS, excluded)
    assert after == [4, 11] and sum(scores.total[i] == 0 for i in after) == 0


def test_min_total_keeps_only_samples_at_or_above_it():
    scores = Scores({"r": [0.2, 0.9, 0.5]}, {"r": 1.0}, {}, [0.2, 0.9, 0.5], [False] * 3)
    batch = Batch(["a"], {}, [0])
    rollouts = rollouts_for(["x"] * 3, [0, 0, 0], batch.prompts)
    excluded, _ = exclusions(rollouts, batch, scores, RaftConfig(min_total=0.5), Floor())
    assert excluded == [True, False, False]


@pytest.mark.parametrize("ranking", ["local", "top"])
def test_a_sample_no_reward_scored_is_never_selected(ranking):
    """Its total of 0 beats every negative total under top ranking and wins its prompt under local ranking;
    it must count as excluded instead, as GRPO leaves it out."""
    scores = verifier_scores([None, -5.0, -3.0, None])
    batch = Batch(["a", "b"], {}, [0, 1])
    rollouts = rollouts_for(["x"] * 4, [0, 0, 0, 1], batch.prompts)
    excluded, _ = exclusions(rollouts, batch, scores, RaftConfig(ranking=ranking))
    assert excluded == [True, False, False, True]


def test_contested_names_only_the_groups_with_a_choice():
    excluded = [True, True, True, True, False, True, False, True, True, True, True, False]
    assert contested(GROUPS, excluded, keep=1) == [4, 6]  # prompt 1's two right answers, nothing else
    assert contested(GROUPS, excluded, keep=2) == []


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_path):
    from raftkit.policy import Policy

    return Policy(tiny_model_path, bf16=False)


def test_raft_update_on_a_verifier(tiny_policy):
    """Through RAFT.update: nothing from prompt 0, no anchor from it, the KL pass scores no sample while the
    policy is the starting model and only prompt 1's two right answers once it has moved, where it picks the
    one the policy has not drifted to."""
    tok = tiny_policy.tokenizer
    batch = Batch(["Add 2 and 2.", "Add 3 and 4.", "Add 1 and 5."], {}, [0, 1, 2])
    texts = ["5", "3", "22", "0",  "It is 7", "8", "7", "1",  "4", "5", "7", "6"]
    rollouts = [Rollout(prompt_index=g, prompt=batch.prompts[g], completion=t, logprobs=[0.0],
                        finish_reason="stop", completion_ids=tok(t, add_special_tokens=False).input_ids)
                for t, g in zip(texts, GROUPS, strict=True)]
    scores = verifier_scores(VERDICTS)

    fresh = RAFT(tiny_policy, RaftConfig(), lr=0.0, total_steps=1, k=4, sampling=None)
    step = fresh.update(batch, rollouts, scores, iteration=1)  # lr 0: selects and reports only
    assert [s["index"] for s in step.selected] == [4, 11]
    assert step.metrics["n_anchors"] == 0 and step.metrics["n_earned_nothing"] == 9
    assert step.metrics["rank/n_scored"] == 0  # π is π_ref: no forward pass at all
    assert fresh.moved

    policy = copy.deepcopy(tiny_policy)  # made to like "It is 7" (sample 4): the tie goes to "7" (sample 6)
    sft.train(policy, [sft.make_example(tok, batch.prompts[1], rollouts[4].completion_ids, "stop")],
              lr=1e-2, epochs=5, micro_batch_size=1)
    moved = RAFT(policy, RaftConfig(), lr=0.0, total_steps=1, k=4, sampling=None)
    moved._reference, moved.moved = tiny_policy.model, True
    step = moved.update(batch, rollouts, scores, iteration=2)
    assert step.metrics["rank/n_scored"] == 2
    assert [s["index"] for s in step.selected] == [6, 11]


def test_the_floor_survives_a_checkpoint(tiny_policy):
    algo = RAFT(tiny_policy, RaftConfig(), lr=0.0, total_steps=1, k=4, sampling=None)
    algo.floor.update(verifier_scores(VERDICTS))
    again = RAFT(tiny_policy, RaftConfig(), lr=0.0, total_steps=1, k=4, sampling=None)
    again.load_state_dict(algo.state_dict())
    assert (again.floor.value, again.floor.ties, again.moved) == (0.0, 9, False)
    again.load_state_dict({"hint": ""})  # a checkpoint written before the floor was kept: it had moved
    assert again.floor.value is None and again.moved


def test_raftpp_selects_no_wrong_answer(tiny_policy):
    algo = RAFTpp(tiny_policy, RAFTppConfig(explore_hint=""), lr=0.0, total_steps=1, k=4, sampling=None)
    batch = Batch(["a", "b", "c"], {}, [0, 1, 2])
    rollouts = rollouts_for(["x"] * 12, GROUPS, batch.prompts)
    targets = algo.targets(batch, rollouts, verifier_scores(VERDICTS))
    assert targets.in_loss == [4, 11]
    assert algo.state_dict()["floor"] == 0.0
