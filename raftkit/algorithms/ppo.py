"""PPO with a learned value function, as an Algorithm for raftkit's loop (TRL's ``PPOTrainer`` semantics).

Per prompt the sampler draws k completions from the current weights (no hints). Each completion is an
episode whose per-token reward is ``−kl_coef·(log π − log π_ref)`` with the sequence's score added on its
last token; a value head (a ``Linear(hidden, 1)`` on the policy's last hidden state) estimates the return
at each token, GAE turns rewards and values into per-token advantages (whitened over the batch), and
``num_iterations`` epochs over the batch minimise the clipped policy surrogate plus ``vf_coef`` times the
clipped value loss. The math lives in ``ppo_math`` (and ``losses.clipped_surrogate``) as pure, hand-tested
functions; docs/algorithms.md gives the formulas.

Departures from TRL, each for a reason: the value head shares the policy's body (TRL trains a separate
value model initialised from the reward model, and raftkit's rewards are functions, not models); each epoch
is one optimiser step over the whole batch with gradient accumulation (TRL's ``num_mini_batches=1``), the
losses being token means over the whole batch so the micro-batch split does not change them.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from raftkit import distributed
from raftkit.algorithms.base import StepResult
from raftkit.algorithms.lm_head import lm_parts
from raftkit.algorithms.losses import clipped_surrogate, token_logprobs
from raftkit.algorithms.policy_gradient import (
    PolicyGradient,
    _completion_hidden,
    _micro_batch,
    _MicroBatch,
    as_trained,
)
from raftkit.algorithms.ppo_math import clipped_value_loss, gae, kl_penalised_rewards, masked_whiten
from raftkit.policy import Policy
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams


@dataclass
class PPOConfig:
    """PPO's own settings (lr, k, temperature, max_new_tokens, LoRA, ... are in the common AlignConfig)."""

    kl_coef: float = 0.05
    """PPO: weight of the per-token KL penalty −kl_coef·(log π − log π_ref) in the reward (TRL's kl_coef);
    0 skips the reference model."""
    gamma: float = 1.0
    """PPO: discount of the per-token rewards in GAE."""
    lam: float = 0.95
    """PPO: GAE's λ (1: Monte-Carlo returns minus the value, 0: one-step TD errors)."""
    epsilon: float = 0.2
    """Clip range of the policy ratio: [1 - epsilon, 1 + epsilon] (TRL's cliprange)."""
    vf_coef: float = 0.1
    """PPO: weight of the value loss in the total loss."""
    cliprange_value: float = 0.2
    """PPO: the value prediction may move at most this far from its value at sampling time before its
    loss term is clipped."""
    whiten_advantages: bool = True
    """PPO: whiten the GAE advantages over the batch's tokens (mean 0, std 1), as TRL does."""
    num_iterations: int = 2
    """Optimiser steps on each batch of samples (μ; PPO's epochs, one step each); above 1 the ratio moves
    away from 1 and clipping acts."""
    micro_batch_size: int = 16
    """Sequences per forward/backward pass; gradients are accumulated over the whole batch."""
    max_grad_norm: float = 1.0
    """Clip the gradient to this global norm (0: no clipping)."""
    explore_hint: str = ""
    """Text appended to the prompt for the exploration samples; '' turns exploration off, the only value
    PPO accepts (its value targets assume on-policy samples)."""

    def __post_init__(self) -> None:
        if self.kl_coef < 0 or not math.isfinite(self.kl_coef):
            raise ValueError(f"kl_coef must be a finite number >= 0, got {self.kl_coef}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0 <= self.lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon}")
        if self.vf_coef < 0 or not math.isfinite(self.vf_coef):
            raise ValueError(f"vf_coef must be a finite number >= 0, got {self.vf_coef}")
        if not 0 < self.cliprange_value < math.inf:
            raise ValueError(f"cliprange_value must be > 0, got {self.cliprange_value}")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.explore_hint:
            # Hinted samples are off-policy: the value targets and GAE would need importance weights.
            raise ValueError("ppo samples on-policy only: explore_hint must be '' "
                             f"(got {self.explore_hint!r}); use --algo grpo or raft to explore")


