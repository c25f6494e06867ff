"""The LM head applied only where it is needed, with the model's own final transform of the logits.

Both trainers project hidden states to the vocabulary only at the positions that predict completion
tokens (the vocabulary is large; prompts and padding need no logits). Calling the head directly skips
what a model's ``forward`` does to its logits after the head, so that transform is applied here, once:
Gemma-2/3's ``final_logit_softcapping``, Granite's ``logits_scaling`` and Cohere's ``logit_scale``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def lm_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, Callable[[Tensor], Tensor]]:
    """(transformer body, hidden states -> logits as the model's own forward computes them), also under
    a peft wrapper."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    backbone, head, config = (getattr(model, model.base_model_prefix), model.get_output_embeddings(),
                              model.config)
    softcap = getattr(config, "final_logit_softcapping", None)
    divide = getattr(config, "logits_scaling", None)  # Granite
    multiply = getattr(config, "logit_scale", None)  # Cohere

    def logits(hidden: Tensor) -> Tensor:
        out = head(hidden)
        if divide:
            out = out / divide
        if multiply:
            out = out * multiply
        if softcap:
            out = torch.tanh(out / softcap) * softcap
        return out

    return backbone, logits
