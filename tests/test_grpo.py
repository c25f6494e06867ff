"""GRPO's math against hand-computed numbers, and its training step on a tiny model built here."""

from __future__ import annotations

import math
import types
from collections import defaultdict

import pytest
import torch

from raftkit.algorithms.grpo import GRPO, GRPOConfig, reward_groups, scatter
from raftkit.algorithms.lm_head import lm_parts
from raftkit.algorithms.losses import (
    AGGREGATIONS,
    BatchSize,
    clipped_surrogate,
    constant_groups,
    group_advantages,
    importance_weights,
    k3_kl,
    token_entropy,
    token_logprobs,
)
from raftkit.algorithms.policy_gradient import Targets, _completion_hidden, _micro_batch
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams

NAN = float("nan")


def _close(actual: torch.Tensor, expected, atol=1e-7):
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=0)

# --------------------------------------------------------------------------- advantages


def test_group_scaling_by_hand():
    # Group 0: mean 2, deviations (-1, 0, 1), unbiased var (1 + 0 + 1) / (3 - 1) = 1, std 1
    #   -> A = (-1, 0, 1) / (1 + 1e-4).  Group 1: all 5 -> constant -> exactly 0.
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), "group")
    d = 1 / (1 + 1e-4)
    _close(adv, [[-d, 0.0, d], [0.0, 0.0, 0.0]])


def test_batch_scaling_by_hand():
    # All six rewards (1, 2, 3, 5, 5, 5): mean 3.5, squared deviations 6.25 + 2.25 + 0.25 + 3 x 2.25 = 15.5,
    # unbiased var 15.5 / 5 = 3.1. The baseline is still each group's mean:
    # group 0 -> (-1, 0, 1) / (√3.1 + 1e-4).
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]), "batch")
    d = 1 / (math.sqrt(3.1) + 1e-4)  # = 0.56791...
    _close(adv, [[-d, 0.0, d], [0.0, 0.0, 0.0]])


def test_no_scaling_is_plain_deviation():
    # Dr. GRPO: r - mean only. Group 0: mean 1 -> (-1, 1); group 1: mean 0.5 -> (0.5, -0.5).
    adv = group_advantages(torch.tensor([[0.0, 2.0], [1.0, 0.0]]), "none")
    _close(adv, [[-1.0, 1.0], [0.5, -0.5]])


def test_nan_rewards_are_left_out_of_the_group():
    # Group 0 (1, dropped, 3): mean 2, unbiased var ((-1)² + 1²) / (2 - 1) = 2 -> A = ±1 / (√2 + 1e-4),
    # and 0 for the dropped one.
    # Group 1 has one valid reward: no baseline, so it counts as constant and gets 0.
    rewards = torch.tensor([[1.0, NAN, 3.0], [4.0, NAN, NAN]])
    adv = group_advantages(rewards, "group")
    d = 1 / (math.sqrt(2) + 1e-4)
    _close(adv, [[-d, 0.0, d], [0.0, 0.0, 0.0]])
    assert constant_groups(rewards).tolist() == [False, True]


def test_constant_groups_counts_all_equal_groups():
    # 0.1 + 0.2 != 0.3 in doubles (0.30000000000000004): still a constant group. float64, as reward_groups
    # builds them (in float32 both round to the same number and the check could not fail).
    assert 0.1 + 0.2 != 0.3
    rewards = torch.tensor([[0.0, 0.0], [0.3, 0.3], [0.0, 1.0], [0.1 + 0.2, 0.3]], dtype=torch.float64)
    assert constant_groups(rewards).tolist() == [True, True, False, True]
    for scale in ("group", "none"):
        assert group_advantages(rewards, scale)[3].tolist() == [0.0, 0.0]
    # and through GRPO's own path: the totals as the reward stack gives them
    rollouts, scores = _group([[1], [2]], [0.1 + 0.2, 0.3])
    rewards, _ = reward_groups(rollouts, scores)
    assert rewards.dtype == torch.float64 and constant_groups(rewards).tolist() == [True]


def test_constant_groups_has_no_relative_tolerance():
    """Regression: torch.isclose's rtol called these groups constant and zeroed their advantages."""
    rewards = torch.tensor([[1000.0, 1000.005], [5e5, 5e5 + 4]])
    assert constant_groups(rewards).tolist() == [False, False]
    assert (group_advantages(rewards, "none") != 0).all()


def test_unknown_scale_is_an_error():
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(torch.zeros(1, 2), "std")


# --------------------------------------------------------------------------- KL, surrogate


def test_k3_kl_by_hand():
    # d = ref - logp.  logp = ln .5, ref = ln .25: d = -ln 2, exp(d) = .5 -> .5 + ln 2 - 1 = 0.193147
    # logp = ln .25, ref = ln .5: d = ln 2, exp(d) = 2 -> 2 - ln 2 - 1 = 0.306853;  equal -> 0
    logp = torch.log(torch.tensor([0.5, 0.25, 0.3]))
    ref = torch.log(torch.tensor([0.25, 0.5, 0.3]))
    assert k3_kl(logp, ref).tolist() == pytest.approx([0.5 + math.log(2) - 1, 1 - math.log(2), 0.0], abs=1e-6)


