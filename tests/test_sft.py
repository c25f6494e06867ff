"""Completion-only fine-tuning: masking, EOS handling, the loss value, the lr schedule, a real step."""

from __future__ import annotations

import math

import pytest
import torch

from raftkit.algorithms.sft import (
    IGNORE,
    Example,
    Schedule,
    collate,
    completion_loss,
    completion_loss_sum,
    make_example,
    train,
)
from raftkit.chat import encode_prompt


class _Tok:
    """A hand-made tokenizer: one id per character, id 2 is EOS."""

    eos_token_id = 2
    pad_token_id = 2

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [10 + (ord(c) % 50) for c in text]}

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + (
            "<assistant>" if add_generation_prompt else ""
        )


def test_collate_masks_prompt_and_padding():
    examples = [Example([5, 6, 7], [8, 9]), Example([5], [4])]
    batch = collate(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 4, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    # only completion tokens carry labels: prompt positions and padding are ignored
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, IGNORE, 8, 9], [IGNORE, 4, IGNORE, IGNORE, IGNORE]]


def test_make_example_uses_the_original_prompt_and_appends_eos_only_when_finished():
    tok = _Tok()
    prompt = [{"role": "user", "content": "hi"}]
    stop = make_example(tok, prompt, [30, 31], "stop")
    assert stop.prompt_ids == encode_prompt(tok, prompt)
    assert stop.completion_ids == [30, 31, 2]
    assert make_example(tok, prompt, [30, 31, 2], "stop").completion_ids == [30, 31, 2]  # no second EOS
    assert make_example(tok, prompt, [30, 31], "truncated").completion_ids == [30, 31, 2]
    assert make_example(tok, prompt, [30, 31], "length").completion_ids == [30, 31]  # cut by the limit


def test_completion_loss_on_a_hand_computed_case():
    # vocab 4; uniform logits everywhere -> every labelled token costs log 4
    labels = torch.tensor([[IGNORE, IGNORE, 1, 2]])
    logits = torch.zeros(1, 4, 4)
    loss, n = completion_loss_sum(logits, labels)
    assert n == 2 and loss.item() == pytest.approx(2 * math.log(4))
    # make position 1 predict token 1 with p = e^2/(e^2+3): only that term changes
    logits[0, 1, 1] = 2.0
    loss, _ = completion_loss_sum(logits, labels)
    expected = -math.log(math.exp(2) / (math.exp(2) + 3)) + math.log(4)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # a prompt position's logits never matter
    logits[0, 0] = torch.tensor([9.0, -9.0, 3.0, 0.0])
    assert completion_loss_sum(logits, labels)[0].item() == pytest.approx(expected, rel=1e-5)


def test_schedule_factors():
    # constant, no warmup
    assert Schedule("constant", 0.0, 0, 4).factor(0.5) == 1.0
    # linear over 4 iterations: at iteration 2 (0-based), halfway through it -> progress 2.5/4
    assert Schedule("linear", 0.0, 2, 4).factor(0.5) == pytest.approx(1 - 2.5 / 4)
    # cosine at progress 0.5 -> 0.5
    assert Schedule("cosine", 0.0, 1, 2).factor(0.0) == pytest.approx(0.5)
    # warmup over the first quarter: progress 0.125 -> 0.5
    assert Schedule("constant", 0.25, 0, 4).factor(0.5) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory, default_tokenizer):
    """A tiny Llama with untied embeddings, loaded through raftkit's Policy.

    Untied on purpose: with tied input/output embeddings, large steps on one completion move every
    token's logits through the shared matrix, and the "only trains on it" check below would measure that
    coupling rather than the loss mask.
    """
    import torch
    from conftest import tiny_llama_config
    from transformers import LlamaForCausalLM

    from raftkit.policy import Policy

    path = tmp_path_factory.mktemp("tiny-untied")
    torch.manual_seed(0)
    config = tiny_llama_config(default_tokenizer, tie_word_embeddings=False, max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(path)
    default_tokenizer.save_pretrained(path)
    return Policy(str(path), bf16=False)


def _completion_logprob(policy, ex):
    batch = collate([ex], policy.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = policy.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss, _ = completion_loss_sum(logits, batch["labels"])
    return -loss.item()


@pytest.mark.slow
def test_training_raises_the_selected_completion_and_only_trains_on_it(tiny_policy):
    tok = tiny_policy.tokenizer
    prompt = [{"role": "user", "content": "What is 2+2?"}]
    ex = make_example(tok, prompt, tok("Four 😀")["input_ids"], "stop")
    other = make_example(tok, prompt, tok("Banana split")["input_ids"], "stop")
    before, before_other = _completion_logprob(tiny_policy, ex), _completion_logprob(tiny_policy, other)
    seen = []
    metrics = train(
        tiny_policy,
        [ex, ex],
        lr=1e-2,
        epochs=3,
        micro_batch_size=1,
        gradient_accumulation_steps=2,
        progress=lambda done, total: seen.append((done, total)),
    )
    after = _completion_logprob(tiny_policy, ex)
    assert after > before + 1.0
    assert _completion_logprob(tiny_policy, other) - before_other < after - before
    assert metrics["train/steps"] == 3 and seen[-1] == (3, 3)  # 2 examples, 1 x 2 per step, 3 epochs
    assert metrics["loss/last_epoch"] < metrics["loss/first_epoch"]
    assert not tiny_policy.model.training  # left in eval mode for sampling / saving


def test_completion_loss_skips_prompt_logits_but_matches_the_full_loss(tiny_policy):
    batch = collate([Example([5, 6, 7], [8, 9, 2]), Example([5], [4])], pad_id=2)
    with torch.no_grad():
        full = tiny_policy.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected, n_expected = completion_loss_sum(full, batch["labels"])
        loss, n = completion_loss(tiny_policy.model, batch)
    assert n == n_expected == 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_on_nothing_is_a_no_op(tiny_policy):
    assert train(tiny_policy, [], lr=1e-3)["train/steps"] == 0
