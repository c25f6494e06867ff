"""The head applied only where needed gives the model's own logits, final transforms included.

Regression: the shortcut skipped Gemma-2's final_logit_softcapping, Granite's logits_scaling, Cohere's
logit_scale and Falcon-H1's lm_head_multiplier; on Gemma-2 the SFT loss was 138 against 28.6 from the model's
own logits. A transform raftkit does not know is refused, once per model, before it trains on wrong log-probs.
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
        "falcon_h1": lambda: t.FalconH1Config(**SIZES, head_dim=8, mamba_d_ssm=32, mamba_n_heads=4,
                                              mamba_d_head=8, mamba_d_state=8, mamba_n_groups=1,
                                              mamba_chunk_size=16, lm_head_multiplier=0.25),
    }
    torch.manual_seed(0)
    model = t.AutoModelForCausalLM.from_config(configs[kind]())
    with torch.no_grad():  # large logits, so that a skipped transform shows
        model.get_output_embeddings().weight.mul_(30)
    return model.eval()


@pytest.mark.parametrize("kind", ["llama", "gemma2", "granite", "cohere", "falcon_h1"])
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


def test_an_unknown_transform_of_the_logits_is_refused_once_per_model():
    import transformers as t

    class Scaled(t.LlamaForCausalLM):  # a model whose forward does something to the logits after the head
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits * 3.0
            return out

    torch.manual_seed(0)
    model = Scaled(t.LlamaConfig(**SIZES)).train()
    with pytest.raises(ValueError, match=r"Scaled.*logits.*differ") as caught:
        lm_parts(model)
    assert "\n" not in str(caught.value)
    assert model.training  # the check ran in eval mode and left the mode as it was
    calls = []
    plain = _model("llama")
    plain.register_forward_hook(lambda *a: calls.append(1))
    for _ in range(3):
        lm_parts(plain)
    assert len(calls) == 1  # checked once, then cached
