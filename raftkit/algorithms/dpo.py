"""Direct Preference Optimisation (Rafailov et al. 2023): the sigmoid loss on preference pairs.

For a pair (chosen c, rejected r) of completions of one prompt, with sequence log-probs summed over the
completion tokens only::

    loss = -log σ(β [(log π(c) - log π_ref(c)) - (log π(r) - log π_ref(r))])

The implicit rewards ``β (log π - log π_ref)`` of each side are logged under TRL 1.16 DPOTrainer's metric
names (rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen, logps/rejected),
so curves compare directly. The reference is the frozen starting model in the policy's own dtype, run under
the same autocast, so its log-probs equal the policy's before the first step; with LoRA it is the policy with
its adapters switched off. β must be > 0:
at β = 0 the loss is the constant log 2 and DPO learns nothing.

``raftkit dpo`` (offline, raftkit.cli.dpo) and the ``online_dpo`` algorithm (raftkit.algorithms.online_dpo)
both train through ``DPOUpdate``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from raftkit import distributed
from raftkit.algorithms.lm_head import lm_parts
from raftkit.algorithms.losses import token_logprobs
from raftkit.algorithms.sft import IGNORE, Example, collate, make_optimizer

METRIC_NAMES = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected")


@dataclass
class DPOLoss:
    """Per-pair DPO loss and implicit rewards β(log π - log π_ref) of each side, all shape [n]."""

    losses: Tensor
    chosen_rewards: Tensor  # detached
    rejected_rewards: Tensor  # detached


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float) -> DPOLoss:
    """The sigmoid DPO loss of each pair from summed sequence log-probs (TRL's ``loss_type="sigmoid"``).

    >>> t = torch.tensor
    >>> out = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)
    >>> round(float(out.losses[0]), 6), float(out.chosen_rewards[0]), float(out.rejected_rewards[0])
    (0.313262, 0.5, -0.5)
    """
    if not beta > 0:
        raise ValueError(f"DPO needs beta > 0, got {beta}")
    chosen_ratio = policy_chosen.float() - ref_chosen.float()
    rejected_ratio = policy_rejected.float() - ref_rejected.float()
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return DPOLoss(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def dpo_metrics(out: DPOLoss, policy_chosen: Tensor, policy_rejected: Tensor) -> dict[str, float]:
    """The batch means TRL's DPOTrainer logs, under its names, and the mean loss."""
    return {
        "loss": float(out.losses.detach().mean()),
        "rewards/chosen": float(out.chosen_rewards.mean()),
        "rewards/rejected": float(out.rejected_rewards.mean()),
        "rewards/accuracies": float((out.chosen_rewards > out.rejected_rewards).float().mean()),
        "rewards/margins": float((out.chosen_rewards - out.rejected_rewards).mean()),
        "logps/chosen": float(policy_chosen.detach().float().mean()),
        "logps/rejected": float(policy_rejected.detach().float().mean()),
    }


# --------------------------------------------------------------------------- tokens


def _ids(tokenizer: Any, prompt: Any, completion: str | None) -> list[int]:
    if isinstance(prompt, list):
        if completion is None:
            text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        else:
            text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}],
                                                 tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt + (completion or ""))["input_ids"]


