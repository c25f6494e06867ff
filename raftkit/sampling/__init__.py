"""Sampling k completions per prompt: the interface, the vLLM engine and transformers generate.

- ``sampler``: the ``Sampler`` interface, ``SamplingParams``, and the cut and trim helpers both back-ends
  share;
- ``vllm_engine`` (``VLLMSampler``): an in-process vLLM engine whose weights are replaced in place;
- ``hf_generate`` (``HFSampler``): batched transformers ``generate``, the fallback where vLLM is missing;
- ``factory``: ``make_sampler``, which picks one (re-exported here).
"""

from __future__ import annotations

from typing import Any

from raftkit.sampling.factory import make_sampler, vllm_import_error
from raftkit.sampling.sampler import Sampler, SamplingParams

__all__ = ["Sampler", "SamplingParams", "make_sampler", "vllm_import_error"]


def __getattr__(name: str) -> Any:
    # `from raftkit.sampling import VLLMSampler, HFSampler` works without importing vLLM up front.
    if name == "VLLMSampler":
        from raftkit.sampling.vllm_engine import VLLMSampler

        return VLLMSampler
    if name == "HFSampler":
        from raftkit.sampling.hf_generate import HFSampler

        return HFSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
