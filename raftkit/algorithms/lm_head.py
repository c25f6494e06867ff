"""The LM head applied only where it is needed, with the model's own final transform of the logits.

Both trainers project hidden states to the vocabulary only at the positions that predict completion
tokens (the vocabulary is large; prompts and padding need no logits). Calling the head directly skips
what a model's ``forward`` does to its logits after the head, so that transform is applied here, once:
Gemma-2/3's ``final_logit_softcapping``, Granite's ``logits_scaling``, Cohere's ``logit_scale`` and
Falcon-H1's ``lm_head_multiplier``. Any other transform would make the trainer's log-probs differ from the
sampler's, so each model is checked once (``check_head``) and refused where the two disagree.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor

_CHECKED: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()  # models whose head matched their forward


def lm_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, Callable[[Tensor], Tensor]]:
    """(transformer body, hidden states -> logits as the model's own forward computes them), also under
    a peft wrapper. Raises ValueError where the model's logits are not what raftkit computes (``check_head``).
    """
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    backbone, head, config = (getattr(model, model.base_model_prefix), model.get_output_embeddings(),
                              model.config)
    softcap = getattr(config, "final_logit_softcapping", None)
    divide = getattr(config, "logits_scaling", None)  # Granite
    multiply = getattr(config, "logit_scale", None)  # Cohere
    head_multiplier = getattr(config, "lm_head_multiplier", None)  # Falcon-H1

    def logits(hidden: Tensor) -> Tensor:
        out = head(hidden)
        if head_multiplier is not None and head_multiplier != 1:
            out = out * head_multiplier
        if divide:
            out = out / divide
        if multiply:
            out = out * multiply
        if softcap:
            out = torch.tanh(out / softcap) * softcap
        return out

    check_head(model, backbone, logits)
    return backbone, logits


def check_head(model: torch.nn.Module, backbone: torch.nn.Module, logits: Callable[[Tensor], Tensor]) -> None:
    """Once per model: ``logits(backbone(x))`` must equal ``model(x).logits`` on a short input (in eval mode,
    without gradient; the model's mode is restored). Raises ValueError, in one line, where they differ."""
    if model in _CHECKED:
        return
    vocab = getattr(model.config, "vocab_size", None) or 8
    ids = (torch.arange(1, 6) % vocab).unsqueeze(0).to(next(model.parameters()).device)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            own = model(input_ids=ids).logits.float()
            ours = logits(backbone(input_ids=ids).last_hidden_state).float()
    finally:
        model.train(training)
    scale = 1.0 + float(own.abs().max()) if own.numel() else 1.0
    if own.shape != ours.shape or not torch.allclose(ours, own, rtol=1e-3, atol=1e-3 * scale):
        gap = float((ours - own).abs().max()) if own.shape == ours.shape else float("nan")
        raise ValueError(
            f"{type(model).__name__}: the logits raftkit computes from the model's hidden states differ from "
            f"its own forward's (largest gap {gap:.3g}): its forward transforms the logits after the LM head "
            "in a way raftkit does not apply (it applies final_logit_softcapping, logits_scaling, "
            "logit_scale and lm_head_multiplier), so trained log-probs would not be the sampler's; use "
            "another model")
    _CHECKED.add(model)
