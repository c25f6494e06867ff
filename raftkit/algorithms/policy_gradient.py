"""The policy-gradient update shared by GRPO, Reinforce-Rej and RAFT++: one loss, different advantages.

Each algorithm says, per iteration, which samples enter the loss and with what advantage (``Targets``); this
module turns them into tensors and runs the optimiser: ``num_iterations`` (μ) steps per batch of the clipped
surrogate ``-min(r·A, clip(r, 1-ε, 1+ε_high)·A)`` with r = π_θ/π_old, an optional k3 KL penalty towards
the starting model, one of three loss aggregations, and two importance weights on top:

- **exploration** (hinted samples, raftkit.algorithms.explore): drawn from μ = π(.|x + hint) and trained as
  completions of x; their tokens are weighted by ``min(max(π_old/μ, floor), cap)``
  (``losses.importance_weights``) where the algorithm asks for it;
- **sampler/trainer mismatch** (the policy's own samples): the sampler's log-probs differ slightly from the
  trainer's, so ``--mismatch-correction`` weights or masks by ``π_old/π_sampler`` (``correction``), as TRL
  does.

The math lives in ``losses`` and ``correction`` as pure, hand-tested functions.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor

from raftkit import distributed
from raftkit.algorithms.base import StepResult
from raftkit.algorithms.correction import MODES as CORRECTION_MODES
from raftkit.algorithms.correction import mismatch_correction
from raftkit.algorithms.explore import hinted_count, resolve_hint, sample_with_hint
from raftkit.algorithms.lm_head import lm_parts
from raftkit.algorithms.losses import (
    AGGREGATIONS,
    BatchSize,
    clipped_surrogate,
    importance_weights,
    k3_kl,
    token_entropy,
    token_logprobs,
)
from raftkit.policy import Policy, load_reference
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams


@dataclass
class PolicyGradientConfig:
    """Settings of every policy-gradient algorithm (GRPO, Reinforce-Rej, RAFT++)."""

    beta: float = 0.0
    """KL weight towards the starting model (k3 estimator per token); 0 skips the reference model."""
    epsilon: float = 0.2
    """Clip range of the policy ratio: [1 - epsilon, 1 + epsilon_high]."""
    epsilon_high: float | None = None
    """Upper clip range (DAPO's clip-higher, e.g. 0.28); unset means the same as --epsilon."""
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "dapo"
    """Loss aggregation: grpo (per-sequence mean, then mean), dr_grpo (sum / (sequences x max_new_tokens)),
    dapo (sum / tokens in the batch; TRL's default)."""
    num_iterations: int = 1
    """Passes over each batch of samples (μ); above 1 the ratio moves away from 1 and clipping acts."""
    mini_batches: int = 1
    """Optimiser steps per pass: the batch is split by prompt into this many mini-batches, one step each
    (PPO's mini-batches, TRL's steps_per_generation); an extra forward without gradient gives the later
    mini-batches their π_old."""
    mask_truncated: bool = False
    """Leave completions cut by max_new_tokens out of the loss (DAPO's overlong filtering)."""
    warmup_ratio: float = 0.0
    """Share of the optimiser steps spent warming the learning rate up; it then decays linearly to 0."""
    max_grad_norm: float = 1.0
    """Clip the gradient to this global norm (0: no clipping)."""
    micro_batch_size: int = 8
    """Sequences per forward/backward pass; gradients are accumulated over the whole batch."""
    is_correction: Literal["none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = (
        "token_truncate"
    )
    """Sampler/trainer mismatch correction of the policy's own samples by π_old/π_sampler: truncate the
    ratio at --mismatch-cap or mask (zero) what exceeds it, per token or per sequence; none turns it off."""
    is_cap: float = 3.0
    """Cap of the mismatch ratio (--mismatch-correction)."""
    explore_hint: str = "auto"
    """Text appended to the prompt for the exploration samples; 'auto' builds it from the rewards
    (length: 'Answer in one short sentence.', emoji: 'Use emojis 😊.'), '' turns exploration off."""
    explore_share: float = 0.5
    """Share of each prompt's k samples drawn with the exploration hint (GRPO: the most, see
    --explore-adaptive)."""
    explore_prefill: bool = False
    """Each hinted sample continues the first sentence of one of the prompt's own samples under the hint, so
    the hint adds to the policy's answer instead of replacing it (explore.continue_own)."""
    keep_answers: bool | None = None
    """Where a prompt has accepted answers (the answer column), a sample that contains none is never pushed
    up: GRPO pushes it down for losing the answer and ranks the rewards among the samples that answer;
    RAFT++ never selects it. Unset: on where every reward is a built-in style reward (emoji, length), off
    where a reward of your own decides."""

    def __post_init__(self) -> None:
        if self.beta < 0 or not math.isfinite(self.beta):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta}")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon}")
        if self.epsilon_high is not None and not 0 < self.epsilon_high < math.inf:
            raise ValueError(f"epsilon_high must be > 0, got {self.epsilon_high}")
        if self.loss_type not in AGGREGATIONS:
            raise ValueError(f"loss_type must be one of {', '.join(AGGREGATIONS)}, got {self.loss_type!r}")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.mini_batches < 1:
            raise ValueError(f"mini_batches must be >= 1, got {self.mini_batches}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.is_correction not in CORRECTION_MODES:
            raise ValueError(f"is_correction must be one of {', '.join(CORRECTION_MODES)}, "
                             f"got {self.is_correction!r}")
        if not 0 < self.is_cap < math.inf:
            raise ValueError(f"is_cap must be a positive number, got {self.is_cap}")
        if not 0 <= self.explore_share <= 1:
            raise ValueError(f"explore_share must be between 0 and 1, got {self.explore_share}")


@dataclass
class Targets:
    """What an algorithm asks the shared update to train on, for one batch of rollouts."""

    advantages: Tensor  # [n] one per rollout; rows outside ``in_loss`` are ignored
    in_loss: list[int]  # rollouts that enter the loss (and its token count)
    sequences: int  # the loss normaliser's sequence count (TRL counts every sampled sequence)
    metrics: dict[str, float] = field(default_factory=dict)
    per_sample: dict[int, dict[str, Any]] = field(default_factory=dict)  # merged into rollout records



def as_trained(rollouts: list[Rollout], eos_id: int | None) -> list[Rollout]:
    """The rollouts as every trainer trains them: a sample cut where the model began the next turn
    (finish_reason "truncated", the self-dialogue cut) is a finished answer, so it ends in EOS, as SFT,
    RAFT and DPO train it (``sft.make_example``); the EOS has no sampler log-prob (NaN: no correction). Such
    a sample is not cut off (``Rollout.truncated`` is the length limit's), so --truncated-neutral and
    --mask-truncated leave it alone. Every other rollout is returned as it is.

    >>> r = Rollout(0, "p", "Paris.", [7, 8], [-0.5, -0.25], finish_reason="truncated")
    >>> t = as_trained([r], eos_id=2)[0]
    >>> t.completion_ids, t.logprobs[:2], r.completion_ids
    ([7, 8, 2], [-0.5, -0.25], [7, 8])
    """
    out = []
    for r in rollouts:
        ids = r.completion_ids
        if r.finish_reason == "truncated" and eos_id is not None and (not ids or ids[-1] != eos_id):
            logprobs = [*r.logprobs, math.nan] if len(r.logprobs) == len(ids) else list(r.logprobs)
            r = replace(r, completion_ids=[*ids, eos_id], logprobs=logprobs)
        out.append(r)
    return out


@dataclass
class _MicroBatch:
    """Sequences as tensors: each distinct prompt once, the completions that continue it, right-padded."""

    rows: list[int]  # indices into the iteration's rollouts
    prompts: Tensor  # [u, P] the distinct prompts of these sequences
    prompt_len: Tensor  # [u]
    prompt_of: Tensor  # [m] which prompt each sequence continues
    completions: Tensor  # [m, T]
    mask: Tensor  # [m, T] 1 on completion tokens, 0 on padding
    advantages: Tensor  # [m]
    hinted: Tensor  # bool [m]: drawn from the exploration proposal (prompt + hint)
    behaviour_logp: Tensor  # [m, T] the sampler's log-probs (NaN where it gave none)
    ref_logp: Tensor | None = None  # [m, T]
    old_logp: Tensor | None = None  # [m, T], stored at the first of μ steps
    weight: Tensor | None = None  # [m, T] importance weights of the loss, fixed at the first of μ steps

    @property
    def tokens(self) -> tuple[Tensor, Tensor]:
        """(row, index) of every completion token."""
        return self.mask.nonzero(as_tuple=True)


def _pad(seqs: list[list[int]] | list[list[float]], pad: float) -> Tensor:
    width = max(len(s) for s in seqs)
    rows = [list(s) + [pad] * (width - len(s)) for s in seqs]
    return torch.tensor(rows, dtype=torch.long if isinstance(pad, int) else torch.float32)


def _micro_batch(rollouts: list[Rollout], rows: list[int], advantages: Tensor, pad_id: int,
                 device: torch.device) -> _MicroBatch:
    distinct: dict[tuple[int, ...], int] = {}
    prompt_of = [distinct.setdefault(tuple(rollouts[i].prompt_ids), len(distinct)) for i in rows]
    prompts = [list(p) for p in distinct]
    completions = [list(rollouts[i].completion_ids) for i in rows]
    lengths = torch.tensor([len(c) for c in completions])
    hinted = torch.tensor([rollouts[i].hinted for i in rows], dtype=torch.bool)
    # A sampler that reports no log-probs gives NaN: the mismatch correction then leaves the token alone.
    behaviour = [list(rollouts[i].logprobs) if len(rollouts[i].logprobs) == len(c) else [math.nan] * len(c)
                 for i, c in zip(rows, completions, strict=True)]
    mask = (torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)).float()
    tensors = (_pad(prompts, pad_id), torch.tensor([len(p) for p in prompts]), torch.tensor(prompt_of),
               _pad(completions, pad_id), mask, advantages[rows], hinted,
               _pad(behaviour, 0.0))
    return _MicroBatch(rows, *(t.to(device) for t in tensors))