def _surrogate(ratios, advantages, eps=0.2, eps_high=None):
    logp = torch.log(torch.tensor(ratios)).requires_grad_()
    sur = clipped_surrogate(logp, torch.zeros_like(logp), torch.tensor(advantages), eps, eps_high)
    sur.loss.sum().backward()
    return sur, logp.grad[0].tolist()


def test_clipping_on_both_sides():
    # eps 0.2, band [0.8, 1.2]; loss = -min(r·A, clip(r)·A):
    #   r 1.5, A +1: min(1.5, 1.2) = 1.2 -> -1.2, clipped high, no gradient
    #   r 1.5, A -1: min(-1.5, -1.2) = -1.5 -> 1.5, not clipped, d/dlogp = -A·r = 1.5
    #   r 0.5, A -1: min(-0.5, -0.8) = -0.8 -> 0.8, clipped low, no gradient
    #   r 0.5, A +1: min(0.5, 0.8) = 0.5 -> -0.5, not clipped, d/dlogp = -A·r = -0.5
    #   r 1.0, A +2: -2, d/dlogp = -2
    sur, grad = _surrogate([[1.5, 1.5, 0.5, 0.5, 1.0]], [[1.0, -1.0, -1.0, 1.0, 2.0]])
    assert sur.loss[0].tolist() == pytest.approx([-1.2, 1.5, 0.8, -0.5, -2.0], abs=1e-6)
    assert sur.high_clipped[0].tolist() == [True, False, False, False, False]
    assert sur.low_clipped[0].tolist() == [False, False, True, False, False]
    assert grad == pytest.approx([0.0, 1.5, 0.0, -0.5, -2.0], abs=1e-6)


def test_clip_higher_widens_only_the_upper_side():
    # r 1.25, A +1: symmetric eps .2 clips at 1.2 (-1.2); eps_high .28 lets 1.25 through (-1.25).
    # r 0.75, A -1: the low side stays at 0.8 either way -> -min(-0.75, -0.8) = 0.8, clipped low.
    sym, _ = _surrogate([[1.25, 0.75]], [[1.0, -1.0]])
    asym, _ = _surrogate([[1.25, 0.75]], [[1.0, -1.0]], eps_high=0.28)
    assert sym.loss[0].tolist() == pytest.approx([-1.2, 0.8], abs=1e-6)
    assert asym.loss[0].tolist() == pytest.approx([-1.25, 0.8], abs=1e-6)
    assert sym.high_clipped[0, 0] and not asym.high_clipped[0, 0]
    assert asym.low_clipped[0, 1]


def test_per_sequence_advantages_broadcast_over_tokens():
    logp = torch.zeros(2, 3)
    sur = clipped_surrogate(logp, logp, torch.tensor([1.0, -2.0]), 0.2)
    assert sur.loss.tolist() == [[-1.0] * 3, [2.0] * 3]


# --------------------------------------------------------------------------- aggregation and masks

# Two sequences of 3 and 1 tokens; the 9s sit on padding and must never count.
PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize(("loss_type", "expected"), [
    ("grpo", 3.0),  # per-sequence means (1+2+3)/3 = 2 and 4/1 = 4, then their mean: 3
    ("dr_grpo", 1.25),  # (1+2+3+4) / (2 sequences x max_completion_length 4) = 10 / 8
    ("dapo", 2.5),  # (1+2+3+4) / 4 unmasked tokens
])
def test_loss_types_by_hand(loss_type, expected):
    batch = BatchSize(sequences=2, tokens=4, max_completion_length=4)
    assert float(AGGREGATIONS[loss_type](PER_TOKEN, MASK, batch)) == pytest.approx(expected)


@pytest.mark.parametrize(("loss_type", "expected"), [
    ("grpo", 2.0),  # (2 + 4 + 0) / 3: a masked (truncated or dropped) sequence still counts, as in TRL
    ("dr_grpo", 10 / 12),  # 10 / (3 x 4)
    ("dapo", 2.5),  # its tokens are not counted: 10 / 4
])
def test_fully_masked_sequence(loss_type, expected):
    per_token = torch.cat([PER_TOKEN, torch.full((1, 3), 7.0)])
    mask = torch.cat([MASK, torch.zeros(1, 3)])
    batch = BatchSize(sequences=3, tokens=4, max_completion_length=4)
    assert float(AGGREGATIONS[loss_type](per_token, mask, batch)) == pytest.approx(expected)


@pytest.mark.parametrize("loss_type", sorted(AGGREGATIONS))
def test_micro_batches_sum_to_the_batch_loss(loss_type):
    batch = BatchSize(sequences=2, tokens=4, max_completion_length=4)
    whole = AGGREGATIONS[loss_type](PER_TOKEN, MASK, batch)
    parts = sum(AGGREGATIONS[loss_type](PER_TOKEN[i : i + 1], MASK[i : i + 1], batch) for i in range(2))
    assert float(parts) == pytest.approx(float(whole))


