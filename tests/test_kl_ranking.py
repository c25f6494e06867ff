"""RAFT's KL-regularised ranking: r − β·log(π/π_ref), on hand-computed numbers and a tiny model."""

from __future__ import annotations

import copy

import pytest
import torch

from raftkit.algorithms import sft
from raftkit.algorithms.kl_ranking import log_ratios, regularised
from raftkit.algorithms.raft import RAFT, RaftConfig, select_local
from raftkit.algorithms.sft import Example
from raftkit.config import ConfigError
from raftkit.rewards import RewardStack
from raftkit.rollouts import Batch, Rollout


def test_regularised_subtracts_beta_times_the_log_ratio():
    assert regularised([2.0, 3.0, 1.0], [0.0, 4.0, None], 0.5) == [2.0, 1.0, 1.0]
    assert regularised([2.0, 3.0], [1.0, 4.0], 0.0) == [2.0, 3.0]
    with pytest.raises(ValueError):
        regularised([1.0], [], 0.1)


def test_the_penalty_can_change_the_winner():
    """Reward 3 with a log-ratio of 8 nats loses to reward 2 with 0 at β=0.25 (3−2 < 2−0), not at β=0.1."""
    totals, ratios, groups, none = [2.0, 3.0], [0.0, 8.0], [0, 0], [False, False]
    assert select_local(totals, groups, none) == [1]
    assert select_local(regularised(totals, ratios, 0.25), groups, none) == [0]
    assert select_local(regularised(totals, ratios, 0.1), groups, none) == [1]


def test_rank_beta_must_not_be_negative():
    with pytest.raises(ConfigError, match=r"rank_beta|rank-beta"):
        RaftConfig(rank_beta=-0.1)


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_path):
    from raftkit.policy import Policy

    return Policy(tiny_model_path, bf16=False)


def _manual_logprob(model: torch.nn.Module, example: Example) -> float:
    ids = torch.tensor([example.prompt_ids + example.completion_ids])
    logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    p = len(example.prompt_ids)
    return sum(logp[p + j - 1, t].item() for j, t in enumerate(example.completion_ids))


def test_log_ratios_are_zero_at_the_start_and_match_a_manual_sum_after_drift(tiny_policy):
    examples = [Example([1, 5, 9], [12, 7, 3]), Example([1, 4], [8, 8, 8, 2, 6])]  # ragged, so padded
    reference = copy.deepcopy(tiny_policy.model)
    assert log_ratios(tiny_policy, reference, examples, micro_batch_size=1) == pytest.approx([0, 0], abs=1e-5)
    drifted = copy.deepcopy(tiny_policy)
    with torch.no_grad():
        drifted.model.get_output_embeddings().weight.mul_(8.0)  # a sharper, different distribution
    want = [_manual_logprob(drifted.model, e) - _manual_logprob(reference, e) for e in examples]
    assert min(abs(w) for w in want) > 0.1
    assert log_ratios(drifted, reference, examples, micro_batch_size=2) == pytest.approx(want, abs=1e-4)


def test_shared_prompt_logprobs_equal_the_full_forward(tiny_policy):
    """Samples of one prompt share its forward pass; the sums must be those of running every sample
    whole: ragged completions, two prompts interleaved, groups split by the micro-batch, an empty one."""
    import doctest

    from raftkit.algorithms import shared_prompt
    from raftkit.algorithms.dpo import sequence_logprobs

    assert doctest.testmod(shared_prompt).failed == 0
    model = copy.deepcopy(tiny_policy.model)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)  # far from uniform, so errors would show
    a, b = [1, 5, 9, 14], [1, 4]
    examples = [Example(a, [12, 7, 3]), Example(b, [8, 8, 8, 2, 6]), Example(a, [30]),
                Example(a, [12, 7, 3, 3, 3, 9]), Example(b, [6, 2]), Example(a, [])]
    with torch.no_grad():
        full = [*sequence_logprobs(model, examples[:5], pad_id=0).tolist(), 0.0]
    assert min(abs(v) for v in full[:5]) > 0.5
    for size in (1, 2, 8):
        got = shared_prompt.shared_prompt_logprobs(model, examples, pad_id=0, micro_batch_size=size)
        assert got.tolist() == pytest.approx(full, abs=1e-4)


def test_raft_with_rank_beta_prefers_the_sample_the_policy_has_not_drifted_to(tiny_policy):
    """Two samples of one prompt, both keep the answer; the policy (not the reference) was made to like
    the emoji-rich one. Plain ranking picks it for its reward; with rank_beta the other one wins."""
    tok = tiny_policy.tokenizer
    batch = Batch(["capital of France?"], {"answers": [["Paris"]]}, [0])
    texts = ["Paris.", "Paris 🗼🎉"]
    rollouts = [
        Rollout(prompt_index=0, prompt=batch.prompts[0], completion=t, logprobs=[0.0], finish_reason="length",
                completion_ids=tok(t, add_special_tokens=False).input_ids)
        for t in texts
    ]
    scores = RewardStack.build(["emoji"], []).score_rollouts(rollouts, batch)
    assert scores.total[1] > scores.total[0]
    policy = copy.deepcopy(tiny_policy)  # trained on the emoji sample: the policy likes it, the reference not
    emoji_example = sft.make_example(tok, batch.prompts[0], rollouts[1].completion_ids, "length")
    sft.train(policy, [emoji_example], lr=1e-2, epochs=5, micro_batch_size=1)
    algo = RAFT(policy, RaftConfig(rank_beta=1.0), lr=0.0, total_steps=1, k=2, sampling=None)
    algo._reference = tiny_policy.model
    algo.moved = True  # trained above: π is no longer π_ref
    excluded = [False, False]
    adjusted, _ = algo.regularise(rollouts, list(scores.total), excluded)
    assert adjusted[1] < adjusted[0]
    assert algo.select(rollouts, adjusted, excluded) == [0]
    step = algo.update(batch, rollouts, scores, iteration=1)  # lr 0: selects and reports, changes nothing
    assert [s["selected"] for s in step.per_sample] == [True, False]
    assert step.metrics["rank/changed_prompts"] == 1

