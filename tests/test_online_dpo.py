"""Online DPO (raftkit.algorithms.online_dpo): pair selection by hand, registration, and a real step on a tiny
model that raises the chosen sample's log-prob relative to the rejected one's."""

from __future__ import annotations

import pytest
import torch

from raftkit.algorithms.online_dpo import OnlineDPO, OnlineDPOConfig, rollout_example, select_pairs
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout


def _rollouts() -> list[Rollout]:
    """3 prompts: 0 has three samples, 1 two that tie, 2 four of which two are ineligible."""
    def r(p: int, ids: list[int], **kw) -> Rollout:
        return Rollout(p, f"q{p}", "x" * len(ids), ids, [], prompt_ids=[100 + p, 7], **kw)

    return [
        r(0, [11, 12]), r(0, [13, 14, 15]), r(0, [16]),           # totals 1, 3, 2 -> (1, 0)
        r(1, [21]), r(1, [22]),                                   # 2, 2: a tie, no pair
        r(2, [31]), r(2, [32]), r(2, [33, 34]), r(2, [35], finish_reason="length", truncated=True),
    ]


def _scores() -> Scores:
    # prompt 2: sample 5 is dropped (best total), 6 has a filter hit; of 7 and 8, 7 is better
    return Scores(
        rewards={"a": [1.0, 3.0, 2.0, 2.0, 2.0, 9.0, 8.0, 1.0, 0.0]},
        weights={"a": 1.0},
        hits={"f": [0, 0, 0, 0, 0, 0, 1, 0, 0]},
        total=[1.0, 3.0, 2.0, 2.0, 2.0, 9.0, 8.0, 1.0, 0.0],
        dropped=[False, False, False, False, False, True, False, False, False],
    )


def test_select_pairs_by_hand():
    assert select_pairs(_rollouts(), _scores()) == [(1, 0), (7, 8)]
    # an unscorable sample (every reward None, no hit) is never a side of a pair
    scores = _scores()
    scores.rewards["a"][0] = None
    assert select_pairs(_rollouts(), scores) == [(1, 2), (7, 8)]
    # ties go to the earlier sample on both ends
    rs = [Rollout(0, "q", "a", [1], [], prompt_ids=[9]) for _ in range(4)]
    assert select_pairs(rs, Scores({}, {}, {}, [2.0, 2.0, 0.0, 0.0], [False] * 4)) == [(0, 2)]


def test_rollout_example_keeps_ids_and_adds_eos_only_when_finished():
    rs = _rollouts()
    assert rollout_example(rs[0], eos_id=2).completion_ids == [11, 12, 2]
    assert rollout_example(rs[8], eos_id=2).completion_ids == [35]  # cut by the length limit
    cut = Rollout(0, "q0", "x", [11, 12], [], prompt_ids=[100, 7], finish_reason="truncated")
    assert rollout_example(cut, eos_id=2).completion_ids == [11, 12, 2]  # a self-dialogue cut ended there
    assert rollout_example(rs[0], eos_id=2).prompt_ids == [100, 7]


def test_registered_and_configured():
    from raftkit import algorithms

    info = algorithms.get("online_dpo")
    assert info.cls is OnlineDPO
    assert OnlineDPOConfig().beta == 0.1
    with pytest.raises(ValueError, match="beta"):
        OnlineDPOConfig(beta=0.0)


@pytest.fixture()
def online_dpo(tiny_model_path):
    from raftkit.policy import Policy

    torch.manual_seed(0)
    policy = Policy(tiny_model_path, bf16=False, device="cpu")
    return OnlineDPO(policy, OnlineDPOConfig(beta=0.1), lr=1e-2, total_steps=1, k=3)


def test_sample_draws_k_per_prompt(online_dpo):
    class Sampler:
        def generate(self, prompts, n, params):
            self.args = (prompts, n, params)
            return []

    sampler = Sampler()
    online_dpo.sample(sampler, Batch(["a", "b"]), 1)
    assert sampler.args[:2] == (["a", "b"], 3) and sampler.args[2] is online_dpo.sampling