def test_token_logprobs_and_entropy_by_hand():
    # logits (ln 1, ln 2, ln 1): softmax (.25, .5, .25). At T = 2 the logits halve: exp -> (1, √2, 1),
    # so p(token 1) = √2 / (2 + √2) = 0.414214.
    logits = torch.log(torch.tensor([[1.0, 2.0, 1.0]]))
    assert token_logprobs(logits, torch.tensor([1])).item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert token_logprobs(logits, torch.tensor([1]), temperature=2.0).item() == pytest.approx(
        math.log(math.sqrt(2) / (2 + math.sqrt(2))), abs=1e-6)
    # Entropy of (.25, .5, .25): -(2 x .25 ln .25 + .5 ln .5) = 1.5 ln 2
    assert token_entropy(logits).item() == pytest.approx(1.5 * math.log(2), abs=1e-6)


# --------------------------------------------------------------------------- the step on a tiny model


def _policy(path):
    from raftkit.policy import Policy

    return Policy(path, bf16=False, device="cpu")


PROMPT = [1, 105, 106, 107]


def _group(completions, rewards, dropped=None, truncated=None):
    n = len(completions)
    truncated = truncated or [False] * n
    rollouts = [Rollout(prompt_index=0, prompt="p", completion="c", completion_ids=list(c),
                        logprobs=[0.0] * len(c), prompt_ids=list(PROMPT), truncated=truncated[i])
                for i, c in enumerate(completions)]
    scores = Scores(rewards={"r": list(rewards)}, weights={"r": 1.0}, hits={}, total=list(rewards),
                    dropped=list(dropped or [False] * n))
    return rollouts, scores


def _seq_logprob(policy, prompt, completion):
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(policy.model(ids).logits[0].float(), -1)
    return sum(float(logp[len(prompt) - 1 + t, tok]) for t, tok in enumerate(completion))


def _grpo(policy, k, lr=1e-3, **cfg):
    # The hand-made rollouts carry made-up sampler log-probs: no mismatch correction unless a test asks.
    cfg.setdefault("is_correction", "none")
    cfg.setdefault("warmup_ratio", 0.0)  # one step at the full lr: the default warm-up's first is at lr 0
    return GRPO(policy, GRPOConfig(**cfg), lr=lr, total_steps=10, k=k,
                sampling=SamplingParams(temperature=1.0, max_new_tokens=4))


def _update(policy, rollouts, scores, lr=1e-3, **cfg):
    return _grpo(policy, k=len(rollouts), lr=lr, **cfg).update(Batch(["p"]), rollouts, scores, 0)


def test_one_step_raises_the_best_completion(tiny_model_path):
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400, 401], [500, 501, 502], [600]]
    rollouts, scores = _group(completions, [5.0, 1.0, 1.0, 0.0])
    before = [_seq_logprob(policy, PROMPT, c) for c in completions]
    algo = _grpo(policy, k=4, beta=0.0)
    result = algo.update(Batch(["p"]), rollouts, scores, 0)
    after = [_seq_logprob(policy, PROMPT, c) for c in completions]
    assert after[0] > before[0] + 1e-3  # the clearly best completion became more likely
    assert after[3] < before[3] - 1e-3  # the worst one less likely
    assert result.per_sample[0]["advantage"] > 0 > result.per_sample[3]["advantage"]
    assert algo.reference is None  # beta = 0: no reference model is loaded at all


def test_the_default_warm_up(tiny_model_path):
    # 8 iterations x 4 mini-batches = 32 steps; 1/8 of them warm up: lr 0, 1/4, 1/2, 3/4, then the full lr
    # decaying linearly to 0. A one-step run gets no warm-up: its only step would be at lr 0.
    policy = _policy(tiny_model_path)
    algo = GRPO(policy, GRPOConfig(), lr=1e-4, total_steps=8, k=2, sampling=SamplingParams())
    lrs = []
    for _ in range(6):
        lrs.append(algo.scheduler.get_last_lr()[0])
        algo.optimizer.step()
        algo.scheduler.step()
    assert lrs == pytest.approx([0.0, 2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4 * 27 / 28])
    single = GRPO(policy, GRPOConfig(mini_batches=1), lr=1e-4, total_steps=1, k=2, sampling=SamplingParams())
    assert single.scheduler.get_last_lr()[0] == pytest.approx(1e-4)


def test_loss_value_at_ratio_one(tiny_model_path):
    # μ = 1 and beta = 0: the ratio is exactly 1, so the per-token loss is -A and the loss is model-free.
    # Rewards (1, 0): mean .5, unbiased std √.5 -> A = ±.5 / (√.5 + 1e-4) = ±0.707007.
    # dapo: -(A·3 - A·1) / 4 tokens = -A/2;  grpo: -(A - A) / 2 = 0;  dr_grpo: -(3A - A) / (2 x 4) = -A/4.
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    policy = _policy(tiny_model_path)
    for loss_type, expected in (("dapo", -a / 2), ("grpo", 0.0), ("dr_grpo", -a / 4)):
        rollouts, scores = _group([[300, 301, 302], [400]], [1.0, 0.0])
        result = _update(policy, rollouts, scores, lr=0.0, beta=0.0, loss_type=loss_type)
        assert result.metrics["loss"] == pytest.approx(expected, abs=1e-5), loss_type
        assert result.metrics["clip_ratio/low_mean"] == result.metrics["clip_ratio/high_mean"] == 0.0