def _explore_stats(sums: dict[str, float], log_rho: Tensor, weight: Tensor, mb: _MicroBatch, cap: float,
                   floor: float, per_sample: dict[int, dict[str, float]]) -> None:
    """Accumulate the hinted tokens' importance-weight statistics (metrics and per-rollout records)."""
    mask = mb.mask * mb.hinted.unsqueeze(1)
    rho = torch.exp(log_rho)
    sums["hinted_tokens"] += float(mask.sum())
    sums["is_weight"] += float((weight * mask).sum())
    sums["is_truncated"] += float(((rho > cap) * mask).sum())
    sums["is_floored"] += float(((rho < floor) * mask).sum())
    for j in mb.hinted.nonzero().flatten().tolist():
        on = mb.mask[j].bool()
        if on.any():
            per_sample[mb.rows[j]] = {
                "is_weight": float(weight[j][on].mean()),
                "is_weight_min": float(weight[j][on].min()),
                "log_rho": float(log_rho[j][on].sum()),  # the whole sequence's log importance ratio
            }


def _completion_hidden(backbone: torch.nn.Module, mb: _MicroBatch, share_prompts: bool = True) -> Tensor:
    """Hidden states [m, T, H] where [i, t] is the state that predicts completion token t of sequence i.

    With ``share_prompts`` each distinct prompt goes through the model once and its keys/values are
    handed to all k completions that continue it (autograd sums their gradients back into the prompt), so
    a group of k costs P + k·T tokens instead of k·(P + T). Gradient checkpointing turns the cache off in
    training, so it falls back to full sequences.
    """
    m, width = mb.completions.shape
    p_len = mb.prompt_len[mb.prompt_of]  # [m]
    if share_prompts:
        out = backbone(input_ids=mb.prompts, use_cache=True)
        cache = out.past_key_values
        cache.batch_select_indices(mb.prompt_of)  # one copy of the prompt's keys/values per completion
        p_width = mb.prompts.shape[1]
        steps = torch.arange(width, device=p_len.device)
        # The padded prompt tail is masked out; positions continue from each prompt's own length, as sampled.
        attention = torch.cat([torch.arange(p_width, device=p_len.device) < p_len[:, None],
                               torch.ones(m, width, dtype=torch.bool, device=p_len.device)], dim=1).long()
        after = backbone(input_ids=mb.completions, attention_mask=attention,
                         position_ids=p_len[:, None] + steps, past_key_values=cache, use_cache=True)
        after = after.last_hidden_state
        first = out.last_hidden_state[mb.prompt_of, p_len - 1]  # the prompt's last state predicts token 0
        return torch.cat([first[:, None], after[:, :-1]], dim=1)
    # Full sequences, right-padded: under causal attention no real token sees a pad, so no mask is needed.
    seqs = torch.full((m, int(p_len.max()) + width), 0, dtype=torch.long, device=p_len.device)
    for i in range(m):
        p = int(p_len[i])
        seqs[i, :p] = mb.prompts[mb.prompt_of[i], :p]
        seqs[i, p : p + width] = mb.completions[i]
    hidden = backbone(input_ids=seqs, use_cache=False).last_hidden_state
    at = (p_len - 1)[:, None] + torch.arange(width, device=p_len.device)
    return hidden.gather(1, at[:, :, None].expand(-1, -1, hidden.shape[-1]))



