"""Evaluate a model folder or a run's model on held-out prompts, beside a base model: `raftkit eval`.

A run directory brings its own settings: its model (``RUN/model``), its base model, rewards, filters,
dataset and the very held-out rows it never trained on. Anything given explicitly overrides them.
One sampler serves both models: the base model's weights go in first, then the evaluated model's are
synced in place from its safetensors files (no second engine start) when the two share an architecture.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from raftkit.config import AlignConfig, build, load_file
from raftkit.datasets import HELDOUT, DatasetError, PromptSet, load_prompts
from raftkit.evaluation import metrics
from raftkit.models import ModelError, resolve_model

# Config keys that must agree for one engine to serve both models through a weight sync.
_SHAPE_KEYS = ("model_type", "architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "vocab_size", "tie_word_embeddings")


@dataclass
class EvalSettings:
    """What `raftkit eval` measures with; None means: from the run, else the AlignConfig default."""

    base: str | None = None
    dataset: str | None = None
    prompt_column: str | None = None
    answer_column: str | None = None
    rewards: Sequence[Any] | None = None
    filters: Sequence[Any] | None = None
    limit: int | None = None
    samples: int | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    sampler: str = "auto"
    seed: int = 0
    kv_cache_gib: float = 1.0


def is_run_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / "run.json").is_file() and (p / "config.yaml").is_file()


def resolve(target: str, settings: EvalSettings) -> tuple[str, str | None, AlignConfig, PromptSet]:
    """(model folder, base model folder or None, the effective config, the held-out prompts)."""
    values: dict[str, Any] = {}
    run_model = None
    if is_run_dir(target):
        saved = load_file(Path(target) / "config.yaml")
        values.update({k: v for k, v in saved.items() if k in AlignConfig.__dataclass_fields__})
        run_model = Path(target) / "model"
        if not (run_model / "config.json").is_file():
            raise ModelError(f"{target}: the run has no trained model yet (RUN/model is written when the "
                             "last iteration finishes); evaluate a finished run")
    for key, value in (("dataset", settings.dataset), ("prompt_column", settings.prompt_column),
                       ("answer_column", settings.answer_column), ("eval_samples", settings.samples),
                       ("eval_temperature", settings.temperature),
                       ("max_new_tokens", settings.max_new_tokens), ("rewards", settings.rewards),
                       ("filters", settings.filters)):
        if value is not None:
            values[key] = list(value) if isinstance(value, list | tuple) else value
    values.pop("output", None)
    cfg = build(AlignConfig, values, "eval")
    model = str(run_model) if run_model is not None else resolve_model(target)
    base_name = settings.base if settings.base is not None else (values.get("model") if run_model else None)
    base = resolve_model(base_name) if base_name not in (None, "", "none") else None
    prompts = heldout_prompts(cfg, from_run=run_model is not None and settings.dataset is None)
    if settings.limit is not None:
        prompts = prompts.subset(range(min(settings.limit, len(prompts))))
    if not len(prompts):
        raise DatasetError(f"{prompts.source}: no held-out prompts to evaluate on (the run held out "
                           f"{cfg.heldout}); pass --dataset with prompts of your own")
    return model, base, cfg, prompts


def heldout_prompts(cfg: AlignConfig, *, from_run: bool) -> PromptSet:
    """The rows to evaluate on: rows marked ``split: heldout`` where the dataset marks them, a run's own
    held-out rows (the same seeded split the run made), else every row of the dataset."""
    prompts = load_prompts(None if cfg.dataset in ("", "bundled") else cfg.dataset,
                           prompt_column=cfg.prompt_column)
    marked = HELDOUT in prompts.columns.get("split", ())
    if marked or from_run:
        n = cfg.heldout if from_run else len(prompts)
        return prompts.split_heldout(n, seed=cfg.seed)[1]
    return prompts


def run_eval(target: str, settings: EvalSettings, progress: Any = None) -> dict[str, Any]:
    """Evaluate ``target`` (a model folder, a run directory or 'default') and, if any, its base model.

    Returns ``{"model", "base", "dataset", "base_eval", "model_eval", "delta", "alarm"}``.
    """
    from raftkit.sampling import make_sampler

    model, base, cfg, prompts = resolve(target, settings)
    stack = metrics.eval_stack(cfg.rewards, cfg.filters, cfg.reward_timeout)
    batch = metrics.with_answer_column(prompts.batch(range(len(prompts))), cfg.answer_column)
    kwargs: dict[str, Any] = {"seed": settings.seed}
    if settings.sampler != "hf":
        kwargs["kv_cache_gib"] = settings.kv_cache_gib
    first = base or model
    sampler = make_sampler(settings.sampler, first, **kwargs)
    results: dict[str, Any] = {"model": model, "base": base, "dataset": prompts.source,
                               "answer_column": cfg.answer_column}
    try:
        def measure(which: str) -> dict[str, Any]:
            if progress is not None:
                progress(f"evaluating {which} on {len(batch)} prompts")
            return metrics.evaluate(sampler, batch, stack, samples=cfg.eval_samples,
                                     temperature=cfg.eval_temperature, max_new_tokens=cfg.max_new_tokens,
                                     top_p=cfg.top_p)

        if base is not None:
            results["base_eval"] = measure("the base model")
            if same_shape(base, model):
                sampler.sync(safetensors_weights(model))
            else:
                sampler.close()
                sampler = make_sampler(settings.sampler, model, **kwargs)
        results["model_eval"] = measure("the model")
    finally:
        sampler.close()
    before = results.get("base_eval")
    if before is not None:
        results["delta"] = metrics.compare(before, results["model_eval"])
    results["alarm"] = metrics.alarm(before, results["model_eval"])
    return results


def same_shape(a: str, b: str) -> bool:
    """Whether two model folders have the same architecture and sizes (so weights can be swapped)."""
    def shape(path: str) -> dict[str, Any]:
        config = json.loads((Path(path) / "config.json").read_text())
        return {k: config.get(k) for k in _SHAPE_KEYS}

    return shape(a) == shape(b)


def safetensors_weights(folder: str) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of a model folder's safetensors files, in checkpoint naming."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder}: no .safetensors files to load")
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                yield name, st.get_tensor(name)