class PPO:
    """PPO: per-token KL-penalised rewards, GAE with a value head, clipped policy and value losses."""

    name = "ppo"
    Config = PPOConfig
    default_lr = 1e-5  # as GRPO: a policy-gradient step whose ratio must stay inside the clip band
    default_prompts = 16

    def __init__(self, policy: Policy, config: PPOConfig, *, lr: float, total_steps: int, k: int,
                 sampling: SamplingParams | None = None, seed: int = 0, rewards: Sequence[Any] = ()):
        """``total_steps``: the run's iterations (``update`` calls); each makes μ optimiser steps.
        ``rewards``: unused (PPO samples without hints)."""
        from transformers import get_linear_schedule_with_warmup

        self.policy, self.config, self.k, self.seed = policy, config, k, seed
        self.sampling = sampling or SamplingParams()
        # Log-probs under the distribution the sampler draws from (logits / T), as TRL's PPO does.
        self.temperature = self.sampling.temperature or 1.0
        hidden = policy.model.config.get_text_config().hidden_size
        self.value_head = torch.nn.Linear(hidden, 1).to(policy.device, torch.float32)
        # Zero start (as lm-human-preferences): every value is 0 at first, the same on every rank, and
        # creating the head draws nothing from the RNG, so runs stay reproducible with or without PPO.
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        params = [*policy.trainable_parameters(), *self.value_head.parameters()]
        try:  # the fused AdamW is several times faster than the per-tensor loop
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
        except (RuntimeError, TypeError):
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        self.scheduler = get_linear_schedule_with_warmup(  # linear decay to 0, as TRL's default
            self.optimizer, 0, max(1, total_steps * config.num_iterations))
        # The same frozen starting model as GRPO's (LoRA: the policy with its adapters off).
        self.reference = PolicyGradient._load_reference(self) if config.kl_coef > 0 else None
        self.progress: Callable[[int, int], None] | None = None  # the loop's progress bar: (done, total)

    # ------------------------------------------------------------------ the protocol

    def sample(self, sampler: Any, batch: Batch, iteration: int) -> list[Rollout]:
        """k completions of each prompt from the current weights (on-policy, no hints)."""
        return sampler.generate(batch.prompts, self.k, self.sampling)

    def trainable(self, rollouts: list[Rollout], scores: Scores) -> list[int]:
        """Samples that enter the loss: not dropped, scored by some reward (an unscored one has no return to
        learn), with prompt and completion tokens."""
        unscorable = scores.unscorable
        return [i for i, r in enumerate(rollouts)
                if not scores.dropped[i] and not unscorable[i] and r.completion_ids and r.prompt_ids]

    def update(self, batch: Batch, rollouts: list[Rollout], scores: Scores, iteration: int) -> StepResult:
        cfg, timings = self.config, defaultdict(float)
        rollouts = as_trained(rollouts, self.policy.tokenizer.eos_token_id)  # a self-dialogue cut ends in EOS
        trained = self.trainable(rollouts, scores)
        trained.sort(key=lambda i: len(rollouts[i].prompt_ids) + len(rollouts[i].completion_ids))
        pad_id = self.policy.tokenizer.pad_token_id or 0
        m, device = cfg.micro_batch_size, self.policy.device
        zeros = torch.zeros(len(rollouts))  # _micro_batch wants per-sequence advantages; PPO's are per token
        mbs = [_micro_batch(rollouts, trained[s:s + m], zeros, pad_id, device)
               for s in range(0, len(trained), m)]
        (n_tokens,) = distributed.all_reduce_sum(sum(len(rollouts[i].completion_ids) for i in trained))
        n_tokens = max(float(n_tokens), 1.0)
        model = self.policy.model
        model.train()

        # 1. The rollout pass (no gradient): old log-probs, values and reference log-probs of every token.
        start = time.perf_counter()
        old = self._rollout_pass(mbs, rollouts, scores)
        timings["time/rollout_pass"] += time.perf_counter() - start

        # 2. μ epochs over the batch, one optimiser step each.
        params = [*self.policy.trainable_parameters(), *self.value_head.parameters()]
        sums: dict[str, float] = defaultdict(float)
        grad_norms, lrs = [], []
        for step in range(cfg.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            for j, (mb, o) in enumerate(zip(mbs, old, strict=True)):
                start = time.perf_counter()
                logp, values = self._forward(model, mb)
                sur = clipped_surrogate(logp, o["logp"], o["advantages"], cfg.epsilon)
                policy_loss = (sur.loss * mb.mask).sum() / n_tokens
                vl = clipped_value_loss(values, o["values"], o["returns"], mb.mask, cfg.cliprange_value,
                                        tokens=n_tokens)
                loss = policy_loss + cfg.vf_coef * vl.loss
                timings["time/forward"] += time.perf_counter() - start
                start = time.perf_counter()
                loss.backward()
                timings["time/backward"] += time.perf_counter() - start
                sums["loss"] += float(loss.detach())
                sums["policy_loss"] += float(policy_loss.detach())
                sums["value_loss"] += float(vl.loss.detach())
                if step > 0:  # at step 0 the ratio is exactly 1 and v = v_old: nothing can be clipped
                    sums["clip_tokens"] += float(mb.mask.sum())
                    sums["clip"] += float(((sur.low_clipped | sur.high_clipped) * mb.mask).sum())
                    sums["value_clip"] += float(vl.clip_frac) * n_tokens
                if self.progress is not None:
                    self.progress(step * len(mbs) + j + 1, cfg.num_iterations * len(mbs))
            start = time.perf_counter()
            distributed.average_gradients(params)  # before clipping: the norm is the global one
            if cfg.max_grad_norm > 0:
                grad_norms.append(float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)))
            lrs.append(self.scheduler.get_last_lr()[0])
            self.optimizer.step()
            self.scheduler.step()
            timings["time/optimizer"] += time.perf_counter() - start
        self.optimizer.zero_grad(set_to_none=True)  # free the gradients' memory until the next update
        # Each rank's losses are its share of the batch's (global normalisers): their sum is the batch's.
        sums["loss"], sums["policy_loss"], sums["value_loss"] = distributed.all_reduce_sum(
            sums["loss"], sums["policy_loss"], sums["value_loss"])

        metrics = self._metrics(rollouts, trained, old, mbs, sums, grad_norms, lrs)
        metrics.update(timings)
        records: list[dict[str, Any]] = [{"advantage": 0.0} for _ in rollouts]
        for mb, o in zip(mbs, old, strict=True):
            for j, i in enumerate(mb.rows):
                on = mb.mask[j].bool()
                records[i] = {"advantage": float(o["advantages"][j][on].mean()),
                              "value": float(o["values"][j, 0])}
        return StepResult(metrics=metrics, per_sample=records)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "value_head": {k: v.detach().cpu() for k, v in self.value_head.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    # ------------------------------------------------------------------ pieces

    def _forward(self, model: torch.nn.Module, mb: _MicroBatch, values: bool = True
                 ) -> tuple[Tensor, Tensor | None]:
        """Token log-probs [m, T] of the completion tokens and the values [m, T] at the positions that
        predict them (both 0 on padding); the LM head runs only at completion positions."""
        backbone, head = lm_parts(model)
        checkpointing = torch.is_grad_enabled() and getattr(model, "is_gradient_checkpointing", False)
        with self.policy.autocast():
            hidden = _completion_hidden(backbone, mb, share_prompts=not checkpointing)
            rows, ts = mb.tokens
            flat = token_logprobs(head(hidden[rows, ts]), mb.completions[rows, ts], self.temperature)
        logp = flat.new_zeros(mb.mask.shape).index_put((rows, ts), flat)
        if not values:
            return logp, None
        # Outside autocast: the value head and its regression target stay in fp32.
        return logp, self.value_head(hidden.float()).squeeze(-1) * mb.mask

    @torch.no_grad()
    def _rollout_pass(self, mbs: list[_MicroBatch], rollouts: list[Rollout], scores: Scores
                      ) -> list[dict[str, Tensor]]:
        """Per micro-batch: old log-probs, old values, per-token rewards, advantages and returns (TRL's
        rollout phase). Advantages are whitened over the whole batch's tokens."""
        cfg, out = self.config, []
        for mb in mbs:
            logp, values = self._forward(self.policy.model, mb)
            ref = self._reference_logprobs(mb) if cfg.kl_coef > 0 else logp
            score = torch.tensor([scores.total[i] for i in mb.rows], dtype=torch.float32, device=logp.device)
            rewards = kl_penalised_rewards(score, logp, ref, mb.mask, cfg.kl_coef)
            advantages, returns = gae(rewards, values, mb.mask, cfg.gamma, cfg.lam)
            out.append({"logp": logp, "values": values, "ref_logp": ref, "rewards": rewards,
                        "raw_advantages": advantages, "advantages": advantages, "returns": returns})
        if cfg.whiten_advantages and out:
            # Over all micro-batches at once: padded widths differ, so whiten the flat token values.
            flat = torch.cat([o["raw_advantages"][mb.mask.bool()] for mb, o in zip(mbs, out, strict=True)])
            white = masked_whiten(flat, torch.ones_like(flat))
            at = 0
            for mb, o in zip(mbs, out, strict=True):
                on = mb.mask.bool()
                n = int(on.sum())
                o["advantages"] = torch.zeros_like(o["raw_advantages"]).masked_scatter(on, white[at:at + n])
                at += n
        return out

    def _reference_logprobs(self, mb: _MicroBatch) -> Tensor:
        if self.reference is not None:
            return self._forward(self.reference, mb, values=False)[0]
        with self.policy.model.disable_adapter():  # LoRA: the base model is the reference
            return self._forward(self.policy.model, mb, values=False)[0]

    def _metrics(self, rollouts: list[Rollout], trained: list[int], old: list[dict[str, Tensor]],
                 mbs: list[_MicroBatch], sums: dict[str, float], grad_norms: list[float],
                 lrs: list[float]) -> dict[str, float]:
        cfg, steps = self.config, self.config.num_iterations

        def flat(key: str) -> Tensor:
            parts = [o[key][mb.mask.bool()] for mb, o in zip(mbs, old, strict=True)]
            return torch.cat(parts).double() if parts else torch.zeros(0, dtype=torch.float64)

        raw, returns, values = flat("raw_advantages"), flat("returns"), flat("values")
        k1 = flat("logp") - flat("ref_logp")  # the estimator the reward penalises (TRL's default)

        def mean(x: Tensor) -> float:
            return float(x.mean()) if len(x) else 0.0

        clip_tokens = max(sums["clip_tokens"], 1.0)
        metrics: dict[str, float] = {
            "loss": sums["loss"] / steps,
            "policy_loss": sums["policy_loss"] / steps,
            "value_loss": sums["value_loss"] / steps,
            "clip_ratio/region_mean": sums["clip"] / clip_tokens,
            "value_clip_frac": sums["value_clip"] / clip_tokens,
            # Before whitening: after it they are 0 and 1 by construction.
            "advantage/mean": mean(raw),
            "advantage/std": float(raw.std()) if len(raw) > 1 else 0.0,
            "returns/mean": mean(returns),
            "value/mean": mean(values),
            "trained_sequences": float(len(trained)),
            "learning_rate": lrs[0] if lrs else 0.0,
        }
        if cfg.kl_coef > 0:
            # "kl" is GRPO's k3 estimate (never negative), so runs of both compare; k1 can dip below 0.
            metrics["kl"] = mean(torch.exp(-k1) + k1 - 1)
            metrics["kl/k1"] = mean(k1)
        if grad_norms:
            metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        return metrics
