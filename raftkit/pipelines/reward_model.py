"""A Bradley–Terry reward model (DeepSpeed-Chat's step 2), trained on preference pairs.

The model is ``AutoModelForSequenceClassification`` with one label on any causal-LM base: the base's
transformer body and a new linear ``score`` head. transformers reads the score at the rightmost token that
is not ``config.pad_token_id`` (set here), so right padding does not change a text's score. The loss of a
pair is ``-log σ(r_chosen - r_rejected)``, averaged over the batch.

A text is prompt + completion exactly as the ``reward_model`` reward
(raftkit/rewards/builtin/neural.py) renders it: chat
prompts through the tokenizer's chat template with the reply as an assistant turn, text prompts
concatenated; tokenised with special tokens, right-padded, truncated from the left (the completion is
kept). So the saved folder scores at inference as it was trained: ``--reward reward_model:model=DIR/model``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from raftkit.pipelines.pairs import Pair
from raftkit.rewards import completion_text
from raftkit.rollouts import Prompt


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Mean of ``-log σ(r_chosen - r_rejected)`` over pairs, in fp32.

    >>> round(float(bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]))), 6)
    0.126928
    """
    return -F.logsigmoid(chosen.float() - rejected.float()).mean()


def _prompt_text(prompt: Prompt) -> str:
    if isinstance(prompt, list):
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt)
    return "" if prompt is None else str(prompt)


def rm_text(tokenizer: Any, prompt: Prompt, completion: str) -> str:
    """Prompt + completion as the ``reward_model`` reward renders them (chat template for chat prompts)."""
    if isinstance(prompt, list) and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}],
                                             tokenize=False)
    return _prompt_text(prompt) + completion_text(completion)


def load_reward_model(base: str | None = None, *, seed: int = 0,
                      device: str | None = None) -> tuple[Any, Any]:
    """(sequence-classification model with one label, tokenizer) on the causal LM ``base`` (default: the
    bundled model). The new score head is seeded; the pad token defaults to EOS and is set in the config."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from raftkit.models import resolve_model

    path = resolve_model(base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "left"  # keep the completion, which is what is being scored
    torch.manual_seed(seed)  # the score head is initialised fresh
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized / lm_head unused" is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(previous)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    return model, tokenizer


def score_texts(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 1024) -> Tensor:
    """The reward of each text [n] in fp32 (one forward pass; gradients flow when enabled)."""
    batch = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                      add_special_tokens=True).to(model.device)
    return model(**batch).logits[:, 0].float()


def _autocast(model: Any) -> Any:
    from raftkit.policy import bf16_supported

    if bf16_supported():
        return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=model.device.type, enabled=False)


def _pair_scores(model: Any, tokenizer: Any, pairs: Sequence[Pair], max_length: int) -> tuple[Tensor, Tensor]:
    texts = [rm_text(tokenizer, p.prompt, c) for p in pairs for c in (p.chosen, p.rejected)]
    with _autocast(model):
        r = score_texts(model, tokenizer, texts, max_length)
    return r[0::2], r[1::2]  # chosen and rejected alternate, so both sides of a pair share one batch


@torch.no_grad()
def evaluate_pairs(model: Any, tokenizer: Any, pairs: Sequence[Pair], *, batch_size: int = 8,
                   max_length: int = 1024) -> dict[str, float]:
    """Pair accuracy (share with r_chosen > r_rejected; a tie counts as wrong), mean margin and mean loss."""
    if not pairs:
        return {}
    was_training = model.training
    model.eval()
    correct, margin, loss = 0.0, 0.0, 0.0
    try:
        for s in range(0, len(pairs), batch_size):
            chosen, rejected = _pair_scores(model, tokenizer, pairs[s:s + batch_size], max_length)
            correct += float((chosen > rejected).sum())
            margin += float((chosen - rejected).sum())
            loss += float(-F.logsigmoid(chosen - rejected).sum())
    finally:
        model.train(was_training)
    n = len(pairs)
    return {"accuracy": correct / n, "margin": margin / n, "loss": loss / n}


def train_reward_model(
    model: Any,
    tokenizer: Any,
    train: Sequence[Pair],
    heldout: Sequence[Pair] = (),
    *,
    epochs: int = 1,
    lr: float = 1e-5,
    batch_size: int = 8,
    max_length: int = 1024,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place with the Bradley–Terry loss; returns one record per epoch, epoch 0 being
    the held-out metrics before training. AdamW at a constant ``lr``, gradient clipped to
    ``max_grad_norm``, pairs reshuffled every epoch (seeded)."""
    from raftkit.algorithms.sft import make_optimizer

    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, lr)
    generator = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(train) / batch_size)
    records: list[dict[str, Any]] = []

    def heldout_metrics() -> dict[str, float]:
        found = evaluate_pairs(model, tokenizer, heldout, batch_size=batch_size, max_length=max_length)
        return {f"heldout/{k}": v for k, v in found.items()}

    first = {"epoch": 0, **heldout_metrics()}
    records.append(first)
    if on_epoch:
        on_epoch(first)
    model.train()
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            order = torch.randperm(len(train), generator=generator).tolist()
            loss_sum, acc_sum = 0.0, 0.0
            for step in range(steps):
                batch = [train[i] for i in order[step * batch_size:(step + 1) * batch_size]]
                chosen, rejected = _pair_scores(model, tokenizer, batch, max_length)
                loss = bradley_terry_loss(chosen, rejected)
                loss.backward()
                if max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.item() * len(batch)
                acc_sum += float((chosen > rejected).sum())
                if on_step:
                    on_step(step + 1, steps)
            record = {
                "epoch": epoch,
                "train/loss": loss_sum / len(train),
                "train/accuracy": acc_sum / len(train),  # during the epoch, before each step's update
                **heldout_metrics(),
                "lr": lr,
                "time/epoch": time.perf_counter() - start,
            }
            records.append(record)
            if on_epoch:
                on_epoch(record)
    finally:
        model.eval()
        optimizer.zero_grad(set_to_none=True)
    return records