def test_truncated_and_dropped_samples_are_masked(tiny_model_path):
    policy = _policy(tiny_model_path)
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    # mask_truncated: the 3-token completion was cut by max_new_tokens and leaves the loss; the dapo
    # normaliser counts only the 1 remaining token: loss = -(-A·1) / 1 = A.
    rollouts, scores = _group([[300, 301, 302], [400]], [1.0, 0.0], truncated=[True, False])
    result = _update(policy, rollouts, scores, lr=0.0, beta=0.0, mask_truncated=True)
    assert result.metrics["loss"] == pytest.approx(a, abs=1e-5)
    assert result.metrics["loss_tokens"] == 1
    # A dropped sample gets advantage 0 and is out of the group: the other two (1, 0) form the baseline.
    rollouts, scores = _group([[300, 301], [400], [500]], [9.0, 1.0, 0.0], dropped=[True, False, False])
    result = _update(policy, rollouts, scores, lr=0.0, beta=0.0)
    assert [s["advantage"] for s in result.per_sample] == pytest.approx([0.0, a, -a], abs=1e-5)
    assert result.metrics["trained_sequences"] == 2  # the dropped one never went through the model
    # -(A·1 - A·1) / 2 tokens = 0
    assert result.metrics["loss"] == pytest.approx(0.0, abs=1e-6)


def test_a_self_dialogue_cut_is_a_finished_answer(tiny_model_path):
    # Sample 0 was cut where the model began the next turn (finish_reason "truncated"): it ended there, so
    # it is trained with EOS appended (3 tokens, as SFT and DPO train it) and it is not cut off, so
    # --truncated-neutral (GRPO's default) leaves its push up. Rewards (1, 0): A = ±a.
    # dapo at ratio 1: -(a·3 - a·1) / 4 tokens = -a/2 (without the EOS: -(a·2 - a·1) / 3 = -a/3).
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    policy = _policy(tiny_model_path)
    rollouts, scores = _group([[300, 301], [400]], [1.0, 0.0])
    rollouts[0].finish_reason = "truncated"
    result = _update(policy, rollouts, scores, lr=0.0, beta=0.0, truncated_neutral=True)
    assert [s["advantage"] for s in result.per_sample] == pytest.approx([a, -a], abs=1e-5)
    assert result.metrics["truncated_neutral_n"] == 0
    assert result.metrics["loss"] == pytest.approx(-a / 2, abs=1e-5)
    assert result.metrics["loss_tokens"] == 4
    assert rollouts[0].completion_ids == [300, 301]  # the rollout itself (as recorded) is left as sampled