def test_update_raises_chosen_over_rejected_and_records_pairs(online_dpo):
    from raftkit.algorithms.dpo import METRIC_NAMES, sequence_logprobs
    from raftkit.runs.metrics import rollout_records

    rollouts, scores = _rollouts(), _scores()
    eos = online_dpo.policy.tokenizer.eos_token_id
    examples = [rollout_example(r, eos) for r in rollouts]

    def margins() -> list[float]:
        with torch.no_grad():
            logp = sequence_logprobs(online_dpo.policy.model, examples, pad_id=0)
        return [float(logp[1] - logp[0]), float(logp[7] - logp[8])]

    before = margins()
    batch = Batch([f"q{p}" for p in range(3)], indices=[0, 1, 2])
    result = online_dpo.update(batch, rollouts, scores, 1)
    after = margins()
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    assert result.metrics["n_pairs"] == 2 and result.metrics["no_pair_prompts"] == 1
    assert result.metrics["pairs/score_gap"] == pytest.approx(((3 - 1) + (1 - 0)) / 2)
    assert set(METRIC_NAMES) <= set(result.metrics)
    assert result.metrics["rewards/margins"] == pytest.approx(0.0, abs=1e-6)  # first step: policy = reference
    sides = {i: p.get("pair") for i, p in enumerate(result.per_sample) if "pair" in p}
    assert sides == {1: "chosen", 0: "rejected", 7: "chosen", 8: "rejected"}
    assert [(s["index"], s["pair"], s["pair_id"]) for s in result.selected] == [
        (1, "chosen", 0), (0, "rejected", 0), (7, "chosen", 1), (8, "rejected", 1)]
    records = rollout_records(1, batch, rollouts, scores, result.per_sample)  # what the loop writes
    assert records[1]["pair"] == "chosen" and records[0]["pair"] == "rejected" and "pair" not in records[3]
    # the optimiser state round-trips through a checkpoint
    state = online_dpo.state_dict()
    online_dpo.load_state_dict(state)
    assert online_dpo.dpo.optimizer.state_dict()["state"]


def test_update_without_pairs_takes_no_step(online_dpo):
    rollouts = _rollouts()[3:5]  # the tied prompt only
    scores = Scores({"a": [2.0, 2.0]}, {"a": 1.0}, {}, [2.0, 2.0], [False, False])
    weights = [p.detach().clone() for p in online_dpo.policy.model.parameters()]
    result = online_dpo.update(Batch(["q1"]), rollouts, scores, 1)
    assert result.metrics["n_pairs"] == 0 and result.selected == []
    assert all(torch.equal(a, b) for a, b in zip(weights, online_dpo.policy.model.parameters(), strict=True))


def test_needs_two_samples_per_prompt(tiny_model_path):
    with pytest.raises(ValueError, match="k >= 2"):
        OnlineDPO(object(), OnlineDPOConfig(), lr=1e-6, total_steps=1, k=1)


@pytest.mark.parametrize("bf16", [False, True])
def test_reference_log_probs_equal_the_policys_at_step_0(tiny_model_path, bf16):
    # The reference is the starting model in the policy's own dtype (fp32 master weights), run under the
    # same autocast: before any step log π/π_ref is exactly 0, bf16 hardware or not. A bf16 copy of the
    # weights would run its norms and embeddings in bf16 where the policy runs them in fp32.
    from raftkit.algorithms.dpo import DPOUpdate, sequence_logprobs
    from raftkit.policy import Policy

    policy = Policy(tiny_model_path, bf16=bf16, device="cpu")
    update = DPOUpdate(policy, beta=0.1, lr=0.0)
    assert {p.dtype for p in update.reference.parameters()} == {torch.float32}
    examples = [rollout_example(r, eos_id=2) for r in _rollouts()]
    with torch.no_grad(), policy.autocast():
        own = sequence_logprobs(policy.model, examples, pad_id=0).float()
    assert torch.equal(update.reference_logprobs(examples), own)
