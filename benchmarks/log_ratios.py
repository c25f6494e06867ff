"""RAFT's log π/π_ref pass: each prompt once (shared_prompt.py) against every sample run whole.

Workload shaped like one iteration of the default `make align`: 16 bundled prompts (chat-templated, about
52 tokens) with 4 samples each of 10 to 40 tokens, through the policy and the starting model. The baseline
is what RAFT ran before: ``dpo.sequence_logprobs`` on micro-batches of 8 whole sequences, in batch order.
Both are timed after one untimed warm-up call, best of 3; the ratio is baseline / shared.

    .venv/bin/python benchmarks/log_ratios.py
"""

from __future__ import annotations

import copy
import time

import torch

from raftkit.algorithms.dpo import sequence_logprobs
from raftkit.algorithms.kl_ranking import log_ratios
from raftkit.algorithms.sft import Example, make_example
from raftkit.datasets import load_prompts
from raftkit.policy import Policy

TEXT = ("The answer is {a}. It is a well known fact, and many people learn it at school when they study "
        "the world around them and the history of the places they live in every day.")


def workload(policy: Policy, prompts: int = 16, samples: int = 4) -> list[Example]:
    data = load_prompts(limit=prompts)
    answers = data.columns.get("answers") or [["it"]] * len(data.prompts)
    out = []
    for prompt, accepted in zip(data.prompts, answers, strict=True):  # prompt-major, as RAFT's rollouts
        ids = policy.tokenizer(TEXT.format(a=accepted[0]), add_special_tokens=False).input_ids
        lengths = range(10, 10 * samples + 1, 10)  # 10, 20, 30, 40 tokens
        out.extend(make_example(policy.tokenizer, prompt, ids[:n], "length") for n in lengths)
    return out


def baseline(policy: Policy, reference: torch.nn.Module, examples: list[Example], size: int) -> list[float]:
    pad = policy.tokenizer.pad_token_id
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(examples), size):
            part = examples[start : start + size]
            out.extend((sequence_logprobs(policy.model, part, pad) - sequence_logprobs(reference, part, pad))
                       .tolist())
    return out


def best_of(fn, repeats: int = 3) -> tuple[float, list[float]]:
    fn()  # warm-up
    times, result = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    torch.manual_seed(0)
    policy = Policy(bf16=False)
    reference = copy.deepcopy(policy.model)
    with torch.no_grad():  # a drifted policy, so the ratios are not all zero
        for p in policy.model.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    examples = workload(policy)
    tokens = sum(len(e) for e in examples)
    t_base, want = best_of(lambda: baseline(policy, reference, examples, 8))
    t_shared, got = best_of(lambda: log_ratios(policy, reference, examples, 8))
    diff = max(abs(a - b) for a, b in zip(want, got, strict=True))
    print(f"{len(examples)} samples, {tokens} prompt+completion tokens, policy and reference")
    print(f"whole sequences (baseline): {t_base:6.2f} s")
    print(f"shared prompt:              {t_shared:6.2f} s   {t_base / t_shared:.2f}x faster")
    print(f"largest difference in log-ratio: {diff:.2e} nats")


if __name__ == "__main__":
    main()
