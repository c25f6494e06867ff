"""The transformers sampler: batched ``generate`` with left padding and the KV cache.

Used with ``--sampler hf`` and wherever vLLM cannot be imported. bf16 weights are its fastest path on a
CPU with native bf16, so that is the default there.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from raftkit.models import resolve_model
from raftkit.policy import bf16_supported
from raftkit.rollouts import Prompt, Rollout
from raftkit.sampling.sampler import SamplingParams, draw_lengths, encode_prompts, finish_rollout


class _SampledLogprobs:
    """A logits processor, last in the chain, that records each sampled token's log-prob under the
    processed distribution (after temperature, top-k, top-p), the one the token was drawn from.

    ``output_scores`` would give the same numbers but keeps a (rows x vocab) tensor per step: 0.8 GB for
    64 rows x 64 tokens with this vocabulary. Here only the previous step's log-softmax is held: at step
    t the token drawn at step t-1 is the last column of ``input_ids``.
    """

    def __init__(self) -> None:
        self.previous: torch.Tensor | None = None
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(rows x steps) log-probs of ``new_tokens``, the generated part of the sequences."""
        if self.previous is not None and len(self.steps) < new_tokens.shape[1]:
            self.steps.append(self.previous.gather(1, new_tokens[:, len(self.steps)].unsqueeze(1)).squeeze(1))
        self.previous = None
        return torch.stack(self.steps[: new_tokens.shape[1]], dim=1)


class HFSampler:
    """k samples per prompt with transformers ``generate``.

    ``model`` is a path (loaded here, bf16 where the CPU supports it) or a loaded model, which is then
    sampled from as it is. Each call is reproducible for a given ``seed`` and call number; the torch RNG
    of the caller is left untouched.
    """

    def __init__(self, model: str | Any, *, tokenizer: Any = None, seed: int = 0, batch_size: int = 64,
                 dtype: torch.dtype | str | None = None, progress: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if isinstance(model, str):
            path = resolve_model(model)
            if isinstance(dtype, str):
                dtype = getattr(torch, dtype) if dtype != "auto" else None
            if dtype is None:
                dtype = torch.bfloat16 if (torch.cuda.is_available() or bf16_supported()) else torch.float32
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            if torch.cuda.is_available():
                self.model = self.model.to("cuda")
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        else:
            self.model = model
            if tokenizer is None:
                raise ValueError("HFSampler: pass tokenizer= together with a loaded model")
        self.model.eval()
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.seed = seed
        self.batch_size = batch_size
        self.progress = progress
        self.skipped: list[int] = []
        self._rng = random.Random(seed)  # per-sample random lengths
        self._calls = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(self, prompts: Sequence[Prompt], k: int, params: SamplingParams) -> list[Rollout]:
        """k rollouts per prompt, prompt-major; prompts longer than ``max_prompt_tokens`` are skipped
        and listed in ``skipped``."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        encoded, self.skipped = encode_prompts(self.tokenizer, prompts, params.max_prompt_tokens)
        # One row per sample. Rows are batched by prompt length so left padding stays short.
        rows = [(i, j, length) for i, ids in enumerate(encoded) if ids is not None
                for j, length in enumerate(draw_lengths(self._rng, k, params))]
        rows.sort(key=lambda r: (len(encoded[r[0]] or []), r[0], r[1]))
        batches = [rows[s : s + self.batch_size] for s in range(0, len(rows), self.batch_size)]
        seed = self.seed * 1_000_003 + self._calls
        self._calls += 1

        results: dict[tuple[int, int], Rollout] = {}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for batch in _progress(batches, self.progress, "sampling (transformers)"):
                new_ids, logprobs = self._generate_batch([encoded[i] or [] for i, _, _ in batch],
                                                         max(r[2] for r in batch), params)
                for (i, j, length), ids, lps in zip(batch, new_ids, logprobs, strict=True):
                    ids, lps = ids[:length], lps[:length]  # a sample's own (random) limit
                    reason = "length"
                    if self.tokenizer.eos_token_id in ids:  # stopped: keep the end-of-turn token itself
                        end = ids.index(self.tokenizer.eos_token_id) + 1
                        ids, lps, reason = ids[:end], lps[:end], "stop"
                    elif len(ids) < length:  # a stop string ended it
                        reason = "stop"
                    results[i, j] = finish_rollout(
                        self.tokenizer, prompt_index=i, prompt=prompts[i], prompt_ids=encoded[i] or [],
                        ids=ids, logprobs=lps, finish_reason=reason, params=params)
        return [results[key] for key in sorted(results)]

    @torch.no_grad()
    def _generate_batch(self, prompt_ids: list[list[int]], max_new_tokens: int,
                        params: SamplingParams) -> tuple[list[list[int]], list[list[float]]]:
        """Sampled ids (padding included) and their log-probs for one left-padded batch."""
        from transformers import (
            GenerationConfig,
            LogitsProcessorList,
            MinNewTokensLengthLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        width = max(len(p) for p in prompt_ids)  # left padding: every row's last token is its prompt's
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompt_ids])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        sample = params.temperature > 0
        # The warpers are passed explicitly, before the recorder, and generate's own are switched off
        # (temperature 1, top-k 0, top-p 1): generate appends its warpers after custom processors, so a
        # recorder could not otherwise see the distribution the token is drawn from.
        processors: list[Any] = []
        if params.min_new_tokens:
            processors.append(MinNewTokensLengthLogitsProcessor(
                width, params.min_new_tokens, self.tokenizer.eos_token_id, device=str(self.device)))
        if sample:
            if params.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k > 0:
                processors.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(params.top_p))
        recorder = _SampledLogprobs()
        processors.append(recorder)
        warpers_off = {"temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {}
        config = GenerationConfig(
            do_sample=sample, max_new_tokens=max_new_tokens, eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.pad_id, stop_strings=list(params.stop) or None, use_cache=True, **warpers_off,
        )
        # generate() fills what `config` leaves at its defaults from the model's own generation_config
        # (repetition_penalty, min_p, no_repeat_ngram_size...), which would sample from a distribution the
        # recorded log-probs do not describe. A blank one for the call: only `config` applies.
        own, self.model.generation_config = self.model.generation_config, GenerationConfig()
        try:
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config,
                                      logits_processor=LogitsProcessorList(processors),
                                      tokenizer=self.tokenizer)
        finally:
            self.model.generation_config = own
        new = out[:, width:]
        logprobs = recorder.finish(new)
        return new.tolist(), logprobs.tolist()

    @torch.no_grad()
    def sync(self, weights: Iterable[tuple[str, torch.Tensor]]) -> float:
        """Copy the policy's weights (HF checkpoint names) into the model in place; return seconds taken.

        Tensors that already are this model's (an HFSampler built on the policy's own model) are skipped.
        """
        start = time.perf_counter()
        own = self.model.state_dict()
        unknown = []
        for name, tensor in weights:
            target = own.get(name)
            if target is None:
                unknown.append(name)
            elif target.data_ptr() != tensor.data_ptr():
                target.copy_(tensor.to(device=target.device, dtype=target.dtype))
        if unknown:
            raise KeyError(f"HFSampler.sync: {len(unknown)} weight(s) not in the sampler's model, "
                           f"e.g. {unknown[:3]}")
        return time.perf_counter() - start

    def close(self) -> None:
        """Nothing to shut down; the model is freed with the sampler."""


def _progress(items: list, show: bool, label: str):
    """Iterate with a transient rich progress bar when asked and there is more than one batch."""
    if not show or len(items) < 2:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
