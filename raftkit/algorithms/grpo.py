"""GRPO: group-relative policy optimisation, as an Algorithm for raftkit's loop.

Per prompt the sampler draws k completions (a group). Each completion's advantage is its reward minus the
group mean (scaled by a std, see ``raftkit.algorithms.losses.group_advantages``); the policy is pushed up on
completions that beat their group and down on those that did not, with PPO's clipped ratio, a k3 KL
penalty towards the frozen starting model, and one of three loss aggregations. The math lives in
``raftkit.algorithms.losses``; this module turns rollouts into tensors and runs the optimiser.

One ``update`` is one batch of b prompts x k completions and ``num_iterations`` (μ) optimiser steps on it;
each step accumulates gradients over micro-batches so it covers the whole batch.

Exploration (``--explore-hint``, off by default): a share of each prompt's k samples is drawn with a hint
appended to the prompt (``explore``) and trained as completions of the original prompt. Those
tokens were not drawn from the policy, so their surrogate is multiplied by a truncated importance weight
``min(π_old(y_t|x, y_<t) / μ(y_t|x+hint, y_<t), cap)`` (``raftkit.algorithms.losses.importance_weights``);
the policy's own samples are untouched. docs/grpo.md states the formula and its bias.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from raftkit.algorithms.base import StepResult
from raftkit.algorithms.explore import hinted_count, resolve_hint, sample_with_hint
from raftkit.algorithms.lm_head import lm_parts
from raftkit.algorithms.losses import (
    AGGREGATIONS,
    SCALES,
    BatchSize,
    clipped_surrogate,
    constant_groups,
    group_advantages,
    importance_weights,
    k3_kl,
    token_entropy,
    token_logprobs,
)
from raftkit.policy import Policy
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams


@dataclass
class GRPOConfig:
    """GRPO's own settings (lr, temperature, max_new_tokens, LoRA, ... are in the common AlignConfig)."""

    beta: float = 0.04
    """KL weight towards the starting model (k3 estimator per token); 0 skips the reference model."""
    epsilon: float = 0.2
    """Clip range of the policy ratio: [1 - epsilon, 1 + epsilon_high]."""
    epsilon_high: float | None = None
    """Upper clip range (DAPO's clip-higher, e.g. 0.28); unset means the same as --epsilon."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """Advantage scaling: divide by the group's reward std, the batch's, or not at all (Dr. GRPO)."""
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "dapo"
    """Loss aggregation: grpo (per-sequence mean, then mean), dr_grpo (sum / (sequences x max_new_tokens)),
    dapo (sum / tokens in the batch; TRL's default)."""
    num_iterations: int = 1
    """Optimiser steps on each batch of samples (μ); above 1 the ratio moves away from 1 and clipping acts."""
    mask_truncated: bool = False
    """Leave completions cut by max_new_tokens out of the loss (DAPO's overlong filtering)."""
    warmup_ratio: float = 0.0
    """Share of the optimiser steps spent warming the learning rate up; it then decays linearly to 0."""
    max_grad_norm: float = 1.0
    """Clip the gradient to this global norm (0: no clipping)."""
    micro_batch_size: int = 32
    """Sequences per forward/backward pass; gradients are accumulated over the whole batch."""
    explore_hint: str = ""
    """Text appended to the prompt for the exploration samples; 'auto' builds it from the rewards
    (length: 'Answer in one short sentence.', emoji: 'Use emojis 😊.'), '' turns exploration off."""
    explore_share: float = 0.5
    """Share of each prompt's k samples drawn with the exploration hint."""
    explore_is_cap: float = 1.0
    """GRPO: cap c of the hinted tokens' importance weight min(π_old(y|x) / μ(y|x+hint), c)."""
    explore_is_floor: float = 0.0
    """GRPO: floor of the hinted tokens' importance weight (0: plain truncation; > 0 biases towards the
    hint's behaviour, see docs/grpo.md)."""

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon}")
        if self.epsilon_high is not None and self.epsilon_high <= 0:
            raise ValueError(f"epsilon_high must be > 0, got {self.epsilon_high}")
        if self.scale_rewards not in SCALES:
            raise ValueError(f"scale_rewards must be one of {', '.join(SCALES)}, got {self.scale_rewards!r}")
        if self.loss_type not in AGGREGATIONS:
            raise ValueError(f"loss_type must be one of {', '.join(AGGREGATIONS)}, got {self.loss_type!r}")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if not 0 <= self.explore_share <= 1:
            raise ValueError(f"explore_share must be between 0 and 1, got {self.explore_share}")
        if not 0 <= self.explore_is_floor <= self.explore_is_cap or self.explore_is_cap <= 0:
            raise ValueError("need 0 <= explore_is_floor <= explore_is_cap and explore_is_cap > 0, got "
                             f"floor {self.explore_is_floor}, cap {self.explore_is_cap}")


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
    behaviour_logp: Tensor  # [m, T] the sampler's log-probs (read only on hinted rows)
    ref_logp: Tensor | None = None  # [m, T]
    old_logp: Tensor | None = None  # [m, T], stored at the first of μ steps
    is_weight: Tensor | None = None  # [m, T] importance weights, fixed at the first of μ steps

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
    # The behaviour log-probs matter only for hinted rows; zeros elsewhere keep the tensor well-formed.
    behaviour = [list(rollouts[i].logprobs) if rollouts[i].hinted else [0.0] * len(c)
                 for i, c in zip(rows, completions, strict=True)]
    mask = (torch.arange(int(lengths.max())).unsqueeze(0) < lengths.unsqueeze(1)).float()
    tensors = (_pad(prompts, pad_id), torch.tensor([len(p) for p in prompts]), torch.tensor(prompt_of),
               _pad(completions, pad_id), mask, advantages[rows], hinted,
               _pad(behaviour, 0.0))
    return _MicroBatch(rows, *(t.to(device) for t in tensors))


