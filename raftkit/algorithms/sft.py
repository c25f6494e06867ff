"""Completion-only causal-LM fine-tuning: what RAFT does with its selected samples each iteration.

An example is the prompt's token ids (rendered exactly as the sampler rendered it) followed by the
sampled completion ids; the loss covers the completion tokens only. A completion that ended on its own
gets the end-of-sequence token appended, so the model also learns *where* to stop; one cut by the length
limit does not, so it is not taught to stop mid-sentence.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from raftkit import distributed
from raftkit.algorithms.lm_head import lm_parts
from raftkit.chat import encode_prompt

IGNORE = -100  # the label value torch's cross-entropy skips


@dataclass
class Example:
    prompt_ids: list[int]
    completion_ids: list[int]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


def make_example(
    tokenizer: Any, prompt: Any, completion_ids: Sequence[int], finish_reason: str = "stop"
) -> Example:
    """An SFT example: the original prompt's ids and the completion ids (+ EOS if it ended by itself).

    ``truncated`` (a self-dialogue continuation cut off) ends where the answer should have ended, so it
    gets EOS too; ``length`` (the token limit) does not.
    """
    ids = list(completion_ids)
    eos = tokenizer.eos_token_id
    if finish_reason in ("stop", "truncated") and eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return Example(list(encode_prompt(tokenizer, prompt)), ids)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask, and labels with prompt and padding set to IGNORE."""
    width = max(len(e) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        seq = e.prompt_ids + e.completion_ids
        input_ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        labels[row, len(e.prompt_ids) : len(seq)] = torch.tensor(e.completion_ids, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def completion_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over the labelled (completion) positions, and their count."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, int((shift_labels != IGNORE).sum())


def completion_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """``completion_loss_sum`` without the logits of prompt and padding positions.

    The vocabulary is large (49152 for SmolLM2): projecting only the positions that predict a completion
    token skips the lm-head matmul and the fp32 log-softmax for the prompt, about half the positions here.
    """
    backbone, head = lm_parts(model)
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    rows, cols = (targets != IGNORE).nonzero(as_tuple=True)
    logits = head(hidden[rows, cols]).float()
    loss = torch.nn.functional.cross_entropy(logits, targets[rows, cols], reduction="sum")
    return loss, int(rows.numel())


@dataclass
class Schedule:
    """The learning-rate factor as a function of progress through the whole run (iterations, not steps).

    RAFT builds a fresh optimiser each iteration, so the schedule is a pure function of where the run is,
    and a resumed run gets exactly the rates it would have had.
    """

    kind: str = "constant"  # constant | linear | cosine
    warmup_ratio: float = 0.0
    iteration: int = 0  # 0-based iteration being trained
    iterations: int = 1

    def factor(self, fraction: float) -> float:
        """The factor at ``fraction`` (0..1) of the way through the current iteration's steps."""
        p = min(1.0, (self.iteration + fraction) / max(1, self.iterations))
        if self.warmup_ratio > 0 and p < self.warmup_ratio:
            return p / self.warmup_ratio
        rest = (p - self.warmup_ratio) / max(1e-12, 1 - self.warmup_ratio)
        if self.kind == "linear":
            return max(0.0, 1 - rest)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * rest))
        return 1.0


def make_optimizer(
    params: Sequence[torch.nn.Parameter], lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """AdamW, fused where torch has a fused kernel for the device (several times faster on CPU)."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def reset_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Zero AdamW's moments and step counts in place: a fresh optimiser without new allocations."""
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                value.zero_()


def train(
    policy: Any,
    examples: Sequence[Example],
    *,
    lr: float,
    epochs: int = 1,
    micro_batch_size: int = 8,
    gradient_accumulation_steps: int = 1,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    schedule: Schedule | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, float]:
    """Fine-tune ``policy`` on ``examples``; returns the iteration's training metrics.

    The loss of an optimiser step is the mean over all completion tokens of its micro-batches (not a
    mean of micro-batch means), so long and short completions weigh the same per token whatever the
    batching. Each call starts from fresh AdamW moments; pass the ``optimizer`` of an earlier call
    (see ``make_optimizer``) to reuse its memory instead of allocating it again (1 GB for 135M params).

    With several processes every rank passes the same (global) ``examples``: each step's examples are
    split between the ranks and their gradients summed, so the step is the one-process step.
    """
    if not examples:
        return {"loss": float("nan"), "train/steps": 0, "train/tokens": 0, "learning_rate": 0.0,
                "time/train": 0.0}
    start = time.perf_counter()
    schedule = schedule or Schedule()
    model = policy.model
    params = policy.trainable_parameters()
    if optimizer is None:
        optimizer = make_optimizer(params, lr, weight_decay)
    else:
        reset_optimizer(optimizer)
    pad_id = policy.tokenizer.pad_token_id if policy.tokenizer.pad_token_id is not None else 0
    generator = torch.Generator().manual_seed(seed)
    per_step = micro_batch_size * gradient_accumulation_steps
    steps_per_epoch = math.ceil(len(examples) / per_step)
    total_steps = steps_per_epoch * epochs
    step = 0
    token_count, epoch_losses = 0, []
    model.train()
    try:
        for _epoch in range(epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            epoch_loss, epoch_tokens = 0.0, 0
            for s in range(steps_per_epoch):
                chunk = [examples[i] for i in order[s * per_step : (s + 1) * per_step]]
                # Token count of the whole step first, so each micro-batch's share is known before backward.
                n_tokens = sum(len(e.completion_ids) for e in chunk)
                chunk = distributed.shard(chunk, strict=False)  # this rank's part of the step
                micro = [chunk[j : j + micro_batch_size] for j in range(0, len(chunk), micro_batch_size)]
                for part in micro:
                    batch = {k: v.to(policy.device) for k, v in collate(part, pad_id).items()}
                    with policy.autocast():
                        summed, _ = completion_loss(model, batch)
                    (summed / max(1, n_tokens)).backward()
                    epoch_loss += summed.item()
                distributed.average_gradients(params)
                if max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                current_lr = lr * schedule.factor(step / total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = current_lr
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                epoch_tokens += n_tokens
                step += 1
                if progress is not None:
                    progress(step, total_steps)
            epoch_losses.append(epoch_loss)
            token_count += epoch_tokens
    finally:
        model.eval()
        optimizer.zero_grad(set_to_none=True)
    epoch_losses = list(distributed.all_reduce_sum(*epoch_losses))  # each rank summed its part's loss
    loss_sum = sum(epoch_losses)
    epoch_losses = [e / max(1, token_count // epochs) for e in epoch_losses]
    return {
        "loss": loss_sum / max(1, token_count),
        "loss/first_epoch": epoch_losses[0],
        "loss/last_epoch": epoch_losses[-1],
        "train/steps": total_steps,
        "train/examples": len(examples),
        "train/tokens": token_count // max(1, epochs),
        "learning_rate": current_lr,
        "time/train": time.perf_counter() - start,
    }
