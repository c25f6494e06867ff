"""The head applied only where needed gives the model's own logits, final transforms included.

Regression (GRPO issue): the shortcut skipped Gemma-2's final_logit_softcapping, Granite's logits_scaling
and Cohere's logit_scale; on Gemma-2 the SFT loss was 138 against 28.6 from the model's own logits.
"""

from __future__ import annotations

import pytest
import torch

from raftkit.algorithms import sft
from raftkit.algorithms.lm_head import lm_parts

SIZES = {"vocab_size": 96, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


def _model(kind: str) -> torch.nn.Module:
    import transformers as t

    configs = {
        "llama": lambda: t.LlamaConfig(**SIZES),
        "gemma2": lambda: t.Gemma2Config(**SIZES, head_dim=8, final_logit_softcapping=5.0),
        "granite": lambda: t.GraniteConfig(**SIZES, logits_scaling=4.0),
        "cohere": lambda: t.CohereConfig(**SIZES, logit_scale=0.25),
    }
    torch.manual_seed(0)
    model = t.AutoModelForCausalLM.from_config(configs[kind]())
    with torch.no_grad():  # large logits, so that a skipped transform shows
        model.get_output_embeddings().weight.mul_(30)
    return model.eval()


@pytest.mark.parametrize("kind", ["llama", "gemma2", "granite", "cohere"])
def test_head_matches_the_models_own_logits_and_sft_loss(kind):
    model = _model(kind)
    ids = torch.randint(3, 96, (2, 10))
    with torch.no_grad():
        own = model(input_ids=ids).logits
        backbone, head = lm_parts(model)
        ours = head(backbone(input_ids=ids).last_hidden_state)
    torch.testing.assert_close(ours, own, atol=1e-4, rtol=1e-4)

    labels = ids.clone()
    labels[:, :4] = sft.IGNORE  # a prompt of 4 tokens
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    with torch.no_grad():
        loss, n = sft.completion_loss(model, batch)
        expected, m = sft.completion_loss_sum(own, labels)
    assert n == m == 12
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
