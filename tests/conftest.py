"""Shared fixtures: the default model, one vLLM engine for the whole session, one HF sampler."""

import os

# Before anything imports vLLM: the engine must run in this process (weight sync), with a small KV cache.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import pytest


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The converted SmolLM2-135M-Instruct folder (converted once, then cached)."""
    from raftkit.models import default_model_path as path

    return str(path())


@pytest.fixture(scope="session")
def vllm_sampler(default_model_path):
    """One in-process VLLMSampler on the default model for the whole session (engine start ~30-60 s).

    Tests that sync changed weights into it must sync the original weights back before they end.
    """
    from raftkit.sampler import vllm_import_error

    reason = vllm_import_error()
    if reason is not None:
        pytest.skip(f"vLLM cannot be imported here ({reason})")
    from raftkit.sampler_vllm import VLLMSampler

    sampler = VLLMSampler(default_model_path, seed=0, kv_cache_gib=1)
    try:
        yield sampler
    finally:
        sampler.close()


@pytest.fixture(scope="session")
def hf_sampler(default_model_path):
    """An HFSampler (bf16 where supported) on the default model, shared by the session."""
    from raftkit.sampler_hf import HFSampler

    sampler = HFSampler(default_model_path, seed=0)
    yield sampler
    sampler.close()
