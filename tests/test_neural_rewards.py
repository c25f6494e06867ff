"""The neural built-ins, for real and offline: a reward model built from a config, and the embedder."""

from __future__ import annotations

import pytest
from conftest import tiny_llama_config

from raftkit import RewardError, RewardStack
from raftkit.rewards import RegistryError


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory, default_tokenizer):
    """A tiny LlamaForSequenceClassification (num_labels=1) with the bundled tokenizer, saved like a real one.

    Saved without a pad_token_id, as many reward models are: the plugin must set it itself.
    """
    import torch
    from transformers import LlamaForSequenceClassification

    torch.manual_seed(0)
    config = tiny_llama_config(default_tokenizer, num_labels=1, pad_token_id=None)
    model = LlamaForSequenceClassification(config)
    path = tmp_path_factory.mktemp("tiny-rm")
    model.save_pretrained(path)
    default_tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_reward_model_scores_at_last_non_pad_token(tiny_reward_model):
    import torch

    from raftkit.rewards.builtin.neural import _reward_model, reward_model

    prompts = ["Q: capital of France?\nA:", "Q: 2+2?\nA:", "日本の首都は？", "Hi"]
    completions = [
        " Paris.",
        " It is four, of course, as everyone knows.",
        "東京です。",
        [{"role": "assistant", "content": " Hello there!"}],
    ]
    batched = reward_model(prompts, completions, model=tiny_reward_model, batch_size=4)  # padded batch
    one_by_one = [
        reward_model([p], [c], model=tiny_reward_model, batch_size=1)[0]
        for p, c in zip(prompts, completions, strict=True)
    ]
    assert batched == pytest.approx(one_by_one, abs=1e-5)
    assert len(set(round(v, 6) for v in batched)) == 4  # different texts, different scores

    # By hand: the score head applied to the hidden state of the last real token of the unpadded text.
    rm, tokenizer = _reward_model(tiny_reward_model, "cpu")
    assert rm.config.pad_token_id == tokenizer.pad_token_id is not None
    with torch.inference_mode():
        ids = tokenizer(prompts[1] + completions[1], return_tensors="pt")["input_ids"]
        hidden = rm.model(input_ids=ids).last_hidden_state[0, -1]
        by_hand = rm.score(hidden).item()
    assert batched[1] == pytest.approx(by_hand, abs=1e-5)
    assert _reward_model(tiny_reward_model, "cpu")[0] is rm  # loaded once, then cached


@pytest.mark.slow
def test_reward_model_through_the_stack(tiny_reward_model):
    stack = RewardStack.build([f"reward_model:model={tiny_reward_model},batch_size=2*0.5"])
    scores = stack.score(["a", "b", "c"], ["x", "yy", "zzz"])
    values = scores.rewards["reward_model"]
    assert len(values) == 3 and scores.total == pytest.approx([0.5 * v for v in values])


def test_reward_model_needs_a_model():
    with pytest.raises(RegistryError, match=r"reward 'reward_model' needs parameter\(s\) model: str"):
        RewardStack.build(["reward_model"])


def test_reward_model_unloadable_folder_is_a_clear_error(tmp_path):
    stack = RewardStack.build([f"reward_model:model={tmp_path}"])
    with pytest.raises(
        RewardError,
        match=r"reward 'reward_model' raised ValueError: reward_model: cannot load"
        r" a sequence-classification model from '.*' \(the folder\)",
    ):
        stack.score(["p"], ["c"])


def test_similarity_missing_column_names_it():
    stack = RewardStack.build(["similarity:column=answer"])
    with pytest.raises(
        RewardError,
        match=r"no column 'answer' in the data \(columns passed: reference\); "
        r"set similarity:column=NAME on a batch of 2$",
    ):
        stack.score(["p", "q"], ["c", "d"], {"reference": ["r", "s"]})


@pytest.mark.slow
def test_similarity_paraphrase_beats_unrelated():
    from raftkit.rewards.builtin.neural import embed, similarity

    reference = "The capital of France is Paris."
    completions = [
        "Paris is France's capital city.",
        "I like to eat bananas for breakfast.",
        [{"role": "assistant", "content": reference}],
        "anything",
    ]
    values = similarity(completions, reference=[reference, reference, reference, None])
    paraphrase, unrelated, same, missing = values
    assert paraphrase > 0.7 > 0.3 > unrelated
    assert same == pytest.approx(1.0, abs=1e-4) and missing is None
    vectors = embed(["a", "b"])
    assert vectors.shape == (2, 384) and vectors.norm(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
