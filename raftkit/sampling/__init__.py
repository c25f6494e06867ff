"""Sampling k completions per prompt: the interface, the vLLM engine and transformers generate."""
