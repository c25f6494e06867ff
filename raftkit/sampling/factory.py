"""Choosing a backend: ``make_sampler("auto" | "vllm" | "hf", model)``.

The back-ends are imported only when chosen, so a machine without vLLM never imports it; they depend on
``raftkit.sampling.sampler`` (the interface and shared helpers), never on this module.
"""

from __future__ import annotations

from typing import Any, Literal

from raftkit.sampling.sampler import Sampler

_HF_KWARGS = {"tokenizer", "seed", "batch_size", "dtype", "progress"}


def vllm_import_error() -> str | None:
    """Why vLLM cannot be used here, or None when it imports."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # a broken install raises more than ImportError (e.g. missing torch ops)
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def make_sampler(kind: Literal["auto", "vllm", "hf"], model: str, **kwargs: Any) -> Sampler:
    """Build a sampler. "auto" is vLLM where it imports, else transformers with a one-line notice.

    kwargs go to the chosen class; vLLM-only options (kv_cache_gib, max_model_len, engine kwargs) are
    dropped when "auto" falls back to transformers.
    """
    if kind not in ("auto", "vllm", "hf"):
        raise ValueError(f"unknown sampler {kind!r}: choose auto, vllm or hf")
    if kind == "auto":
        reason = vllm_import_error()
        if reason is None:
            kind = "vllm"
        else:
            from rich.console import Console

            Console(stderr=True).print(
                f"[yellow]vLLM is not available ({reason}); sampling with transformers generate "
                "(slower).[/yellow]",
                highlight=False, soft_wrap=True)
            kind = "hf"
            kwargs = {k: v for k, v in kwargs.items() if k in _HF_KWARGS}
    if kind == "vllm":
        from raftkit.sampling.vllm_engine import VLLMSampler

        return VLLMSampler(model, **kwargs)
    from raftkit.sampling.hf_generate import HFSampler

    return HFSampler(model, **kwargs)
