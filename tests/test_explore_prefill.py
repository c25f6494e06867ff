"""Hinted samples that continue the policy's own first sentence (explore.continue_own, --explore-prefill)."""

import pytest

from raftkit.algorithms.explore import PREFILL_MIN_NEW_TOKENS, first_sentence, sample_with_hint
from raftkit.chat import encode_prompt, prefill, render_prompt, with_hint
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tokenizer(default_tokenizer):
    return default_tokenizer


def test_a_prefilled_chat_prompt_renders_its_answer_open(tokenizer):
    opened = prefill(CHAT, "Paris is the capital.")
    assert CHAT[-1]["role"] == "user"  # the caller's messages are not changed
    assert render_prompt(tokenizer, opened) == render_prompt(tokenizer, CHAT) + "Paris is the capital."
    plain = encode_prompt(tokenizer, CHAT)
    assert encode_prompt(tokenizer, opened)[: len(plain)] == plain
    assert "<|im_end|>" not in render_prompt(tokenizer, opened)[len(render_prompt(tokenizer, CHAT)):]


def test_first_sentence():
    assert first_sentence("Paris is the capital. It is big.") == len("Paris is the capital.")
    assert first_sentence("Is it Paris? Yes.") == len("Is it Paris?")
    assert first_sentence("It is Paris.") == len("It is Paris.")  # the end of the text ends a sentence
    assert first_sentence("富士山は3776メートルです。高い") == len("富士山は3776メートルです。")
    assert first_sentence("Pi is 3.14 and e is 2.72") == 0  # a decimal point is not an end
    assert first_sentence("") == 0


class _ScriptSampler:
    """Plain prompts get the scripted completions in turn; prefilled or hinted ones get `tail`. Ids are
    the real tokenizer's; log-probs -0.1 per plain token and -2 per continuation token."""

    def __init__(self, tokenizer, own: list[str], tail: str = " 😊"):
        self.tokenizer, self.own, self.tail, self.calls, self.skipped = tokenizer, own, tail, [], []

    def _rollout(self, i, prompt, text, logprob):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
        return Rollout(i, prompt, text, ids, [logprob] * len(ids),
                       prompt_ids=encode_prompt(self.tokenizer, prompt))

    def generate(self, prompts, k, params):
        self.calls.append((list(prompts), k, params))
        if len(self.calls) == 1:
            return [self._rollout(i, p, self.own[(i * k + j) % len(self.own)], -0.1)
                    for i, p in enumerate(prompts) for j in range(k)]
        return [self._rollout(i, p, self.tail, -2.0) for i, p in enumerate(prompts) for _ in range(k)]