def _alone(policy, prompt, completion):
    """Log-probs of the completion tokens with the sequence alone in a plain forward."""
    logits = policy.model(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("share_prompts", [True, False])
def test_batched_log_probs_match_each_sequence_alone(tiny_model_path, share_prompts):
    # Two prompts of different lengths, completions of different lengths, in one micro-batch: the shared
    # prompt cache and the padding of both prompts and completions must leave every log-prob as it is alone.
    policy = _policy(tiny_model_path)
    short_prompt = [1, 105]
    pairs = [(PROMPT, [300, 301, 302, 303]), (PROMPT, [400]),
             (short_prompt, [500, 501]), (short_prompt, [600])]
    rollouts = [Rollout(0, "p", "c", c, [0.0] * len(c), prompt_ids=list(p)) for p, c in pairs]
    mb = _micro_batch(rollouts, [0, 1, 2, 3], torch.zeros(4), 0, policy.device)
    assert mb.prompts.shape[0] == 2  # each distinct prompt once
    backbone, head = lm_parts(policy.model)
    with torch.no_grad():
        hidden = _completion_hidden(backbone, mb, share_prompts=share_prompts)
        rows, ts = mb.tokens
        flat = token_logprobs(head(hidden[rows, ts]), mb.completions[rows, ts])
        logp = torch.zeros(mb.mask.shape).index_put((rows, ts), flat)
        for i, (prompt, completion) in enumerate(pairs):
            n = len(completion)
            _close(logp[i, :n], _alone(policy, prompt, completion).tolist(), atol=1e-5)
            assert logp[i, n:].abs().sum() == 0  # padding positions hold zeros
        # the algorithm's own path gives the same numbers
        _close(_grpo(policy, k=2)._logprobs(policy.model, mb)[0], logp.tolist(), atol=1e-6)


def test_first_step_has_zero_kl_and_one_forward_per_micro_batch(tiny_model_path):
    policy = _policy(tiny_model_path)
    calls = []
    hook = policy.model.lm_head.register_forward_hook(lambda *a: calls.append(1))  # one per pass
    try:
        rollouts, scores = _group([[300, 301], [400], [500, 501, 502], [600]], [1.0, 0.0, 2.0, 0.5])
        algo = _grpo(policy, k=4, beta=0.04, micro_batch_size=2)
        result = algo.update(Batch(["p"]), rollouts, scores, 0)
    finally:
        hook.remove()
    assert algo.reference is not None
    assert result.metrics["kl"] == pytest.approx(0.0, abs=1e-7)  # the policy starts as the reference
    assert len(calls) == 2  # μ = 1: two micro-batches, one policy forward each, no old-log-prob pass


def test_reference_is_the_starting_model_in_the_policys_dtype(tiny_model_path):
    # Under bf16 autocast the KL term's reference must give the policy's log-probs exactly before the first
    # step, as DPO's and RAFT's KL ranking's do (one loader, raftkit.policy.load_reference).
    from raftkit.policy import Policy

    policy = Policy(tiny_model_path, bf16=True, device="cpu")
    rollouts, scores = _group([[300, 301], [400], [500, 501, 502], [600]], [1.0, 0.0, 2.0, 0.5])
    algo = _grpo(policy, k=4, lr=0.0, beta=0.04)
    assert {p.dtype for p in algo.reference.parameters()} == {p.dtype for p in policy.model.parameters()}
    assert algo.update(Batch(["p"]), rollouts, scores, 0).metrics["kl"] == 0.0


def test_several_iterations_reuse_old_logprobs(tiny_model_path):
    # μ = 3 at a large lr: later steps see ratios away from 1 and the clip starts to act.
    policy = _policy(tiny_model_path)
    calls = []
    hook = policy.model.lm_head.register_forward_hook(lambda *a: calls.append(1))  # one per pass
    try:
        rollouts, scores = _group([[300, 301, 302], [400, 401], [500, 501, 502], [600]], [5.0, 1.0, 1.0, 0.0])
        result = _update(policy, rollouts, scores, lr=3e-2, beta=0.0, num_iterations=3)
    finally:
        hook.remove()
    assert len(calls) == 3  # one forward per step, none extra for the old log-probs
    assert result.metrics["trained_sequences"] == 4


def _with_ratios(algo, policy, rollouts, advantages, ratios):
    """A micro-batch of all ``rollouts`` whose stored π_old puts each completion token at the given ratio
    π_θ/π_old (as on a later step of μ), with unit weights."""
    mb = _micro_batch(rollouts, list(range(len(rollouts))), torch.tensor(advantages), 0, policy.device)
    with torch.no_grad():
        logp = algo._logprobs(policy.model, mb)[0]
    shift = torch.zeros_like(logp)
    for i, row in enumerate(ratios):
        shift[i, : len(row)] = torch.log(torch.tensor(row))
    mb.old_logp, mb.weight = logp - shift, torch.ones_like(logp)
    return mb


def test_clip_fractions_and_surrogate_by_hand(tiny_model_path):
    # ε = 0.2. Sequence 0 (A = +2) at ratios (1.5, 1.1, 1.3), sequence 1 (A = -1) at (0.5, 0.9):
    #   per-token loss -min(r·A, clip(r)·A): -2·1.2, -2·1.1, -2·1.2 and 1·0.8, 1·0.9;
    #   dapo over the 5 tokens: (-2.4 - 2.2 - 2.4 + 0.8 + 0.9) / 5 = -1.06.
    #   clipped high (A > 0, r > 1.2): 1.5 and 1.3 -> 2 of 5; low (A < 0, r < 0.8): 0.5 -> 1 of 5.
    policy = _policy(tiny_model_path)
    rollouts, _ = _group([[300, 301, 302], [400, 401]], [1.0, 0.0])
    algo = _grpo(policy, k=2, lr=0.0, beta=0.0)
    mb = _with_ratios(algo, policy, rollouts, [2.0, -1.0], [[1.5, 1.1, 1.3], [0.5, 0.9]])
    sums, size = defaultdict(float), BatchSize(sequences=2, tokens=5, max_completion_length=4)
    loss = algo._backward(mb, size, False, sums, {}, defaultdict(float))
    assert loss == pytest.approx(-1.06, abs=1e-5)
    assert (sums["clip_high"], sums["clip_low"], sums["clip_tokens"]) == (2.0, 1.0, 5.0)
    algo._extremes = {}
    target = Targets(torch.tensor([2.0, -1.0]), [0, 1], sequences=2)
    metrics = algo._metrics(rollouts, _group([[1], [2]], [1.0, 0.0])[1], target, [0, 1], size, sums, [loss],
                            [], [])
    assert metrics["clip_ratio/high_mean"] == pytest.approx(2 / 5)
    assert metrics["clip_ratio/low_mean"] == pytest.approx(1 / 5)
    assert metrics["clip_ratio/region_mean"] == pytest.approx(3 / 5)


def test_kl_term_sign_and_weight_by_hand(tiny_model_path):
    # Equal rewards: every advantage is 0, so with β = 0.5 the loss is β·KL alone. The reference is the
    # starting model with its final norm doubled, so KL_t = exp(d) - d - 1 with d = log π_ref - log π is
    # not 0. dapo at ratio 1: β · Σ_t KL_t / tokens. A flipped sign or another weight gives another number.
    import copy

    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400]]
    rollouts, scores = _group(completions, [1.0, 1.0])
    algo = _grpo(policy, k=2, lr=0.0, beta=0.5)
    reference = copy.deepcopy(policy.model)
    with torch.no_grad():
        reference.model.norm.weight.mul_(2.0)
    algo.reference = reference.eval().requires_grad_(False)
    with torch.no_grad():
        own = torch.cat([_alone(policy, PROMPT, c) for c in completions]).double()
        as_ref = types.SimpleNamespace(model=reference)
        ref = torch.cat([_alone(as_ref, PROMPT, c) for c in completions]).double()
    d = ref - own
    kl = (torch.exp(d) - d - 1).sum().item() / 4
    assert kl > 1e-3
    result = algo.update(Batch(["p"]), rollouts, scores, 0)
    assert result.metrics["kl"] == pytest.approx(kl, rel=1e-4)
    assert result.metrics["loss"] == pytest.approx(0.5 * kl, rel=1e-4)


