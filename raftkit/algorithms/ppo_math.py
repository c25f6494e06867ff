"""The tensor math of PPO with a learned value function, as pure functions: per-token KL-penalised rewards,
generalised advantage estimation, whitening, and the clipped value loss. ``raftkit.algorithms.ppo`` wires
them into the training step; the clipped policy surrogate is ``losses.clipped_surrogate``.

Definitions follow TRL's ``PPOTrainer`` (``trl/trainer/ppo_trainer.py`` and ``trl/trainer/utils.py``):
the k1 KL estimator in the reward, the score added at the last token, GAE with value 0 after the last token,
``masked_whiten`` with an unbiased variance and ``1e-8`` under the square root, and
``0.5·max((v−R)², (clip(v, v_old±c)−R)²)`` for the value loss.

Shapes: ``[n, T]`` tensors hold n sequences' per-token values, right-padded; ``mask`` is 1 on completion
tokens and 0 on padding. Padding never reaches a real token's result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (0 when there are none)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """``(x − mean)/sqrt(var + eps)`` over the masked entries (TRL's ``masked_whiten``); padding gives 0.

    The variance is unbiased (Bessel) as in TRL; with one entry it is 0 rather than TRL's division by zero.
    ``shift_mean=False`` adds the mean back (only the scale changes).
    """
    mean = masked_mean(x, mask)
    count = mask.sum()
    var = (((x - mean) ** 2) * mask).sum() / (count - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_penalised_rewards(score: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor,
                         kl_coef: float) -> Tensor:
    """Per-token rewards ``[n, T]``: ``−kl_coef·(logp − ref_logp)`` on every token, plus the sequence's
    ``score`` on its last real token (TRL's PPO). Padding gets 0; a sequence with no token gets nothing."""
    rewards = -kl_coef * (logp - ref_logp) * mask
    lengths = mask.sum(dim=1).long()
    has = lengths > 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has]
    last = lengths[has] - 1
    return rewards.index_put((rows, last), score.to(rewards.dtype)[has], accumulate=True)


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """(advantages, returns), both ``[n, T]``, by generalised advantage estimation backwards over each
    sequence's tokens: ``δ_t = r_t + γ·V_{t+1} − V_t``, ``A_t = δ_t + γλ·A_{t+1}``, ``R_t = A_t + V_t``.

    The value after a sequence's last token is 0 (the episode ends there), so padding and whatever stands
    in the padded ``values`` never reach a real token. Padding gets 0 in both outputs.
    """
    rewards, values = rewards * mask, values * mask
    n, width = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = rewards.new_zeros(n)
    next_value = rewards.new_zeros(n)
    for t in reversed(range(width)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        # On padding the running sum restarts, so the last real token sees A_{T} = 0 and V_{T} = 0.
        running = running * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


@dataclass
class ValueLoss:
    """The clipped value loss and the share of tokens where the clipped term was the larger one."""

    loss: Tensor  # scalar, with gradient towards ``values``
    clip_frac: Tensor  # scalar, no gradient


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float,
                       tokens: float | None = None) -> ValueLoss:
    """``0.5·Σ max((v − R)², (clip(v, v_old − c, v_old + c) − R)²) / tokens`` over the masked tokens.

    ``tokens`` defaults to this mask's count (a mean); passing the whole batch's count makes the results of
    micro-batches add up to the batch's loss and clip fraction.
    """
    n = float(mask.sum()) if tokens is None else tokens
    n = max(n, 1.0)
    clipped = torch.clamp(values, old_values - clip, old_values + clip)
    unclipped_sq = (values - returns) ** 2
    clipped_sq = (clipped - returns) ** 2
    loss = 0.5 * (torch.max(unclipped_sq, clipped_sq) * mask).sum() / n
    frac = ((clipped_sq > unclipped_sq).float() * mask).sum().detach() / n
    return ValueLoss(loss=loss, clip_frac=frac)
