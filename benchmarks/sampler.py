"""Sampler throughput: the same workload through HFSampler and VLLMSampler, plus the weight-sync time.

Workload: 32 bundled prompts x k=8 x 64 new tokens, temperature 0.9, default model.
Each backend gets one untimed warm-up call first (first calls pay one-time kernel set-up). Self-dialogue
truncation is off so the count is of tokens the backend actually generated.

    .venv/bin/python benchmarks/sampler.py            # both backends, ratio, sync time
    .venv/bin/python benchmarks/sampler.py --only hf  # one backend

The results are in docs/results.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

FALLBACK_PROMPTS = [
    "What is the capital of France?", "Why is the sky blue?", "How do bees make honey?",
    "What is photosynthesis?", "Name three primary colours.", "How far away is the Moon?",
    "What does a compiler do?", "Why do cats purr?", "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?", "How do airplanes fly?", "What is a prime number?",
    "What causes rain?", "How many legs does a spider have?", "What is gravity?",
    "Why do leaves change colour in autumn?", "What is the largest ocean?", "How does a rainbow form?",
    "What is an atom?", "Why is exercise healthy?", "What is the speed of light?",
    "How do vaccines work?", "What is a volcano?", "Why do we dream?", "What is democracy?",
    "How do magnets work?", "What is the tallest mountain?", "Why is the ocean salty?",
    "What is a black hole?", "How do plants drink water?", "What is inflation?", "Why do birds migrate?",
]


def load_workload_prompts(n: int) -> tuple[list, str]:
    try:
        from raftkit.datasets import load_prompts

        prompts = list(load_prompts().prompts)[:n]
        if len(prompts) == n:
            return prompts, "bundled prompt set"
    except ImportError:
        pass
    return [[{"role": "user", "content": q}] for q in FALLBACK_PROMPTS[:n]], "benchmark's own questions"


def run(sampler, prompts, k: int, params, warmup_params) -> dict:
    sampler.generate(prompts[:4], 2, warmup_params)  # untimed
    start = time.perf_counter()
    out = sampler.generate(prompts, k, params)
    seconds = time.perf_counter() - start
    tokens = sum(len(r.completion_ids) for r in out)
    return {"seconds": seconds, "tokens": tokens, "tok_s": tokens / seconds, "rollouts": len(out)}


def time_sync(sampler, weights: dict, repeats: int) -> list[float]:
    return [sampler.sync(weights.items()) for _ in range(repeats)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--only", choices=["hf", "vllm"])
    ap.add_argument("--sync-repeats", type=int, default=3)
    ap.add_argument("--kv-cache-gib", type=float, default=1.0)
    args = ap.parse_args()

    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM

    from raftkit.models import default_model_path
    from raftkit.sampling.sampler import SamplingParams

    console = Console()
    path = str(default_model_path())
    prompts, source = load_workload_prompts(args.prompts)
    params = SamplingParams(temperature=args.temperature, max_new_tokens=args.new_tokens,
                            truncate_self_dialogue=False)
    warmup = SamplingParams(temperature=args.temperature, max_new_tokens=8, truncate_self_dialogue=False)
    console.print(f"workload: {len(prompts)} prompts ({source}) x k={args.k} x {args.new_tokens} new tokens, "
                  f"temperature {args.temperature}; {platform.processor() or platform.machine()}, "
                  f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
                  f"load average {os.getloadavg()[0]:.2f}")
    # The policy's weights as the trainer hands them over: fp32, HF checkpoint names.
    weights = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).state_dict()
    results: dict[str, dict] = {}

    # HF first: the in-process vLLM engine changes process-wide thread settings once it starts.
    if args.only in (None, "hf"):
        from raftkit.sampling.hf_generate import HFSampler

        start = time.perf_counter()
        hf = HFSampler(path, seed=0)
        load = time.perf_counter() - start
        with console.status("HFSampler generating"):
            results["hf"] = run(hf, prompts, args.k, params, warmup)
        results["hf"].update(start=load, sync=time_sync(hf, weights, args.sync_repeats))
        del hf
        gc.collect()

    if args.only in (None, "vllm"):
        from raftkit.sampling.vllm_engine import VLLMSampler

        vllm = VLLMSampler(path, seed=0, kv_cache_gib=args.kv_cache_gib)
        with console.status("VLLMSampler generating"):
            results["vllm"] = run(vllm, prompts, args.k, params, warmup)
        results["vllm"].update(start=vllm.start_seconds, sync=time_sync(vllm, weights, args.sync_repeats))
        vllm.close()

    table = Table(title="sampler throughput (default model)")
    for col in ("backend", "start s", "rollouts", "tokens", "seconds", "tokens/s", "weight sync s (median)"):
        table.add_column(col, justify="right")
    for name, r in results.items():
        sync = f"{statistics.median(r['sync']):.2f}  {[round(s, 2) for s in r['sync']]}"
        table.add_row(name, f"{r['start']:.1f}", str(r["rollouts"]), str(r["tokens"]), f"{r['seconds']:.1f}",
                      f"{r['tok_s']:.0f}", sync)
    console.print(table)
    if len(results) == 2:
        ratio = results["vllm"]["tok_s"] / results["hf"]["tok_s"]
        console.print(f"vLLM / HF throughput ratio: [bold]{ratio:.2f}[/bold] (target >= 1.3); "
                      f"load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
