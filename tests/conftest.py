"""Shared fixtures: the default model and its tokenizer, a tiny Llama, one vLLM engine, one HF sampler.

`tiny_llama_config` is a plain function (test modules import it with `from conftest import
tiny_llama_config`) for the tests that need a tiny model with settings of their own.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import TYPE_CHECKING

# Before anything imports vLLM: the engine must run in this process (weight sync), with a small KV cache.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import pytest

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerBase


def tiny_llama_config(tokenizer: PreTrainedTokenizerBase, **overrides) -> LlamaConfig:
    """A 2-layer, 32-wide Llama over `tokenizer`'s vocabulary (random weights: fast, not fluent).

    `overrides` win over the defaults, so a test states only what it needs differently.
    """
    from transformers import LlamaConfig

    settings = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": True,
    }
    return LlamaConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The converted SmolLM2-135M-Instruct folder (converted once, then cached)."""
    from raftkit.models import default_model_path as path

    return str(path())


@pytest.fixture(scope="session")
def default_tokenizer(default_model_path):
    """The default model's tokenizer, loaded once (shared: tests must not change it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, default_tokenizer) -> str:
    """A seeded tiny Llama (`tiny_llama_config`) saved with the default tokenizer; load it, never write it."""
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(default_tokenizer)).save_pretrained(path)
    default_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def vllm_sampler(default_model_path):
    """One in-process VLLMSampler on the default model for the whole session (engine start ~30-60 s).

    Tests that sync changed weights into it must sync the original weights back before they end.
    """
    from raftkit.sampling import vllm_import_error

    reason = vllm_import_error()
    if reason is not None:
        pytest.skip(f"vLLM cannot be imported here ({reason})")
    from raftkit.sampling.vllm_engine import VLLMSampler

    sampler = VLLMSampler(default_model_path, seed=0, kv_cache_gib=1)
    try:
        yield sampler
    finally:
        sampler.close()


@pytest.fixture(scope="session")
def hf_sampler(default_model_path):
    """An HFSampler (bf16 where supported) on the default model, shared by the session."""
    from raftkit.sampling.hf_generate import HFSampler

    sampler = HFSampler(default_model_path, seed=0)
    yield sampler
    sampler.close()


@contextlib.contextmanager
def inline_plugin(*fns, name: str = "inline-test", hook=None):
    """Register ``fns`` (or a custom ``hook`` implementation) as a plugin for the duration of a ``with``
    block, unregistering it in ``finally`` (llm's pattern), so one test's rewards never leak into another's
    registry. Yields the plugin module."""
    from raftkit.rewards import hookimpl, plugin_manager

    module = types.ModuleType(name)

    def register_rewards(register):
        for fn in fns:
            register(fn)

    module.register_rewards = hookimpl(hook or register_rewards)
    plugin_manager().register(module, name=name)
    try:
        yield module
    finally:
        plugin_manager().unregister(name=name)