class PolicyGradient:
    """Shared machinery of the policy-gradient algorithms; a subclass defines ``targets`` (and its name,
    ``Config``, ``default_lr`` and ``default_prompts``)."""

    name = "policy_gradient"

    def proposal_bounds(self) -> tuple[float, float] | None:
        """(cap, floor) of the hinted tokens' importance weight min(max(π_old/μ, floor), cap), or None to
        train hinted samples as the policy's own (RAFT++ imitates them, as RAFT does). The bounds are
        settings of the subclass's own config (GRPO's ``explore_is_cap`` and ``explore_is_floor``)."""
        return None

    def __init__(self, policy: Policy, config: PolicyGradientConfig, *, lr: float, total_steps: int, k: int,
                 sampling: SamplingParams | None = None, seed: int = 0, rewards: Sequence[Any] = ()):
        """``total_steps``: the run's iterations (``update`` calls); each makes μ × mini_batches optimiser
        steps.
        ``rewards``: the configured reward specs, which ``explore_hint='auto'`` builds its hint from."""
        from transformers import get_linear_schedule_with_warmup

        self.policy, self.config, self.k, self.seed = policy, config, k, seed
        self.sampling = sampling or SamplingParams()
        # 'auto' with no rewards (a bare API call) has nothing to build a hint from: no exploration.
        auto_without_rewards = config.explore_hint == "auto" and not rewards
        self.hint = "" if auto_without_rewards else resolve_hint(config.explore_hint, rewards)
        self.n_hinted = hinted_count(k, config.explore_share) if self.hint else 0
        self.skipped: list[int] = []
        # Log-probs are taken under the distribution the sampler draws from (logits / T), as TRL does, so
        # the sampled tokens are on-policy for the objective being optimised.
        self.temperature = self.sampling.temperature or 1.0
        self.max_completion_length = self.sampling.longest
        self.aggregate = AGGREGATIONS[config.loss_type]
        params = policy.trainable_parameters()
        try:  # the fused CPU/GPU AdamW is several times faster than the per-tensor loop
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
        except (RuntimeError, TypeError):
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        optimizer_steps = max(1, total_steps * config.num_iterations * config.mini_batches)
        # The warm-up's first step is at lr 0; it never takes every step, or a one-step run would not move.
        warmup = min(math.ceil(config.warmup_ratio * optimizer_steps), optimizer_steps - 1)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, warmup, optimizer_steps)
        self.reference = self._load_reference() if config.beta > 0 else None
        self.progress: Callable[[int, int], None] | None = None  # the loop's progress bar: (done, total)

    def _load_reference(self) -> torch.nn.Module | None:
        """The frozen starting model for the KL term, in the policy's own dtype (``policy.load_reference``);
        None with LoRA: the base model is the policy with its adapters switched off."""
        return load_reference(self.policy)

    # ------------------------------------------------------------------ what a subclass defines

    def targets(self, batch: Batch, rollouts: list[Rollout], scores: Scores) -> Targets:
        """Advantages and the samples that enter the loss."""
        raise NotImplementedError

    def trainable(self, rollouts: list[Rollout], scores: Scores) -> list[int]:
        """Samples a loss can use at all: not dropped, non-empty, and not truncated under --mask-truncated."""
        cfg = self.config
        return [i for i, r in enumerate(rollouts)
                if not scores.dropped[i] and r.completion_ids and r.prompt_ids
                and not (cfg.mask_truncated and r.truncated)]

    # ------------------------------------------------------------------ the protocol

    def sample(self, sampler: Any, batch: Batch, iteration: int) -> list[Rollout]:
        """k completions of each prompt from the current weights; with exploration on, ``n_hinted`` of them
        from the prompt + hint (marked ``hinted``, handed on as completions of the original prompt)."""
        if not self.n_hinted:
            self.skipped = []
            return sampler.generate(batch.prompts, self.k, self.sampling)
        sampled = sample_with_hint(sampler, batch, self.k, self.n_hinted, self.hint, self.sampling,
                                   self.config.explore_prefill)
        self.skipped = sampled.skipped
        return sampled.rollouts

    def update(self, batch: Batch, rollouts: list[Rollout], scores: Scores, iteration: int) -> StepResult:
        cfg, timings = self.config, defaultdict(float)
        target = self.targets(batch, rollouts, scores)
        advantages = target.advantages
        sums: dict[str, float] = defaultdict(float)
        per_sample: dict[int, dict[str, Any]] = defaultdict(dict)
        self._extremes: dict[str, float] = {}
        steps = self._mini_batches(batch, as_trained(rollouts, self.policy.tokenizer.eos_token_id), target)
        self._prepare(steps, timings, sums, per_sample)

        # μ passes over the batch, one optimiser step per mini-batch. At its first forward a micro-batch
        # without stored old log-probs takes the current ones, detached (the ratio is exactly 1, no extra
        # forward); the later mini-batches got theirs in _prepare, before the first step moved the policy.
        model, params = self.policy.model, self.policy.trainable_parameters()
        model.train()
        losses, grad_norms, lrs = [], [], []
        total, done = cfg.num_iterations * sum(len(mbs) for _, mbs in steps), 0
        for epoch in range(cfg.num_iterations):
            for size, mbs in steps:
                self.optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for mb in mbs:
                    step_loss += self._backward(mb, size, epoch == 0, sums, per_sample, timings)
                    done += 1
                    if self.progress is not None:
                        self.progress(done, total)
                start = time.perf_counter()
                distributed.average_gradients(params)  # before clipping: the norm is the global one
                if params and cfg.max_grad_norm > 0:
                    grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)))
                lrs.append(self.scheduler.get_last_lr()[0])
                self.optimizer.step()
                self.scheduler.step()
                timings["time/optimizer"] += time.perf_counter() - start
                losses.append(step_loss)
        self.optimizer.zero_grad(set_to_none=True)  # free the gradients' memory until the next update

        losses = list(distributed.all_reduce_sum(*losses))  # each rank's loss is its share of the batch's
        trained = [row for _, mbs in steps for mb in mbs for row in mb.rows]
        size = BatchSize(sum(s.sequences for s, _ in steps), sum(s.tokens for s, _ in steps),
                         self.max_completion_length)
        metrics = self._metrics(rollouts, scores, target, trained, size, sums, losses, grad_norms, lrs)
        metrics.update(timings)
        for i, extra in target.per_sample.items():
            per_sample[i].update(extra)
        records = [{"advantage": float(a), **per_sample.get(i, {})}
                   for i, a in enumerate(advantages.tolist())]
        return StepResult(metrics=metrics, per_sample=records)

    def _backward(self, mb: _MicroBatch, size: BatchSize, first_pass: bool, sums: dict[str, float],
                  per_sample: dict[int, dict[str, Any]], timings: dict[str, float]) -> float:
        """One micro-batch's forward and backward (gradients accumulate); returns its share of the loss."""
        cfg, start = self.config, time.perf_counter()
        with self.policy.autocast():
            logp, entropy = self._logprobs(self.policy.model, mb, entropy=first_pass)
        fresh = mb.old_logp is None  # its ratio is exactly 1: not counted in the clip fractions
        if fresh:
            mb.old_logp = logp.detach()
            mb.weight = self._weights(mb, sums, per_sample)  # fixed over the μ passes
        sur = clipped_surrogate(logp, mb.old_logp, mb.advantages, cfg.epsilon, cfg.epsilon_high)
        per_token = sur.loss * mb.weight
        if mb.ref_logp is not None:
            kl = k3_kl(logp, mb.ref_logp)
            per_token = per_token + cfg.beta * kl
            sums["kl"] += float((kl.detach() * mb.mask).sum())
        loss = self.aggregate(per_token, mb.mask, size)
        timings["time/forward"] += time.perf_counter() - start
        start = time.perf_counter()
        loss.backward()
        timings["time/backward"] += time.perf_counter() - start
        sums["tokens"] += float(mb.mask.sum())
        if not fresh:
            sums["clip_tokens"] += float(mb.mask.sum())
            sums["clip_low"] += float((sur.low_clipped * mb.mask).sum())
            sums["clip_high"] += float((sur.high_clipped * mb.mask).sum())
        if entropy is not None:
            sums["entropy"] += float((entropy * mb.mask).sum())
            sums["entropy_tokens"] += float(mb.mask.sum())
        return float(loss.detach())

    def _mini_batches(self, batch: Batch, rollouts: list[Rollout], target: Targets
                      ) -> list[tuple[BatchSize, list[_MicroBatch]]]:
        """The optimiser steps of one pass: the batch's prompts split into ``mini_batches`` contiguous
        shares, each with its loss normalisers and its micro-batches.

        A mini-batch's normalisers are its share of the batch's: its own loss tokens, and the sequence
        count in proportion to its sequences in the loss (with one mini-batch, exactly the batch's).
        """
        cfg = self.config
        # The shares are of the whole batch's prompts (every rank holds an equal, contiguous slice of them),
        # so several processes take the steps one process would, and each rank takes all n of them.
        b = len(batch.prompts)
        whole, first = b * distributed.world(), b * distributed.rank()
        n = max(1, min(cfg.mini_batches, whole))
        parts: list[list[int]] = [[] for _ in range(n)]
        for i in target.in_loss:
            parts[(first + rollouts[i].prompt_index) * n // whole].append(i)
        in_loss = max(len(target.in_loss), 1)
        counts = [v for rows in parts for v in (target.sequences * len(rows) / in_loss,
                                               sum(len(rollouts[i].completion_ids) for i in rows))]
        # Several processes: the normalisers are the whole mini-batch's, so summed gradients are its gradient.
        counts = distributed.all_reduce_sum(*counts)
        pad_id = self.policy.tokenizer.pad_token_id or 0
        m, device, advantages = cfg.micro_batch_size, self.policy.device, target.advantages
        steps = []
        for j, rows in enumerate(parts):
            # A sequence with zero advantage and no KL term has an identically zero loss: skip its forward.
            trained = sorted((i for i in rows if advantages[i] != 0 or cfg.beta > 0),
                             key=lambda i: len(rollouts[i].prompt_ids) + len(rollouts[i].completion_ids))
            size = BatchSize(counts[2 * j], int(counts[2 * j + 1]), self.max_completion_length)
            steps.append((size, [_micro_batch(rollouts, trained[s:s + m], advantages, pad_id, device)
                                 for s in range(0, len(trained), m)]))
        return steps

    def _prepare(self, steps: list[tuple[BatchSize, list[_MicroBatch]]], timings: dict[str, float],
                 sums: dict[str, float], per_sample: dict[int, dict[str, Any]]) -> None:
        """Forwards without gradient before the first step: the reference's log-probs (once per batch: the
        reference never changes) and, for the mini-batches after the first, π_old, which must be the policy
        that sampled them and not the one the earlier steps of this pass have moved."""
        if self.config.beta > 0:
            start = time.perf_counter()
            with torch.no_grad():
                for _, mbs in steps:
                    for mb in mbs:
                        mb.ref_logp = self._reference_logprobs(mb)
            timings["time/ref_logprobs"] += time.perf_counter() - start
        if len(steps) > 1:
            start = time.perf_counter()
            self.policy.model.train()  # as in the training forwards
            with torch.no_grad(), self.policy.autocast():
                for _, mbs in steps[1:]:
                    for mb in mbs:
                        mb.old_logp = self._logprobs(self.policy.model, mb)[0]
                        mb.weight = self._weights(mb, sums, per_sample)
            timings["time/old_logprobs"] += time.perf_counter() - start

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    # ------------------------------------------------------------------ pieces

    def _weights(self, mb: _MicroBatch, sums: dict[str, float],
                 per_sample: dict[int, dict[str, Any]]) -> Tensor:
        """Per-token loss weights from the old log-probs: the exploration proposal's importance weights on
        hinted rows (where the algorithm uses them), the mismatch correction on the policy's own samples."""
        cfg, weight = self.config, torch.ones_like(mb.old_logp)
        own = ~mb.hinted
        if bool(own.any()) and cfg.is_correction != "none":
            c = mismatch_correction(mb.old_logp, mb.behaviour_logp, mb.mask, cfg.is_correction, cfg.is_cap,
                                    rows=own)
            weight = weight * c.weight
            on = mb.mask * own.unsqueeze(1)
            n = float(on.sum())
            sums["mismatch/tokens"] += n
            for key, value in c.stats(mb.mask).items():
                if key.endswith(("_max", "_min")):  # extremes over the micro-batches, not sums
                    pick = max if key.endswith("_max") else min
                    self._extremes[key] = pick(self._extremes.get(key, value), value)
                else:  # token-weighted, so the iteration's figure is over all its tokens
                    sums[key] += value * n
        bounds = self.proposal_bounds()
        if bounds is not None and bool(mb.hinted.any()):
            cap, floor = bounds
            iw = importance_weights(mb.old_logp, mb.behaviour_logp, mb.hinted, cap, floor)
            weight = torch.where(mb.hinted.unsqueeze(1), iw.weight, weight)
            _explore_stats(sums, iw.log_rho, iw.weight, mb, cap, floor, per_sample)
        return weight

    def _metrics(self, rollouts: list[Rollout], scores: Scores, target: Targets, trained: list[int],
                 size: BatchSize, sums: dict[str, float], losses: list[float], grad_norms: list[float],
                 lrs: list[float]) -> dict[str, float]:
        cfg, advantages = self.config, target.advantages
        in_loss = target.in_loss
        kept_t = advantages[in_loss] if in_loss else torch.zeros(1)
        clip_tokens = max(sums["clip_tokens"], 1.0)  # the tokens of steps 1..μ-1; none when μ = 1
        metrics: dict[str, float] = {
            "loss": sum(losses) / len(losses),
            "clip_ratio/low_mean": sums["clip_low"] / clip_tokens,
            "clip_ratio/high_mean": sums["clip_high"] / clip_tokens,
            "clip_ratio/region_mean": (sums["clip_low"] + sums["clip_high"]) / clip_tokens,
            "entropy": sums["entropy"] / max(sums["entropy_tokens"], 1.0),
            "advantage/mean": float(kept_t.mean()),
            "advantage/std": float(kept_t.std()) if len(in_loss) > 1 else 0.0,
            "loss_tokens": float(size.tokens),
            "trained_sequences": float(len(trained)),
            "learning_rate": lrs[0] if lrs else 0.0,
            **target.metrics,
        }
        if cfg.beta > 0:
            metrics["kl"] = sums["kl"] / max(sums["tokens"], 1.0)
        if grad_norms:
            metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        if sums["mismatch/tokens"]:
            n = sums["mismatch/tokens"]
            metrics.update({k: v / n for k, v in sums.items()
                            if k.startswith("mismatch/") and k != "mismatch/tokens"})
            metrics.update(self._extremes)
        hinted = [i for i, r in enumerate(rollouts) if r.hinted]
        metrics["explore/hinted_share"] = len(hinted) / max(len(rollouts), 1)
        if hinted:
            metrics["explore/hinted_advantage"] = float(advantages[hinted].mean())
        if sums["hinted_tokens"]:
            hinted_tokens = sums["hinted_tokens"]
            metrics.update({
                "explore/is_weight": sums["is_weight"] / hinted_tokens,
                "explore/is_truncated": sums["is_truncated"] / hinted_tokens,
                "explore/is_floored": sums["is_floored"] / hinted_tokens,
                "explore/hinted_tokens": hinted_tokens,
            })
        return metrics

    def _logprobs(self, model: torch.nn.Module, mb: _MicroBatch, entropy: bool = False
                  ) -> tuple[Tensor, Tensor | None]:
        """Token log-probs [m, T] of the completion tokens (0 on padding), and their entropies if asked.

        The LM head runs only at the positions that predict completion tokens: the [tokens, vocab] logits
        exist for those alone, never for prompts or padding.
        """
        backbone, head = lm_parts(model)
        checkpointing = torch.is_grad_enabled() and getattr(model, "is_gradient_checkpointing", False)
        hidden = _completion_hidden(backbone, mb, share_prompts=not checkpointing)
        rows, ts = mb.tokens
        logits = head(hidden[rows, ts])
        flat = token_logprobs(logits, mb.completions[rows, ts], self.temperature)
        logp = flat.new_zeros(mb.mask.shape).index_put((rows, ts), flat)
        ent = None
        if entropy:
            ent = flat.new_zeros(mb.mask.shape).index_put((rows, ts), token_entropy(logits, self.temperature))
        return logp, ent

    def _reference_logprobs(self, mb: _MicroBatch) -> Tensor:
        with self.policy.autocast():
            if self.reference is not None:
                return self._logprobs(self.reference, mb)[0]
            with self.policy.model.disable_adapter():  # LoRA: the base model is the reference
                return self._logprobs(self.policy.model, mb)[0]
