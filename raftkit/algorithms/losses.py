"""The tensor math of GRPO, as pure functions: advantages, the clipped surrogate, the KL estimator,
loss aggregation, and token log-probs. ``raftkit.algorithms.grpo`` wires them into the training step.

Definitions follow TRL 1.16's ``GRPOTrainer`` (``trl/trainer/grpo_trainer.py``) so results are comparable:
unbiased (Bessel-corrected) standard deviation, ``eps = 1e-4`` added to the std, the k3 KL estimator, and
clip fractions counted only where the clip is active (ratio below the band with A < 0, above with A > 0).

Shapes: ``[n, T]`` tensors hold n sequences' per-token values, right-padded; ``mask`` is 1 for tokens that
count and 0 for padding and for sequences excluded from the loss (dropped or masked truncated ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Scale = Literal["group", "batch", "none"]
LossType = Literal["grpo", "dr_grpo", "dapo"]
SCALES: tuple[str, ...] = ("group", "batch", "none")


# --------------------------------------------------------------------------- advantages


def _nanstd(x: Tensor, dim: int | None = None) -> Tensor:
    """Unbiased std ignoring NaNs (TRL's ``nanstd``); NaN where fewer than two values are present."""
    if dim is None:
        x, dim = x.reshape(-1), 0
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=dim, keepdim=True)
    var = torch.nansum((x - mean) ** 2, dim=dim, keepdim=True) / (count - 1).clamp(min=1)
    var = torch.where(count > 1, var, torch.full_like(var, float("nan")))
    return var.sqrt().squeeze(dim)


def constant_groups(rewards: Tensor) -> Tensor:
    """Bool[b]: groups whose (non-NaN) rewards are all equal, or that hold fewer than two rewards.

    Such a group carries no learning signal under a group baseline: every advantage in it is zero.
    """
    valid = ~torch.isnan(rewards)
    hi = torch.where(valid, rewards, torch.full_like(rewards, -torch.inf)).amax(dim=1)
    lo = torch.where(valid, rewards, torch.full_like(rewards, torch.inf)).amin(dim=1)
    # Equal up to rounding (a few units in the last place): 0.1 + 0.2 and 0.3 are one reward in doubles, and
    # as two they gave advantages of ±1e-13 that kept a signal-free group "non-zero". No wider: isclose's
    # relative tolerance called [1000, 1000.005] or [5e5, 5e5 + 4] constant and threw their signal away.
    ulps = 4 * torch.finfo(rewards.dtype).eps * torch.maximum(hi.abs(), lo.abs())
    return (valid.sum(dim=1) < 2) | ((hi - lo) <= ulps)


def group_advantages(rewards: Tensor, scale: Scale = "group", eps: float = 1e-4) -> Tensor:
    """Group-relative advantages ``A = r - mean(group)``, scaled, for rewards of shape ``[b, k]``.

    - ``group``: divided by the group's std + eps (GRPO).
    - ``batch``: divided by the std of all rewards in the batch + eps (PPO-Lite).
    - ``none``:  not divided (Dr. GRPO: scaling by the std biases towards too-easy/too-hard prompts).

    The std is unbiased (Bessel), as TRL computes it. NaN rewards mark samples outside the group (e.g.
    dropped by a filter): they are left out of the mean and std and get advantage 0. Groups whose rewards
    are all equal get exactly 0 (see :func:`constant_groups`).
    """
    if scale not in SCALES:
        raise ValueError(f"scale_rewards must be one of {', '.join(SCALES)}, got {scale!r}")
    rewards = rewards.to(torch.float64)  # the arithmetic is tiny; doubles keep the hand-checked cases exact
    adv = rewards - torch.nanmean(rewards, dim=1, keepdim=True)
    if scale == "group":
        adv = adv / (_nanstd(rewards, dim=1).unsqueeze(1) + eps)
    elif scale == "batch":
        adv = adv / (_nanstd(rewards) + eps)
    adv = torch.where(constant_groups(rewards).unsqueeze(1), torch.zeros_like(adv), adv)
    return torch.nan_to_num(adv, nan=0.0).to(torch.float32)


# --------------------------------------------------------------------------- per-token terms


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token KL(policy || reference), Schulman's k3 estimator: ``exp(ref - logp) - (ref - logp) - 1``.

    Unbiased for samples drawn from the policy, and never negative.
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1


@dataclass
class Surrogate:
    """The clipped surrogate's per-token loss and where each side of the clip was active."""

    loss: Tensor  # [n, T]
    low_clipped: Tensor  # bool [n, T]: ratio < 1 - eps_low with A < 0 (the clip stopped a decrease)
    high_clipped: Tensor  # bool [n, T]: ratio > 1 + eps_high with A > 0 (the clip stopped an increase)


def clipped_surrogate(logp: Tensor, old_logp: Tensor, advantages: Tensor, eps_low: float,
                      eps_high: float | None = None) -> Surrogate:
    """PPO's clipped objective per token: ``-min(r·A, clip(r, 1-eps_low, 1+eps_high)·A)``, r = exp(logp-old).

    ``advantages`` is ``[n]`` (one per sequence) or ``[n, T]``. ``eps_high=None`` means symmetric clipping;
    a larger ``eps_high`` is DAPO's clip-higher (more room for raising rare tokens).
    """
    eps_high = eps_low if eps_high is None else eps_high
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    loss = -torch.min(ratio * advantages, clipped * advantages)
    return Surrogate(
        loss=loss,
        low_clipped=(ratio < 1 - eps_low) & (advantages < 0),
        high_clipped=(ratio > 1 + eps_high) & (advantages > 0),
    )