def test_hinted_samples_continue_the_first_sentence_of_the_prompts_own(tokenizer):
    own = ["Paris is the capital. It has the Eiffel Tower.", "It might be Lyon or", "Paris."]
    sampler = _ScriptSampler(tokenizer, own)
    params = SamplingParams(temperature=0.8, max_new_tokens=40)
    sampled = sample_with_hint(sampler, Batch([CHAT]), k=7, n_hinted=4, hint=" Use emojis.", params=params,
                               prefill=True)
    (plain_prompts, plain_k, plain_params), (cont_prompts, cont_k, cont_params) = sampler.calls
    assert (plain_prompts, plain_k, plain_params) == ([CHAT], 3, params)
    assert cont_k == 1 and cont_params.min_new_tokens == PREFILL_MIN_NEW_TOKENS and params.min_new_tokens == 0
    hinted_prompt = with_hint(CHAT, " Use emojis.")
    # the three own samples in turn, then the first again; "It might be Lyon or" has no sentence to keep
    assert cont_prompts == [prefill(hinted_prompt, "Paris is the capital."), hinted_prompt,
                            prefill(hinted_prompt, "Paris."), prefill(hinted_prompt, "Paris is the capital.")]
    rollouts = sampled.rollouts
    assert [r.hinted for r in rollouts] == [False] * 3 + [True] * 4
    first, scratch = rollouts[3], rollouts[4]
    assert first.completion == "Paris is the capital. 😊"
    head = tokenizer("Paris is the capital.", add_special_tokens=False)["input_ids"]
    tail = tokenizer(" 😊", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert first.completion_ids == head + tail  # the source's end-of-turn token is not kept
    assert first.logprobs == [-0.1] * len(head) + [-2.0] * len(tail)
    assert (first.prompt, first.sample_prompt, first.prompt_index) == (CHAT, cont_prompts[0], 0)
    assert first.prompt_ids == encode_prompt(tokenizer, CHAT)  # trained as a completion of the plain prompt
    assert first.finish_reason == "stop" and not first.truncated
    assert scratch.completion == " 😊" and scratch.completion_ids == tail
    assert rollouts[5].completion == "Paris. 😊"


def test_a_continued_sample_is_cut_at_the_length_limit(tokenizer):
    head = tokenizer("Paris is the capital.", add_special_tokens=False)["input_ids"]
    sampler = _ScriptSampler(tokenizer, ["Paris is the capital. More."], tail=" It is a big old city, and")
    params = SamplingParams(temperature=0.8, max_new_tokens=2 * len(head))
    r = sample_with_hint(sampler, Batch([CHAT]), k=2, n_hinted=1, hint=" Hint.", params=params,
                         prefill=True).rollouts[1]
    assert r.hinted and len(r.completion_ids) == len(r.logprobs) == 2 * len(head)
    assert r.completion == tokenizer.decode(r.completion_ids)
    assert r.completion.startswith("Paris is the capital. It is") and not r.completion.endswith(", and")
    assert r.finish_reason == "length" and r.truncated


def test_a_first_sentence_longer_than_half_the_limit_is_not_continued(tokenizer):
    head = tokenizer("Paris is the capital.", add_special_tokens=False)["input_ids"]
    sampler = _ScriptSampler(tokenizer, ["Paris is the capital."])
    params = SamplingParams(temperature=0.8, max_new_tokens=2 * len(head) - 1)
    r = sample_with_hint(sampler, Batch([CHAT]), k=2, n_hinted=1, hint=" Hint.", params=params,
                         prefill=True).rollouts[1]
    assert sampler.calls[1][0] == [with_hint(CHAT, " Hint.")] and r.completion == " 😊"


def test_without_prefill_the_proposals_are_drawn_apart(tokenizer):
    sampler = _ScriptSampler(tokenizer, ["Paris is the capital."])
    sample_with_hint(sampler, Batch([CHAT]), k=4, n_hinted=2, hint=" Hint.", params=None)
    assert len(sampler.calls) == 1 and sampler.calls[0][0] == [CHAT, with_hint(CHAT, " Hint.")]


def test_min_new_tokens_is_checked():
    with pytest.raises(ValueError, match="min_new_tokens"):
        SamplingParams(max_new_tokens=4, min_new_tokens=5)
    with pytest.raises(ValueError, match="min_new_tokens"):
        SamplingParams(min_new_tokens=-1)


@pytest.mark.parametrize("backend", ["hf_sampler", pytest.param("vllm_sampler", marks=[pytest.mark.slow,
                                                                                  pytest.mark.vllm])])
def test_min_new_tokens_holds_the_end_token_back(backend, request):
    sampler = request.getfixturevalue(backend)
    answered = prefill(CHAT, "The capital of France is Paris.")
    eos = sampler.tokenizer.eos_token_id
    free = sampler.generate([answered], 1, SamplingParams(temperature=0, max_new_tokens=6))[0]
    held = sampler.generate([answered], 1, SamplingParams(temperature=0, max_new_tokens=6,
                                                          min_new_tokens=3))[0]
    assert free.completion_ids[0] == eos  # left alone, the model ends its answer there
    assert eos not in held.completion_ids[:3] and len(held.completion_ids) >= 3


def test_raft_continues_its_own_sentences_by_default(tokenizer):
    from raftkit.algorithms.raft import RAFT, RaftConfig

    algo = RAFT(None, RaftConfig(explore_hint=" Hint."), lr=1e-5, total_steps=1, k=4,
                sampling=SamplingParams(max_new_tokens=40))
    sampler = _ScriptSampler(tokenizer, ["Paris is the capital. Yes."])
    rollouts = algo.sample(sampler, Batch([CHAT]), iteration=1)
    assert [c[1] for c in sampler.calls] == [2, 1]  # the own samples first, then one continuation each
    assert [r.completion for r in rollouts if r.hinted] == ["Paris is the capital. 😊"] * 2
