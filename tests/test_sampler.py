"""The sampler's shared helpers and the transformers backend (tiny model: fast; default model: slow).

The vLLM backend is tested in test_sampler_vllm.py on the shared engine.
"""

import math
import random
import sys

import pytest
import torch
from conftest import tiny_llama_config

from raftkit.chat import encode_prompt
from raftkit.rollouts import Rollout
from raftkit.sampling import make_sampler
from raftkit.sampling.hf_generate import HFSampler, _SampledLogprobs
from raftkit.sampling.sampler import (
    MAX_PARTIAL_TOKENS,
    SamplingParams,
    cut_tokens,
    decode,
    draw_lengths,
    encode_prompts,
    finish_rollout,
    trim_partial_char,
)
from raftkit.text import self_dialogue_cut

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def tokenizer(default_tokenizer):
    return default_tokenizer


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tokenizer) -> str:
    """The tiny Llama with sharper logits (its own copy: the weights are scaled), saved as a model folder."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(tokenizer, pad_token_id=tokenizer.pad_token_id))
    with torch.no_grad():  # larger logits than the default init, so temperature and top-k matter
        model.lm_head.weight.mul_(20)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> HFSampler:
    return HFSampler(tiny_dir, seed=0, dtype="float32", batch_size=4)


# --------------------------------------------------------------------------------------------------
# Parameters and helpers
# --------------------------------------------------------------------------------------------------


def test_params_reject_nonsense():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="random_max_new_tokens"):
        SamplingParams(random_max_new_tokens=(10, 5))
    with pytest.raises(ValueError, match="stop"):
        SamplingParams(stop=[""])
    assert SamplingParams(random_max_new_tokens=(4, 9)).longest == 9
    assert SamplingParams(max_new_tokens=7).longest == 7


def test_draw_lengths_fixed_or_seeded_in_range():
    assert draw_lengths(random.Random(0), 3, SamplingParams(max_new_tokens=5)) == [5, 5, 5]
    params = SamplingParams(random_max_new_tokens=(64, 128))
    a = draw_lengths(random.Random(3), 200, params)
    assert a == draw_lengths(random.Random(3), 200, params)
    assert min(a) >= 64 and max(a) <= 128 and len(set(a)) > 30


def test_encode_prompts_skips_too_long_and_empty(tokenizer):
    prompts = [CHAT, "word " * 100, "", "Hello"]
    encoded, skipped = encode_prompts(tokenizer, prompts, max_tokens=50)
    assert skipped == [1, 2]
    assert encoded[1] is None and encoded[2] is None
    assert encoded[0] == encode_prompt(tokenizer, CHAT)
    # chat prompts go through the template and end with the assistant header
    assert tokenizer.decode(encoded[0]).endswith("<|im_start|>assistant\n")
    assert encoded[3] == tokenizer("Hello")["input_ids"]


def test_cut_tokens_keeps_ids_logprobs_and_text_consistent(tokenizer):
    text = "Paris is the capital.###Human: and what about Spain?"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert decode(tokenizer, ids) == text
    logprobs = [-float(i) for i in range(len(ids))]  # position tags, to check alignment
    cut = self_dialogue_cut(text)
    kept_ids, kept_lp, kept_text = cut_tokens(tokenizer, ids, logprobs, text, cut)
    assert kept_text == decode(tokenizer, kept_ids)
    assert text[:cut].startswith(kept_text) and "#" not in kept_text
    assert kept_ids == ids[: len(kept_ids)] and kept_lp == logprobs[: len(kept_ids)]
    # the longest such prefix: one more token would reach past the cut
    assert not text[:cut].startswith(decode(tokenizer, ids[: len(kept_ids) + 1]))
    assert kept_text == "Paris is the capital."


def test_cut_tokens_never_splits_a_multibyte_character(tokenizer):
    text = "Hi 😀😀 User: more"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    cut = len("Hi 😀")  # straight after the first emoji
    kept_ids, kept_lp, kept_text = cut_tokens(tokenizer, ids, [0.0] * len(ids), text, cut)
    assert kept_text == decode(tokenizer, kept_ids) == "Hi 😀"
    assert "\ufffd" not in kept_text and len(kept_lp) == len(kept_ids)
    assert cut_tokens(tokenizer, ids, [0.0] * len(ids), text, 0) == ([], [], "")


def test_trim_partial_char_drops_a_cut_emoji_with_its_ids_and_logprobs(tokenizer):
    text = "Greenhouse 👘👌"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # each emoji: 3 byte tokens here
    assert decode(tokenizer, ids) == text
    logprobs = [-float(i) for i in range(len(ids))]  # position tags, to check alignment
    for drop in (1, 2):  # 👌 cut after 2 or 1 of its byte tokens
        cut = ids[:-drop]
        cut_text = decode(tokenizer, cut)
        assert cut_text.endswith("\ufffd")  # what the sampler used to hand out
        kept_ids, kept_lp, kept_text = trim_partial_char(tokenizer, cut, logprobs[:-drop], cut_text)
        assert kept_text == decode(tokenizer, kept_ids) == "Greenhouse 👘"
        assert "\ufffd" not in kept_text
        assert kept_ids == ids[: len(kept_ids)] and kept_lp == logprobs[: len(kept_ids)]
        assert len(cut) - len(kept_ids) == len(logprobs[:-drop]) - len(kept_lp) == 3 - drop
    # dropping all three leaves a whole 👘: nothing to trim, the very same ids
    whole = ids[:-3]
    assert trim_partial_char(tokenizer, whole, logprobs[:-3], decode(tokenizer, whole)) == (
        whole, logprobs[:-3], "Greenhouse 👘")
    # 👘 cut as well: back to the word; a completion of a half character only: nothing left
    both = ids[:-4]
    assert trim_partial_char(tokenizer, both, logprobs[:-4], decode(tokenizer, both))[2] == "Greenhouse"
    head = ids[2:3]  # " " plus the first byte token of 👘
    assert decode(tokenizer, head).endswith("\ufffd")
    assert trim_partial_char(tokenizer, head, [-1.0], decode(tokenizer, head)) == ([], [], "")


def test_trim_partial_char_leaves_whole_replacement_characters_alone(tokenizer):
    for text in ("a \ufffd b", "ends with \ufffd", "\ufffd"):  # U+FFFD the model wrote, whole
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert decode(tokenizer, ids) == text
        assert trim_partial_char(tokenizer, ids, [0.0] * len(ids), text) == (ids, [0.0] * len(ids), text)
    # a whole U+FFFD in the middle stays while the cut emoji at the end goes
    ids = tokenizer("x \ufffd y 🎉", add_special_tokens=False)["input_ids"][:-1]
    kept_ids, _, kept_text = trim_partial_char(tokenizer, ids, [0.0] * len(ids), decode(tokenizer, ids))
    assert kept_text == decode(tokenizer, kept_ids) == "x \ufffd y"


def _raw(tokenizer, text: str, eos: bool = True) -> tuple[list[int], list[float]]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if eos else [])
    return ids, [-0.5] * len(ids)


def _finish(tokenizer, text, reason="stop", eos=True, **params) -> Rollout:
    ids, lps = _raw(tokenizer, text, eos)
    return finish_rollout(tokenizer, prompt_index=3, prompt="p", prompt_ids=[7], ids=ids, logprobs=lps,
                          finish_reason=reason, params=SamplingParams(**params))


def test_finish_rollout_reasons_and_cuts(tokenizer):
    done = _finish(tokenizer, "Paris.")
    # the end-of-turn token stays in the ids (the trainer learns to stop) but not in the text
    assert done.completion == "Paris." and done.completion_ids[-1] == tokenizer.eos_token_id
    assert (done.finish_reason, done.truncated, done.prompt_index, done.prompt_ids) == ("stop", False, 3, [7])

    long = _finish(tokenizer, "Paris is", reason="length", eos=False)
    assert (long.finish_reason, long.truncated) == ("length", True)

    # the length limit fell inside an emoji: the half character goes, with its ids and log-probs
    ids, _ = _raw(tokenizer, "So green 🎉🎉", eos=False)
    half = finish_rollout(tokenizer, prompt_index=0, prompt="p", prompt_ids=[], ids=ids[:-1],
                          logprobs=[-float(i) for i in range(len(ids) - 1)], finish_reason="length",
                          params=SamplingParams())
    assert half.completion == decode(tokenizer, half.completion_ids) == "So green 🎉"
    assert half.completion_ids == ids[: len(half.completion_ids)] and len(half.completion_ids) < len(ids) - 1
    assert half.logprobs == [-float(i) for i in range(len(half.completion_ids))]
    assert (half.finish_reason, half.truncated) == ("length", True)
    # not a cut: the model ended its turn itself, so its ids stay as sampled
    own_end = [*ids[:-1], tokenizer.eos_token_id]
    ended = finish_rollout(tokenizer, prompt_index=0, prompt="p", prompt_ids=[], ids=own_end,
                           logprobs=[0.0] * len(ids), finish_reason="stop", params=SamplingParams())
    assert ended.completion_ids == own_end

    stopped = _finish(tokenizer, "one, two. three", reason="length", eos=False, stop=[".", "three"])
    assert stopped.completion == "one, two" and stopped.finish_reason == "stop" and not stopped.truncated
    assert len(stopped.completion_ids) == len(stopped.logprobs) and stopped.completion_ids[-1] != 2

    dialogue = _finish(tokenizer, "Paris.\nUser: and Spain?")
    # the cut keeps the newline before "User:"
    assert dialogue.completion == "Paris.\n" and dialogue.finish_reason == "truncated"
    assert decode(tokenizer, dialogue.completion_ids) == dialogue.completion

    kept = _finish(tokenizer, "Paris.\nUser: and Spain?", truncate_self_dialogue=False)
    assert kept.completion == "Paris.\nUser: and Spain?" and kept.finish_reason == "stop"

    with pytest.raises(ValueError, match="log-probs"):
        finish_rollout(tokenizer, prompt_index=0, prompt="p", prompt_ids=[], ids=[1, 2], logprobs=[0.0],
                       finish_reason="stop", params=SamplingParams())


def test_recorder_gathers_each_sampled_token_hand_computed():
    rec = _SampledLogprobs()
    # step 0: p = (1/4, 3/4); the model then draws token 1. step 1: uniform over 2; draws token 0.
    rec(torch.tensor([[5]]), torch.tensor([[0.0, math.log(3)]]))
    rec(torch.tensor([[5, 1]]), torch.tensor([[2.0, 2.0]]))
    out = rec.finish(torch.tensor([[1, 0]]))
    assert out.shape == (1, 2)
    assert out[0, 0].item() == pytest.approx(math.log(0.75))
    assert out[0, 1].item() == pytest.approx(math.log(0.5))


def test_make_sampler_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("tgi", "x")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# HFSampler on a tiny random model (fast)
# --------------------------------------------------------------------------------------------------


def test_hf_shapes_order_and_processed_logprobs(tiny, tokenizer):
    prompts = [CHAT, "Once upon a time", "x " * 600]
    params = SamplingParams(temperature=0.7, top_k=50, max_new_tokens=6, truncate_self_dialogue=False)
    out = tiny.generate(prompts, 3, params)
    assert tiny.skipped == [2]
    assert [r.prompt_index for r in out] == [0, 0, 0, 1, 1, 1]  # prompt-major, k each
    model = tiny.model
    for r in out:
        assert r.prompt_ids == encode_prompt(tokenizer, prompts[r.prompt_index])
        assert len(r.completion_ids) == len(r.logprobs) and 1 <= len(r.completion_ids) <= 6
        assert r.completion == decode(tokenizer, r.completion_ids)
        assert r.truncated == (r.finish_reason == "length")
        if r.finish_reason == "length":  # fewer than 6 only where a half character at the end was dropped
            assert 6 - MAX_PARTIAL_TOKENS <= len(r.completion_ids) <= 6
            assert not r.completion.endswith("\ufffd")
        # log-probs of the distribution actually sampled from: logits / T, top-50 renormalised
        ids = torch.tensor([r.prompt_ids + r.completion_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, len(r.prompt_ids) - 1 : -1].float() / 0.7
        kth = logits.topk(50, dim=-1).values[:, -1:]
        ref = logits.masked_fill(logits < kth, -math.inf).log_softmax(-1)
        expected = ref.gather(1, torch.tensor(r.completion_ids)[:, None]).squeeze(1)
        assert torch.allclose(torch.tensor(r.logprobs), expected, atol=1e-3), (r.logprobs, expected)
        # ... which differ from the raw (temperature 1) log-probs
        raw = (logits * 0.7).log_softmax(-1).gather(1, torch.tensor(r.completion_ids)[:, None]).squeeze(1)
        assert not torch.allclose(torch.tensor(r.logprobs), raw, atol=1e-2)


def test_hf_ignores_the_models_own_generation_defaults(tiny, tokenizer):
    """Regression: a model whose generation_config sets repetition_penalty (or min_p, ...) was sampled with
    it while the log-probs claimed plain temperature sampling (gaps up to 4.9 nats at 1.3)."""
    model = tiny.model
    saved = model.generation_config
    model.generation_config = type(saved)(repetition_penalty=3.0, no_repeat_ngram_size=1, min_p=0.5)
    try:
        out = tiny.generate(["Once upon a time"], 4, SamplingParams(temperature=1.0, max_new_tokens=8,
                                                                     truncate_self_dialogue=False))
        assert model.generation_config.repetition_penalty == 3.0  # the model's own config is restored
    finally:
        model.generation_config = saved
    for r in out:
        ids = torch.tensor([r.prompt_ids + r.completion_ids])
        with torch.no_grad():
            ref = model(ids).logits[0, len(r.prompt_ids) - 1 : -1].float().log_softmax(-1)
        expected = ref.gather(1, torch.tensor(r.completion_ids)[:, None]).squeeze(1)
        assert torch.allclose(torch.tensor(r.logprobs), expected, atol=1e-3), (r.logprobs, expected)


def test_hf_reproducible_and_leaves_caller_rng_alone(tiny_dir):
    params = SamplingParams(max_new_tokens=5, truncate_self_dialogue=False)
    a = HFSampler(tiny_dir, seed=7, dtype="float32")
    b = HFSampler(tiny_dir, seed=7, dtype="float32")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = [r.completion_ids for r in a.generate(["Hello"], 4, params)]
    assert torch.equal(torch.rand(1), before)  # the caller's torch RNG did not move
    assert first == [r.completion_ids for r in b.generate(["Hello"], 4, params)]
    second = [r.completion_ids for r in a.generate(["Hello"], 4, params)]
    assert second != first  # a new call draws new samples


def test_hf_random_lengths_respect_each_draw(tiny):
    params = SamplingParams(random_max_new_tokens=(2, 9), truncate_self_dialogue=False)
    out = tiny.generate(["Hello", "Bonjour"], 8, params)
    assert len(out) == 16
    lengths = [len(r.completion_ids) for r in out if r.finish_reason == "length"]
    assert all(2 <= n <= 9 for n in lengths) and len(set(lengths)) >= 3


def test_hf_sync_serves_the_new_weights(tiny, tiny_dir):
    from transformers import AutoModelForCausalLM

    greedy = SamplingParams(temperature=0, max_new_tokens=6, truncate_self_dialogue=False)
    original = {n: t.clone() for n, t in tiny.model.state_dict().items()}
    other = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    before = tiny.generate(["Hello"], 1, greedy)[0]
    try:
        assert tiny.sync(other.state_dict().items()) >= 0
        after = tiny.generate(["Hello"], 1, greedy)[0]
        ids = torch.tensor([before.prompt_ids])
        expected = other.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                                  pad_token_id=2)[0, ids.shape[1]:].tolist()
        assert after.completion_ids == expected[: len(after.completion_ids)]
        assert after.completion_ids != before.completion_ids
        with pytest.raises(KeyError, match="not in the sampler"):
            tiny.sync([("no.such.weight", torch.zeros(1))])
    finally:
        tiny.sync(original.items())
    assert tiny.generate(["Hello"], 1, greedy)[0].completion_ids == before.completion_ids


def test_make_sampler_auto_falls_back_without_vllm(monkeypatch, capsys, tiny_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    sampler = make_sampler("auto", tiny_dir, seed=0, kv_cache_gib=1.0, max_model_len=256)
    assert isinstance(sampler, HFSampler)
    notice = capsys.readouterr().err.splitlines()[0]  # one line, whatever the terminal width
    assert "vLLM is not available (ModuleNotFoundError" in notice and "sampling with transformers" in notice


# --------------------------------------------------------------------------------------------------
# HFSampler on the default model (slow)
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_hf_default_model_greedy_answer_and_logprobs(hf_sampler):
    out = hf_sampler.generate([CHAT], 1, SamplingParams(temperature=0, max_new_tokens=24))
    r = out[0]
    assert "Paris" in r.completion
    assert r.finish_reason == "stop" and r.completion_ids[-1] == hf_sampler.tokenizer.eos_token_id
    assert r.completion == decode(hf_sampler.tokenizer, r.completion_ids)
    ids = torch.tensor([r.prompt_ids + r.completion_ids])
    with torch.no_grad():
        ref = hf_sampler.model(ids).logits[0, len(r.prompt_ids) - 1 : -1].float().log_softmax(-1)
    expected = ref.gather(1, torch.tensor(r.completion_ids)[:, None]).squeeze(1)
    # the same bf16 model, once with the KV cache and once without: bf16 rounding only
    assert (torch.tensor(r.logprobs) - expected).abs().max().item() < 0.15


@pytest.mark.slow
def test_hf_default_model_never_ends_in_half_an_emoji(hf_sampler):
    """The model continues a row of 🎉 (3 byte tokens each, greedy): limits of 1-5 tokens stop inside one."""
    tok = hf_sampler.tokenizer
    prompt = "🎉🎉🎉🎉🎉🎉"
    ids = torch.tensor([encode_prompt(tok, prompt)])
    with torch.no_grad():  # the raw greedy continuation, for reference
        raw = hf_sampler.model.generate(ids.to(hf_sampler.device), attention_mask=torch.ones_like(ids),
                                        do_sample=False, max_new_tokens=5,
                                        pad_token_id=tok.pad_token_id)[0, ids.shape[1]:].tolist()
    params = SamplingParams(temperature=0, random_max_new_tokens=(1, 5))
    rng = random.Random()
    rng.setstate(hf_sampler._rng.getstate())
    limits = draw_lengths(rng, 8, params)  # the limits generate() is about to draw, in rollout order
    assert any(decode(tok, raw[:n]).endswith("\ufffd") for n in limits)  # some limit does cut an emoji
    out = hf_sampler.generate([prompt], 8, params)
    for limit, r in zip(limits, out, strict=True):
        assert not r.completion.endswith("\ufffd"), (limit, r.completion)
        assert r.completion == decode(tok, r.completion_ids) and len(r.completion_ids) == len(r.logprobs)
        # the longest prefix of the limit's ids that ends with a whole character
        whole = max(n for n in range(limit + 1) if not decode(tok, raw[:n]).endswith("\ufffd"))
        assert r.completion_ids == raw[:whole], limit
        assert (r.finish_reason, r.truncated) == ("length", True)