def _explore_stats(sums: dict[str, float], log_rho: Tensor, weight: Tensor, mb: _MicroBatch, cfg: GRPOConfig,
                   per_sample: dict[int, dict[str, float]]) -> None:
    """Accumulate the hinted tokens' importance-weight statistics (metrics and per-rollout records)."""
    mask = mb.mask * mb.hinted.unsqueeze(1)
    rho = torch.exp(log_rho)
    sums["hinted_tokens"] += float(mask.sum())
    sums["is_weight"] += float((weight * mask).sum())
    sums["is_truncated"] += float(((rho > cfg.explore_is_cap) * mask).sum())
    sums["is_floored"] += float(((rho < cfg.explore_is_floor) * mask).sum())
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


class GRPO:
    """The GRPO algorithm: on-policy sampling, group advantages, clipped policy-gradient updates."""

    name = "grpo"
    Config = GRPOConfig
    default_lr = 1e-5  # higher made the ratio leave the clip band within one step
    default_prompts = 16

    def __init__(self, policy: Policy, config: GRPOConfig, *, lr: float, total_steps: int, k: int,
                 sampling: SamplingParams | None = None, seed: int = 0, rewards: Sequence[Any] = ()):
        """``total_steps``: the run's iterations (``update`` calls); each makes μ optimiser steps.
        ``rewards``: the configured reward specs, which ``explore_hint='auto'`` builds its hint from."""
        from transformers import get_linear_schedule_with_warmup

        if k < 2:
            raise ValueError(f"GRPO needs k >= 2 completions per prompt to form a group baseline, got k={k}")
        self.policy, self.config, self.k = policy, config, k
        self.sampling = sampling or SamplingParams()
        if config.explore_hint == "auto" and not rewards:
            raise ValueError("explore_hint 'auto' builds the hint from the rewards, but GRPO was given none")
        self.hint = resolve_hint(config.explore_hint, rewards)
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
        optimizer_steps = max(1, total_steps * config.num_iterations)
        self.scheduler = get_linear_schedule_with_warmup(
            self.optimizer, math.ceil(config.warmup_ratio * optimizer_steps), optimizer_steps)
        self.reference = self._load_reference() if config.beta > 0 else None
        self.progress: Callable[[int, int], None] | None = None  # the loop's progress bar: (done, total)

    def _load_reference(self) -> torch.nn.Module | None:
        """The frozen starting model for the KL term: reloaded from its folder (so a resumed run's reference
        is still the base model, not the checkpoint), in the policy's dtype. With LoRA none is loaded: the
        base model is the policy with its adapters switched off."""
        if self.policy.lora_r:
            return None
        from transformers import AutoModelForCausalLM

        ref = AutoModelForCausalLM.from_pretrained(self.policy.path, dtype=torch.float32)
        ref.to(self.policy.device)
        ref.eval().requires_grad_(False)
        return ref

    # ------------------------------------------------------------------ the protocol

    def sample(self, sampler: Any, batch: Batch, iteration: int) -> list[Rollout]:
        """k completions of each prompt from the current weights; with exploration on, ``n_hinted`` of them
        from the prompt + hint (marked ``hinted``, handed on as completions of the original prompt)."""
        if not self.n_hinted:
            return sampler.generate(batch.prompts, self.k, self.sampling)
        sampled = sample_with_hint(sampler, batch, self.k, self.n_hinted, self.hint, self.sampling)
        self.skipped = sampled.skipped
        return sampled.rollouts

    def update(self, batch: Batch, rollouts: list[Rollout], scores: Scores, iteration: int) -> StepResult:
        cfg, timings = self.config, defaultdict(float)
        advantages, groups, zero_groups = self.advantages(rollouts, scores)

        # 1. Which sequences enter the loss: dropped samples, empty completions and (optionally) truncated
        #    ones are masked out. The normalisers count over the whole batch, as TRL's do.
        in_loss = [i for i, r in enumerate(rollouts)
                   if not scores.dropped[i] and r.completion_ids and r.prompt_ids
                   and not (cfg.mask_truncated and r.truncated)]
        n_tokens = sum(len(rollouts[i].completion_ids) for i in in_loss)
        size = BatchSize(len(rollouts), n_tokens, self.max_completion_length)
        # A sequence with zero advantage and no KL term has an identically zero loss: skip its forward.
        trained = [i for i in in_loss if advantages[i] != 0 or cfg.beta > 0]
        trained.sort(key=lambda i: len(rollouts[i].prompt_ids) + len(rollouts[i].completion_ids))
        pad_id = self.policy.tokenizer.pad_token_id or 0
        m, device = cfg.micro_batch_size, self.policy.device
        mbs = [_micro_batch(rollouts, trained[s:s + m], advantages, pad_id, device)
               for s in range(0, len(trained), m)]

        # 2. Reference log-probs, once per batch (the reference never changes).
        if cfg.beta > 0:
            start = time.perf_counter()
            with torch.no_grad():
                for mb in mbs:
                    mb.ref_logp = self._reference_logprobs(mb)
            timings["time/ref_logprobs"] += time.perf_counter() - start

        # 3. μ optimiser steps on the batch. At the first, old log-probs are the current ones detached (the
        #    ratio is exactly 1, no extra forward); later steps reuse those stored ones.
        model, params = self.policy.model, self.policy.trainable_parameters()
        model.train()
        sums: dict[str, float] = defaultdict(float)
        losses, grad_norms, lrs = [], [], []
        per_sample_is: dict[int, dict[str, float]] = {}  # rollout index -> its importance weights' summary
        for step in range(cfg.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for j, mb in enumerate(mbs):
                start = time.perf_counter()
                with self.policy.autocast():
                    logp, entropy = self._logprobs(model, mb, entropy=step == 0)
                if mb.old_logp is None:
                    old = logp.detach()
                    if cfg.num_iterations > 1:
                        mb.old_logp = old
                else:
                    old = mb.old_logp
                sur = clipped_surrogate(logp, old, mb.advantages, cfg.epsilon, cfg.epsilon_high)
                per_token = sur.loss
                if bool(mb.hinted.any()):
                    # Hinted tokens came from μ = π_old(.|x + hint), not π_old(.|x): weight their surrogate by
                    # min(max(π_old/μ, floor), cap), from the old log-probs, so fixed over the μ steps.
                    if mb.is_weight is None:
                        iw = importance_weights(old, mb.behaviour_logp, mb.hinted, cfg.explore_is_cap,
                                                cfg.explore_is_floor)
                        mb.is_weight = iw.weight
                        _explore_stats(sums, iw.log_rho, iw.weight, mb, cfg, per_sample_is)
                    per_token = per_token * mb.is_weight
                if mb.ref_logp is not None:
                    kl = k3_kl(logp, mb.ref_logp)
                    per_token = per_token + cfg.beta * kl
                    sums["kl"] += float((kl.detach() * mb.mask).sum())
                loss = self.aggregate(per_token, mb.mask, size)
                timings["time/forward"] += time.perf_counter() - start
                start = time.perf_counter()
                loss.backward()
                timings["time/backward"] += time.perf_counter() - start
                step_loss += float(loss.detach())
                if self.progress is not None:
                    self.progress(step * len(mbs) + j + 1, cfg.num_iterations * len(mbs))
                sums["tokens"] += float(mb.mask.sum())
                if step > 0:  # at step 0 the ratio is exactly 1: counting it would dilute the fraction
                    sums["clip_tokens"] += float(mb.mask.sum())
                    sums["clip_low"] += float((sur.low_clipped * mb.mask).sum())
                    sums["clip_high"] += float((sur.high_clipped * mb.mask).sum())
                if entropy is not None:
                    sums["entropy"] += float((entropy * mb.mask).sum())
                    sums["entropy_tokens"] += float(mb.mask.sum())
            start = time.perf_counter()
            if params and cfg.max_grad_norm > 0:
                grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)))
            lrs.append(self.scheduler.get_last_lr()[0])
            self.optimizer.step()
            self.scheduler.step()
            timings["time/optimizer"] += time.perf_counter() - start
            losses.append(step_loss)
        self.optimizer.zero_grad(set_to_none=True)  # free the gradients' memory until the next update

        # 4. What happened, for the run directory.
        kept = [advantages[i] for i in range(len(rollouts)) if not scores.dropped[i]]
        kept_t = torch.tensor(kept) if kept else torch.zeros(1)
        tokens = max(sums["tokens"], 1.0)
        clip_tokens = max(sums["clip_tokens"], 1.0)  # the tokens of steps 1..μ-1; none when μ = 1
        metrics: dict[str, float] = {
            "loss": sum(losses) / len(losses),
            "clip_frac_low": sums["clip_low"] / clip_tokens,
            "clip_frac_high": sums["clip_high"] / clip_tokens,
            "clip_frac": (sums["clip_low"] + sums["clip_high"]) / clip_tokens,
            "entropy": sums["entropy"] / max(sums["entropy_tokens"], 1.0),
            "advantage/mean": float(kept_t.mean()),
            "advantage/std": float(kept_t.std()) if len(kept) > 1 else 0.0,
            "zero_adv_groups": zero_groups / max(groups, 1),
            "zero_adv_groups_n": float(zero_groups),
            "completion_tokens": sum(len(r.completion_ids) for r in rollouts) / max(len(rollouts), 1),
            "truncated_share": sum(r.truncated for r in rollouts) / max(len(rollouts), 1),
            "loss_tokens": float(size.tokens),
            "trained_sequences": float(len(trained)),
            "lr": lrs[0] if lrs else 0.0,
            **dict(timings),
        }
        if cfg.beta > 0:
            metrics["kl"] = sums["kl"] / tokens
        if grad_norms:
            metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        hinted = [i for i, r in enumerate(rollouts) if r.hinted]
        if hinted:
            hinted_tokens = max(sums["hinted_tokens"], 1.0)
            metrics.update({
                "explore/hinted_share": len(hinted) / max(len(rollouts), 1),
                "explore/hinted_advantage": float(advantages[hinted].mean()),
                "explore/is_weight": sums["is_weight"] / hinted_tokens,
                "explore/is_truncated": sums["is_truncated"] / hinted_tokens,
                "explore/is_floored": sums["is_floored"] / hinted_tokens,
                "explore/hinted_tokens": sums["hinted_tokens"],
            })
        per_sample = [{"advantage": float(a), **per_sample_is.get(i, {})}
                      for i, a in enumerate(advantages.tolist())]
        return StepResult(metrics=metrics, per_sample=per_sample)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    # ------------------------------------------------------------------ pieces

    def advantages(self, rollouts: list[Rollout], scores: Scores) -> tuple[Tensor, int, int]:
        """Per-rollout advantages from the scores' totals, grouped by prompt.

        Returns (advantages [n], number of groups, number of groups with all-equal rewards). Dropped and
        unscorable samples (``Scores.unscorable``) are left out of their group's statistics and get 0.
        """
        members: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(rollouts):
            members[r.prompt_index].append(i)
        groups = list(members.values())
        if not groups:
            return torch.zeros(0), 0, 0
        width = max(len(g) for g in groups)
        rewards = torch.full((len(groups), width), float("nan"), dtype=torch.float64)
        unscorable = scores.unscorable  # left NaN like dropped samples: no baseline share, advantage 0
        for g, idx in enumerate(groups):
            for j, i in enumerate(idx):
                if not scores.dropped[i] and not unscorable[i]:
                    rewards[g, j] = scores.total[i]
        adv = group_advantages(rewards, self.config.scale_rewards)
        out = torch.zeros(len(rollouts))
        for g, idx in enumerate(groups):
            for j, i in enumerate(idx):
                out[i] = adv[g, j]
        return out, len(groups), int(constant_groups(rewards).sum())

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