def _shared(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def pair_examples(tokenizer: Any, pair: Any, max_length: int | None = None) -> tuple[Example, Example] | None:
    """(chosen, rejected) Examples of a ``pipelines.pairs.Pair``, tokenised as TRL 1.16's DPOTrainer does.

    Prompt and prompt + completion are tokenised whole and the completion starts where they diverge (a
    token that merges across the boundary belongs to the completion); a text completion gets EOS appended,
    a chat one ends as the chat template ends it. With ``max_length`` the sequence keeps its start (TRL's
    ``keep_start``); a pair whose prompt alone fills it gives None. An empty prompt gets the BOS (or EOS)
    token as context, so the first completion token is scored too.
    """
    eos = tokenizer.eos_token or ""
    chosen, rejected = pair.chosen, pair.rejected
    if not isinstance(pair.prompt, list):
        chosen = chosen if chosen.endswith(eos) else chosen + eos
        rejected = rejected if rejected.endswith(eos) else rejected + eos
    prompt_ids = _ids(tokenizer, pair.prompt, None)
    c_ids, r_ids = _ids(tokenizer, pair.prompt, chosen), _ids(tokenizer, pair.prompt, rejected)
    n = min(_shared(prompt_ids, c_ids), _shared(prompt_ids, r_ids))
    prompt_ids, c_ids, r_ids = prompt_ids[:n], c_ids[n:], r_ids[n:]
    if not prompt_ids:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        prompt_ids = [start]
    if max_length is not None:
        if len(prompt_ids) >= max_length:
            return None
        room = max_length - len(prompt_ids)
        c_ids, r_ids = c_ids[:room], r_ids[:room]
    return Example(list(prompt_ids), list(c_ids)), Example(list(prompt_ids), list(r_ids))


def sequence_logprobs(model: torch.nn.Module, examples: Sequence[Example], pad_id: int) -> Tensor:
    """Sum of log π(completion token | prefix) over each example's completion tokens only, shape [n].

    Built like ``sft.completion_loss``: the LM head runs only at the positions that predict completion
    tokens (prompts and padding get no logits), and ``losses.token_logprobs`` takes the log-softmax in fp32.
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collate(examples, pad_id).items()}
    backbone, head = lm_parts(model)
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    rows, cols = (targets != IGNORE).nonzero(as_tuple=True)
    logp = token_logprobs(head(hidden[rows, cols]), targets[rows, cols])
    return torch.zeros(len(examples), device=device, dtype=logp.dtype).index_add(0, rows, logp)


# --------------------------------------------------------------------------- the update


def load_reference(policy: Any) -> torch.nn.Module | None:
    """The frozen starting model in the policy's own dtype (``raftkit.policy.load_reference``); None with
    LoRA (the policy with its adapters off is the reference)."""
    from raftkit.policy import load_reference as policy_reference

    return policy_reference(policy)


@torch.no_grad()
def reference_logprobs(policy: Any, reference: torch.nn.Module | None, examples: Sequence[Example],
                       pad_id: int, forward: Callable[..., Tensor] = sequence_logprobs) -> Tensor:
    """``forward(model, examples, pad_id)`` (default ``sequence_logprobs``) under the starting model:
    ``reference``, or with LoRA (None) the policy with its adapters off."""
    with policy.autocast():
        if reference is not None:
            return forward(reference, examples, pad_id).float()
        with policy.model.disable_adapter():
            return forward(policy.model, examples, pad_id).float()


class DPOUpdate:
    """Optimiser steps of the DPO loss on batches of (chosen, rejected) Example pairs for a ``Policy``."""

    def __init__(self, policy: Any, *, beta: float, lr: float, max_grad_norm: float = 1.0,
                 micro_batch_size: int = 8, reference: torch.nn.Module | None = None):
        if not beta > 0:
            raise ValueError(f"DPO needs beta > 0, got {beta}")
        self.policy, self.beta, self.max_grad_norm = policy, beta, max_grad_norm
        self.micro_batch_size = micro_batch_size
        self.reference = reference if reference is not None else load_reference(policy)
        self.params = policy.trainable_parameters()
        self.optimizer = make_optimizer(self.params, lr)
        tok = policy.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def reference_logprobs(self, examples: Sequence[Example]) -> Tensor:
        return reference_logprobs(self.policy, self.reference, examples, self.pad_id)

    def _forward(self, part: Sequence[tuple[Example, Example]]) -> tuple[DPOLoss, Tensor, Tensor]:
        # Chosen and rejected of a micro-batch go through one forward pass, as TRL concatenates them.
        examples = [e for pair in part for e in pair]
        ref = self.reference_logprobs(examples)
        with self.policy.autocast():
            logp = sequence_logprobs(self.policy.model, examples, self.pad_id)
        return dpo_loss(logp[0::2], logp[1::2], ref[0::2], ref[1::2], self.beta), logp[0::2], logp[1::2]

    def step(self, pairs: Sequence[tuple[Example, Example]], lr: float | None = None) -> dict[str, float]:
        """One optimiser step on the mean DPO loss of ``pairs`` (micro-batched, accumulated exactly).

        With several processes each rank passes its own share of the batch's pairs: the loss is divided by
        the pair count over every rank and the gradients are summed over ranks before clipping, so every
        rank takes the one-process step on the whole batch (and a rank without pairs still takes it). The
        metrics are the whole batch's. No pair on any rank: no step.
        """
        (total,) = distributed.all_reduce_sum(float(len(pairs)))
        if not total:
            return {}
        model = self.policy.model
        model.train()
        sums: dict[str, float] = defaultdict(float)
        try:
            for s in range(0, len(pairs), self.micro_batch_size):
                part = pairs[s:s + self.micro_batch_size]
                out, chosen, rejected = self._forward(part)
                (out.losses.sum() / total).backward()
                for k, v in dpo_metrics(out, chosen, rejected).items():
                    sums[k] += v * len(part)
            distributed.average_gradients(self.params)  # before clipping: the norm is the global one
            grad_norm = (torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
                         if self.max_grad_norm > 0 else None)
            if lr is not None:
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
            self.optimizer.step()
        finally:
            self.optimizer.zero_grad(set_to_none=True)
            model.eval()
        keys = ("loss", *METRIC_NAMES)
        metrics = dict(zip(keys, (v / total for v in distributed.all_reduce_sum(*(sums[k] for k in keys))),
                           strict=True))
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        return metrics

    @torch.no_grad()
    def evaluate(self, pairs: Sequence[tuple[Example, Example]]) -> dict[str, float]:
        """The DPO metrics of ``pairs`` without a step (e.g. held-out pairs)."""
        sums: dict[str, float] = defaultdict(float)
        for s in range(0, len(pairs), self.micro_batch_size):
            part = pairs[s:s + self.micro_batch_size]
            for k, v in dpo_metrics(*self._forward(part)).items():
                sums[k] += v * len(part)
        return {k: v / max(len(pairs), 1) for k, v in sums.items()}


def train_dpo(update: DPOUpdate, train: Sequence[tuple[Example, Example]],
              heldout: Sequence[tuple[Example, Example]] = (), *, epochs: int = 1, batch_size: int = 8,
              seed: int = 0, on_step: Callable[[int, int], None] | None = None,
              on_epoch: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Offline DPO: ``epochs`` passes over ``train`` in seeded random batches of ``batch_size`` pairs.

    Returns one record per epoch (epoch 0: held-out metrics before training) with the step means of the
    TRL metrics and the held-out ones under ``heldout/``.
    """
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(train) / batch_size)

    def held() -> dict[str, float]:
        return {f"heldout/{k}": v for k, v in update.evaluate(heldout).items()} if heldout else {}

    records: list[dict[str, Any]] = [{"epoch": 0, **held()}]
    if on_epoch:
        on_epoch(records[0])
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=generator).tolist()
        sums: dict[str, float] = defaultdict(float)
        for step in range(steps):
            batch = [train[i] for i in order[step * batch_size:(step + 1) * batch_size]]
            for k, v in update.step(batch).items():
                sums[k] += v * len(batch)
            if on_step:
                on_step(step + 1, steps)
        record = {"epoch": epoch, **{k: v / len(train) for k, v in sums.items()}, **held(),
                  "time/epoch": time.perf_counter() - start}
        records.append(record)
        if on_epoch:
            on_epoch(record)
    return records