@dataclass
class ImportanceWeights:
    """Per-token weights of the surrogate for samples from an exploration proposal, and what they hide."""

    weight: Tensor  # [n, T] min(max(rho, floor), cap) on hinted rows, exactly 1 on the others; no gradient
    log_rho: Tensor  # [n, T] log of the untruncated ratio pi_old / mu on hinted rows, 0 on the others

    @property
    def rho(self) -> Tensor:
        return torch.exp(self.log_rho)


@torch.no_grad()
def importance_weights(old_logp: Tensor, behaviour_logp: Tensor, hinted: Tensor, cap: float = 1.0,
                       floor: float = 0.0) -> ImportanceWeights:
    """Truncated per-token importance weights for samples drawn from a proposal, trained as the policy's.

    A hinted sample was drawn from ``mu = pi_old(. | x + hint)`` but is trained as a completion of ``x``.
    Per token ``rho_t = pi_old(y_t | x, y_<t) / mu(y_t | x + hint, y_<t) = exp(old_logp - behaviour_logp)``
    and the weight is ``w_t = min(max(rho_t, floor), cap)`` (truncated importance sampling; ``floor = 0``
    is plain truncation). Rows where ``hinted`` is False were drawn from the policy itself: their weight is
    exactly 1 and ``behaviour_logp`` is not read there. Both log-probs must be at the sampling temperature.

    >>> w = importance_weights(torch.log(torch.tensor([[0.2, 0.6]])), torch.log(torch.tensor([[0.4, 0.3]])),
    ...                        torch.tensor([True]))
    >>> [round(v, 4) for v in w.rho[0].tolist()], [round(v, 4) for v in w.weight[0].tolist()]
    ([0.5, 2.0], [0.5, 1.0])
    >>> importance_weights(torch.zeros(1, 1), torch.full((1, 1), float("nan")), torch.tensor([True])).weight
    tensor([[1.]])
    """
    if cap <= 0 or not 0 <= floor <= cap:
        raise ValueError(f"need 0 <= floor <= cap and cap > 0, got floor={floor}, cap={cap}")
    rows = hinted.bool().unsqueeze(1)
    # NaN: the sampler reported no log-prob for the token. Its ratio is unknown, so it is taken as 1 (no
    # correction) rather than letting a NaN weight poison the whole update.
    known = rows & ~torch.isnan(behaviour_logp)
    zero = torch.zeros_like(old_logp).float()
    log_rho = torch.where(known, old_logp.float() - behaviour_logp.float(), zero)
    weight = torch.where(rows, torch.exp(log_rho).clamp(min=floor, max=cap), torch.ones_like(log_rho))
    return ImportanceWeights(weight=weight, log_rho=log_rho)


# --------------------------------------------------------------------------- aggregation


@dataclass(frozen=True)
class BatchSize:
    """What the loss normalisers need to know about the whole batch (all micro-batches of one step)."""

    sequences: float  # every sequence of the step, masked ones included (as TRL counts them); a mini-batch
    # of several counts its share of the batch's, which need not be whole
    tokens: int  # unmasked completion tokens in the step
    max_completion_length: int  # the sampler's max_new_tokens


# Each aggregation returns this micro-batch's share of the step's loss: summed over the micro-batches of a
# step it gives the loss over the whole batch, so gradient accumulation is exact whatever the split.


def aggregate_grpo(per_token: Tensor, mask: Tensor, batch: BatchSize) -> Tensor:
    """grpo (DeepSeekMath): mean over each sequence's tokens, then mean over sequences."""
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.sum() / max(batch.sequences, 1)


def aggregate_dr_grpo(per_token: Tensor, mask: Tensor, batch: BatchSize) -> Tensor:
    """dr_grpo (Dr. GRPO): sum over all tokens / (sequences x max_completion_length), a constant."""
    return (per_token * mask).sum() / max(batch.sequences * batch.max_completion_length, 1)


def aggregate_dapo(per_token: Tensor, mask: Tensor, batch: BatchSize) -> Tensor:
    """dapo (DAPO, TRL's default): sum over all tokens / number of unmasked tokens in the batch."""
    return (per_token * mask).sum() / max(batch.tokens, 1)


AGGREGATIONS: dict[str, Callable[[Tensor, Tensor, BatchSize], Tensor]] = {
    "grpo": aggregate_grpo,
    "dr_grpo": aggregate_dr_grpo,
    "dapo": aggregate_dapo,
}


# --------------------------------------------------------------------------- log-probs


def token_logprobs(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / T)[token] for ``logits [..., V]`` and ``tokens [...]``, computed in fp32.

    Uses ``logit[token] - logsumexp(logits)`` so no ``[..., V]`` log-softmax tensor is kept for backward
    beyond what logsumexp itself needs.
    """
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


@torch.no_grad()
def token_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of softmax(logits / T) per position, in nats (a metric: no gradient)."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_sum_count(x: Tensor, mask: Tensor) -> tuple[float, float]:
    """(sum of x over the mask, number of masked-in entries): accumulates a mean over micro-batches."""
    return float((x.float() * mask).sum()), float(mask.sum())
