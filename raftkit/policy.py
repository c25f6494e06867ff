"""The policy being trained: a transformers causal LM with its tokenizer, optional LoRA, and the
weights it hands to the sampler after each update."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from raftkit.algorithms.lm_head import lm_parts
from raftkit.models import resolve_model


def bf16_supported() -> bool:
    """bf16 autocast pays off on GPUs and on CPUs with native bf16 (AVX-512 BF16 / AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX512_BF16", "AMX"))
    except Exception:
        return False


class Policy:
    """A causal LM in fp32 master weights, trained under bf16 autocast where the hardware supports it."""

    def __init__(
        self,
        model: str | None = None,
        *,
        lora_r: int = 0,
        lora_alpha: int | None = None,
        lora_dropout: float = 0.0,
        gradient_checkpointing: bool = False,
        bf16: bool | None = None,
        device: str | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = resolve_model(model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).to(self.device)
        self.bf16 = bf16_supported() if bf16 is None else bf16
        self.lora_r = lora_r
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.config.use_cache = False
        if lora_r:
            from peft import LoraConfig, get_peft_model

            cfg = LoraConfig(r=lora_r, lora_alpha=lora_alpha or 2 * lora_r, lora_dropout=lora_dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM")
            self.model = get_peft_model(self.model, cfg)
        # Refuse now, not after the first batch is sampled, a model whose logits raftkit cannot reproduce.
        lm_parts(self.model)

    def autocast(self):
        """The mixed-precision context for forward passes (a no-op in fp32)."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) pairs in the base model's checkpoint naming, for syncing into the sampler.

        With LoRA the adapters are folded into the base weights on the fly (W + B·A·scale) so the
        sampler serves exactly the current policy.
        """
        if not self.lora_r:
            for name, tensor in self.model.state_dict().items():
                yield name, tensor.detach()
            return
        with torch.no_grad():
            self.model.merge_adapter()
            try:
                base = self.model.get_base_model()
                for name, tensor in base.state_dict().items():
                    if "lora_" in name:
                        continue
                    yield name.replace(".base_layer.", "."), tensor.detach().clone()
            finally:
                self.model.unmerge_adapter()

    def save(self, path: str | Path) -> None:
        """Save a transformers folder loadable by ``AutoModelForCausalLM.from_pretrained`` (LoRA merged)."""
        path = Path(path)
        model = self.model
        if self.lora_r:
            model = _merged_copy(self.model)
        model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)


def load_reference(policy: Policy) -> torch.nn.Module | None:
    """The frozen starting model for KL terms and DPO, in the policy's own dtype and on its device.

    Reloaded from the model's folder, so a resumed run's reference is still the starting model. One rule for
    every algorithm: the same weights in the same dtype under the same autocast, so that before the first
    step log π/π_ref is exactly 0 (a bf16 copy of fp32 master weights would run its norms and embeddings in
    bf16 and differ by ~1e-3 nats per sequence). None with LoRA: the policy with its adapters switched off
    is the reference.
    """
    if policy.lora_r:
        return None
    from transformers import AutoModelForCausalLM

    dtype = next(policy.model.parameters()).dtype
    ref = AutoModelForCausalLM.from_pretrained(policy.path, dtype=dtype).to(policy.device)
    return ref.eval().requires_grad_(False)


def _merged_copy(peft_model):
    """A merged copy of a LoRA model, leaving the trained adapters in place."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()