def test_clip_fraction_counts_only_the_steps_where_the_ratio_can_move(tiny_model_path, monkeypatch):
    """Regression: step 0 (ratio exactly 1, never clipped) was averaged in, halving the fraction at μ = 2."""
    import raftkit.algorithms.policy_gradient as grpo_module

    calls = []
    real = grpo_module.clipped_surrogate

    def recording(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(grpo_module, "clipped_surrogate", recording)
    policy = _policy(tiny_model_path)
    # Equal lengths: no padding, so every token counts; one micro-batch, so call i is step i.
    rollouts, scores = _group([[300, 301], [400, 401], [500, 501], [600, 601]], [5.0, 1.0, 1.0, 0.0])
    result = _update(policy, rollouts, scores, lr=3e-2, beta=0.0, num_iterations=2, micro_batch_size=4)
    assert len(calls) == 2 and not calls[0].low_clipped.any() and not calls[0].high_clipped.any()
    low, high = calls[1].low_clipped.float().mean().item(), calls[1].high_clipped.float().mean().item()
    assert low + high > 0
    assert result.metrics["clip_ratio/low_mean"] == pytest.approx(low)
    assert result.metrics["clip_ratio/high_mean"] == pytest.approx(high)


def test_unscorable_samples_stay_out_of_the_group_as_in_trl():
    """Regression: rewards [1, 0, None, None] gave [1.50, -0.50, -0.50, -0.50] (None counted as a total
    of 0); TRL 1.16 marks such samples unscorable: [0.71, -0.71, 0, 0]."""
    rollouts, _ = _group([[300], [400], [500], [600]], [0.0] * 4)
    values = [1.0, 0.0, None, None]
    scores = Scores(rewards={"r": values}, weights={"r": 1.0}, hits={}, total=[1.0, 0.0, 0.0, 0.0],
                    dropped=[False] * 4)
    assert scores.unscorable == [False, False, True, True]
    rewards, groups = reward_groups(rollouts, scores)
    adv = scatter(group_advantages(rewards, "group"), groups, len(rollouts))
    d = 0.5 / (math.sqrt(0.5) + 1e-4)  # mean 0.5, unbiased std of [1, 0] = sqrt(0.5)
    _close(adv[None], [[d, -d, 0.0, 0.0]])
    assert (len(groups), int(constant_groups(rewards).sum())) == (1, 0)
    # A filter hit is a score: that sample is not unscorable.
    hit = Scores(rewards={"r": values}, weights={"r": 1.0}, hits={"f": [0, 0, 1, 0]}, total=[1.0, 0, -1, 0],
                 dropped=[False] * 4)
    assert hit.unscorable == [False, False, False, True]


def test_config_validation():
    with pytest.raises(ValueError, match="loss_type"):
        GRPOConfig(loss_type="bnpo")
    with pytest.raises(ValueError, match="num_iterations"):
        GRPOConfig(num_iterations=0)
    with pytest.raises(ValueError, match="mini_batches"):
        GRPOConfig(mini_batches=0)


# --------------------------------------------------------------------------- exploration, importance weights


def test_importance_weights_by_hand():
    # Row 0 hinted: π_old (.2, .6, .1), μ (.4, .3, .1) -> ρ = (.5, 2, 1); cap 1 -> (.5, 1, 1).
    # Row 1 on-policy: its behaviour log-probs are garbage on purpose and must not be read: weight 1.
    old = torch.log(torch.tensor([[0.2, 0.6, 0.1], [0.5, 0.5, 0.5]]))
    mu = torch.log(torch.tensor([[0.4, 0.3, 0.1], [1e-9, 1e-9, 1e-9]]))
    hinted = torch.tensor([True, False])
    w = importance_weights(old, mu, hinted, cap=1.0)
    _close(w.rho, [[0.5, 2.0, 1.0], [1.0, 1.0, 1.0]], atol=1e-6)
    _close(w.weight, [[0.5, 1.0, 1.0], [1.0, 1.0, 1.0]], atol=1e-6)
    assert w.weight[1].tolist() == [1.0, 1.0, 1.0]  # exactly 1, not merely close
    # cap 1.5 truncates the 2 to 1.5; floor .8 lifts the .5 to .8 (the floor's deliberate bias)
    _close(importance_weights(old, mu, hinted, cap=1.5).weight[0], [0.5, 1.5, 1.0], atol=1e-6)
    _close(importance_weights(old, mu, hinted, cap=1.0, floor=0.8).weight[0], [0.8, 1.0, 1.0], atol=1e-6)
    assert not importance_weights(old.requires_grad_(), mu, hinted).weight.requires_grad  # a constant
    with pytest.raises(ValueError, match="floor"):
        importance_weights(old, mu, hinted, cap=1.0, floor=2.0)


class _EchoSampler:
    """Completion = the prompt it was given; logprobs -1 per token. Has the real tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls, self.skipped = tokenizer, [], []

    def generate(self, prompts, k, params):
        from raftkit.chat import encode_prompt

        self.calls.append((list(prompts), k))
        return [Rollout(i, p, f"{p}#{j}", [7, 8], [-1.0, -2.0], prompt_ids=encode_prompt(self.tokenizer, p))
                for i, p in enumerate(prompts) for j in range(k)]


@pytest.fixture(scope="module")
def tokenizer(default_tokenizer):
    return default_tokenizer


def test_sample_with_hint_trains_against_the_original_prompt(tokenizer):
    from raftkit.algorithms.explore import sample_with_hint
    from raftkit.chat import encode_prompt

    chat = [{"role": "user", "content": "Q1"}]
    sampler = _EchoSampler(tokenizer)
    sampled = sample_with_hint(sampler, Batch(["Q0", chat]), k=4, n_hinted=1, hint=" Hint.", params=None)
    assert [c[1] for c in sampler.calls] == [3, 1]  # 3 plain + 1 hinted per prompt
    assert [(r.prompt_index, r.hinted) for r in sampled.rollouts] == [
        (0, False), (0, False), (0, False), (0, True), (1, False), (1, False), (1, False), (1, True)]
    q0, q1 = sampled.rollouts[3], sampled.rollouts[7]
    assert q0.prompt == "Q0" and q0.sample_prompt == "Q0 Hint." and q0.completion == "Q0 Hint.#0"
    assert q0.prompt_ids == encode_prompt(tokenizer, "Q0") != encode_prompt(tokenizer, "Q0 Hint.")
    assert q1.prompt == chat and q1.sample_prompt == [{"role": "user", "content": "Q1 Hint."}]
    assert q1.prompt_ids == sampled.rollouts[4].prompt_ids  # the same ids as the plain samples of Q1
    assert q1.logprobs == [-1.0, -2.0]  # μ's log-probs, as sampled
    # an even split is one engine call
    sampler = _EchoSampler(tokenizer)
    sample_with_hint(sampler, Batch(["Q0"]), k=4, n_hinted=2, hint=" Hint.", params=None)
    assert sampler.calls == [(["Q0", "Q0 Hint."], 2)]


def test_grpo_samples_on_policy_unless_exploring(tiny_model_path, tokenizer):
    policy = _policy(tiny_model_path)
    sampler = _EchoSampler(tokenizer)
    off = _grpo(policy, k=4, beta=0.0)
    assert off.n_hinted == 0 and not any(r.hinted for r in off.sample(sampler, Batch(["Q0"]), 1))
    assert sampler.calls == [(["Q0"], 4)]
    on = GRPO(policy, GRPOConfig(beta=0.0, explore_hint="auto", explore_share=0.25), lr=1e-3, total_steps=1,
              k=4, rewards=["emoji", "length:target=30"])
    assert on.hint == " Answer in one short sentence. Use emojis 😊." and on.n_hinted == 1
    assert sum(r.hinted for r in on.sample(sampler, Batch(["Q0"]), 1)) == 1
    # 'auto' with no rewards to build a hint from: no exploration.
    assert GRPO(policy, GRPOConfig(beta=0.0, explore_hint="auto"), lr=1e-3, total_steps=1, k=4).n_hinted == 0


def _token_logprobs(policy, completion):
    with torch.no_grad():
        return _alone(policy, PROMPT, completion).tolist()


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_hinted_surrogate_is_weighted_by_hand(tiny_model_path, loss_type):
    # lr 0, beta 0, μ = 1: per token loss = -w·A. Rewards (1, 0): A = ±a, a = .5 / (√.5 + 1e-4).
    # Sample 0 (3 tokens, A = +a) is hinted with μ = π_old · (4, 4, 1/2) per token -> ρ = (1/4, 1/4, 2),
    # truncated at 1 -> w = (1/4, 1/4, 1). Sample 1 (1 token, A = -a) is on-policy: w = 1.
    #   dapo: -(a·(1/4 + 1/4 + 1) - a) / 4 tokens = -a/8;  grpo: -(a·1.5/3 - a) / 2 = a/4.
    # Explore off (the same rollouts, not hinted): dapo -(3a - a)/4 = -a/2, grpo 0 (as in the test above).
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400]]
    old = _token_logprobs(policy, completions[0])
    rollouts, scores = _group(completions, [1.0, 0.0])
    rollouts[0].hinted = True
    rollouts[0].logprobs = [old[0] + math.log(4), old[1] + math.log(4), old[2] - math.log(2)]
    rollouts[1].logprobs = [99.0]  # on-policy: never read
    result = _update(policy, rollouts, scores, lr=0.0, beta=0.0, loss_type=loss_type, explore_is_floor=0.0)
    assert result.metrics["loss"] == pytest.approx({"dapo": -a / 8, "grpo": a / 4}[loss_type], abs=1e-4)
    assert result.metrics["explore/hinted_share"] == 0.5  # 1 of 2 samples
    assert result.metrics["explore/is_weight"] == pytest.approx(0.5, abs=1e-4)  # (1/4 + 1/4 + 1) / 3
    assert result.metrics["explore/is_truncated"] == pytest.approx(1 / 3)
    assert result.per_sample[0]["is_weight_min"] == pytest.approx(0.25, abs=1e-4)
    assert result.per_sample[0]["log_rho"] == pytest.approx(-math.log(4) * 2 + math.log(2), abs=1e-4)
    assert "is_weight" not in result.per_sample[1]
    # Nothing hinted: the loss is the plain GRPO loss, and no explore metrics appear.
    rollouts, scores = _group(completions, [1.0, 0.0])
    plain = _update(policy, rollouts, scores, lr=0.0, beta=0.0, loss_type=loss_type)
    assert plain.metrics["loss"] == pytest.approx({"dapo": -a / 2, "grpo": 0.0}[loss_type], abs=1e-5)
    assert plain.metrics["explore/hinted_share"] == 0
    assert not any(key.startswith("explore/is_") for key in plain.metrics)


def test_hinted_weights_scale_the_gradient(tiny_model_path):
    # At ratio 1 the loss is linear in the weights: with sample 0 hinted at ρ = 1/4 on every token, the
    # gradient is g1 + g0/4, where g0, g1 are the two samples' shares. Three runs give the check:
    # ρ = 1 (same as on-policy: g1 + g0), ρ = 1/4, and ρ ≈ 0 (g1 alone).
    policy = _policy(tiny_model_path)
    completions = [[300, 301, 302], [400]]
    old = _token_logprobs(policy, completions[0])
    param = policy.model.model.layers[-1].mlp.down_proj.weight

    def grad_with(shift, hinted):
        rollouts, scores = _group(completions, [1.0, 0.0])
        rollouts[0].hinted = hinted
        rollouts[0].logprobs = [x + shift for x in old]
        grads = []
        hook = param.register_post_accumulate_grad_hook(lambda p: grads.append(p.grad.clone()))
        try:
            _update(policy, rollouts, scores, lr=0.0, beta=0.0, loss_type="dr_grpo", explore_is_floor=0.0)
        finally:
            hook.remove()
        assert len(grads) == 1  # one micro-batch, one backward
        return grads[0]

    on_policy = grad_with(0.0, hinted=False)
    same = grad_with(0.0, hinted=True)
    quarter = grad_with(math.log(4), hinted=True)
    none = grad_with(math.log(1e9), hinted=True)
    assert on_policy.abs().sum() > 0
    torch.testing.assert_close(same, on_policy, atol=1e-7, rtol=1e-4)
    torch.testing.assert_close(quarter, none + (on_policy - none) / 4, atol=1e-7, rtol=1e-3)
    assert not torch.allclose(quarter, on_policy, atol=1e-6)


def test_explore_config_and_cli_options():
    from click.testing import CliRunner

    from raftkit.cli import main
    from raftkit.config import build

    assert GRPOConfig().explore_hint == "auto"  # on by default, adaptive: see docs/grpo.md
    cfg = build(GRPOConfig, {"explore_hint": "auto", "explore_share": "0.25", "explore_is_cap": "2"})
    assert (cfg.explore_hint, cfg.explore_share, cfg.explore_is_cap) == ("auto", 0.25, 2.0)
    with pytest.raises(ValueError, match="explore_share"):
        GRPOConfig(explore_share=1.5)
    with pytest.raises(ValueError, match="explore_is_floor"):
        GRPOConfig(explore_is_floor=2.0)
    help_text = CliRunner().invoke(main, ["align", "--algo", "grpo", "--help"]).output
    for option in ("--explore-hint", "--explore-share", "--explore-is-cap", "--explore-is-floor"):
        assert option in help_text
