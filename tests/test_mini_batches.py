"""--mini-batches: a batch of samples split by prompt into several optimiser steps, on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch
from test_grpo import PROMPT, _alone, _close, _group, _grpo, _policy

from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout


def _two_prompts(completions, rewards):
    """Two prompts of two samples each: the first two completions continue PROMPT, the last two SHORT."""
    prompts = [PROMPT, PROMPT, SHORT, SHORT]
    rollouts = [Rollout(prompt_index=i // 2, prompt="p", completion="c", completion_ids=list(c),
                        logprobs=[0.0] * len(c), prompt_ids=list(prompts[i]))
                for i, c in enumerate(completions)]
    scores = Scores(rewards={"r": list(rewards)}, weights={"r": 1.0}, hits={}, total=list(rewards),
                    dropped=[False] * 4)
    return rollouts, scores


SHORT = [1, 105]


def test_mini_batches_take_one_step_per_share_of_the_prompts(tiny_model_path, monkeypatch):
    """Two prompts, --mini-batches 2: two optimiser steps, each on one prompt's group and normalised by its
    own tokens; the second group's π_old is the policy *before* the first step (one forward without
    gradient), so after a large first step its ratio has left 1 and the clip acts on it."""
    import raftkit.algorithms.policy_gradient as pg

    calls = []
    real = pg.clipped_surrogate

    def recording(logp, old_logp, advantages, *args, **kwargs):
        calls.append((logp.detach(), old_logp, advantages))
        return real(logp, old_logp, advantages, *args, **kwargs)

    monkeypatch.setattr(pg, "clipped_surrogate", recording)
    policy = _policy(tiny_model_path)
    completions = [[300, 301], [400, 401], [500, 501], [600, 601]]
    before = [_alone(policy, p, c).detach()
              for p, c in zip([PROMPT, PROMPT, SHORT, SHORT], completions, strict=True)]
    rollouts, scores = _two_prompts(completions, [1.0, 0.0, 0.0, 1.0])
    algo = _grpo(policy, k=2, lr=0.1, beta=0.0, mini_batches=2, micro_batch_size=4)
    heads = []
    hook = policy.model.lm_head.register_forward_hook(lambda *a: heads.append(1))
    try:
        result = algo.update(Batch(["p", "q"]), rollouts, scores, 0)
    finally:
        hook.remove()
    assert len(heads) == 3  # two training forwards and one for the second mini-batch's π_old
    assert algo.scheduler.last_epoch == 2  # two optimiser steps
    first, second = calls
    _close(first[1], torch.stack(before[:2]).tolist(), atol=1e-5)  # π_old = the sampling policy, for both
    _close(second[1], torch.stack(before[2:]).tolist(), atol=1e-5)
    assert (second[0] - second[1]).abs().max() > 1e-3  # the first step moved the second group's log-probs
    # The clip fraction is the second mini-batch's alone: the first's ratio was exactly 1.
    ratio, adv = torch.exp(second[0] - second[1]), second[2][:, None]
    clipped = ((ratio < 0.8) & (adv < 0)) | ((ratio > 1.2) & (adv > 0))
    assert clipped.any()
    assert result.metrics["clip_ratio/region_mean"] == pytest.approx(clipped.float().mean().item())
    assert result.metrics["loss_tokens"] == 8


def test_mini_batches_at_lr_zero_give_the_mean_of_the_groups_losses(tiny_model_path):
    # The policy does not move, so each step is its own group's dapo loss at ratio 1, A = ±.5 / (√.5 + 1e-4)
    # for rewards (1, 0): completions of 3 and 1 tokens give -(3A - A) / 4 = -A/2, of 1 and 1 tokens
    # -(A - A) / 2 = 0. The logged loss is the mean over the two steps. One mini-batch: -(3A - A) / 6.
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    policy = _policy(tiny_model_path)
    rollouts, scores = _two_prompts([[300, 301, 302], [400], [500], [600]], [1.0, 0.0, 1.0, 0.0])
    algo = _grpo(policy, k=2, lr=0.0, beta=0.0, mini_batches=2)
    result = algo.update(Batch(["p", "q"]), rollouts, scores, 0)
    assert result.metrics["loss"] == pytest.approx((-a / 2 + 0.0) / 2, abs=1e-5)
    rollouts, scores = _two_prompts([[300, 301, 302], [400], [500], [600]], [1.0, 0.0, 1.0, 0.0])
    one_step = _grpo(policy, k=2, lr=0.0, beta=0.0, mini_batches=1)
    whole = one_step.update(Batch(["p", "q"]), rollouts, scores, 0)
    assert whole.metrics["loss"] == pytest.approx(-(3 * a - a) / 6, abs=1e-5)  # one step: 6 tokens


def test_more_mini_batches_than_prompts_take_one_step_per_prompt(tiny_model_path):
    policy = _policy(tiny_model_path)
    rollouts, scores = _group([[300, 301], [400]], [1.0, 0.0])
    algo = _grpo(policy, k=2, lr=1e-3, beta=0.0, mini_batches=4)
    algo.update(Batch(["p"]), rollouts, scores, 0)
    assert algo.scheduler.last_epoch == 1  # one prompt: one step, never an empty one
