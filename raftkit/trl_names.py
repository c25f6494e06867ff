"""TRL's GRPOConfig option names, accepted wherever they mean what a raftkit setting means.

``TRL_NAMES`` is the one table: `raftkit align` reads it for its options, ``raftkit.align(**options)``
and ``--config`` files for their keys. A TRL name is one of three things:

- another spelling of a raftkit field (``num_generations`` is ``k``, ``learning_rate`` is ``lr``), with
  TRL's value converted where the two spell it differently (``scale_rewards: true`` is ``group``);
- harmless: raftkit already behaves as the value asks (``top_k: 0``) or the setting has no counterpart
  that matters (``logging_steps``, ``bf16``), so it is ignored with a warning;
- not supported, with the reason and what to use instead (``top_k: 50``, ``max_steps``).

Names TRL and raftkit share (``temperature``, ``top_p``, ``seed``, ``beta``, ``epsilon``, ``loss_type``,
``num_iterations``...) need no entry. docs/from-trl.md lists every GRPOConfig field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raftkit.options import ConfigError

ANY = object()  # ``harmless=ANY``: every value is ignored
KEEP = object()  # what a converter returns when TRL's value changes nothing in raftkit
REWARD_WEIGHTS = "reward_weights"  # folded into the rewards' weights (fold_reward_weights)


class TrlNameError(ConfigError):
    """A TRL setting raftkit does not support, or one given twice under both names."""


@dataclass(frozen=True)
class TrlName:
    """What one TRL field is in raftkit."""

    field: str = ""  # raftkit's field with the same meaning; "" where there is none
    convert: Callable[[Any], Any] | None = None  # TRL's value -> raftkit's (KEEP: no change)
    harmless: Any = ()  # values ignored with a warning (ANY: all); any other value is refused
    why: str = ""  # why it is ignored or refused, and what to use instead

    def is_harmless(self, value: Any) -> bool:
        # Compared with their types: YAML's `false` is no `0`, and `0` no `0.0` (_number lists both).
        return self.harmless is ANY or any(type(value) is type(h) and value == h for h in self.harmless)


def _scale_rewards(value: Any) -> Any:
    return {True: "group", False: "none"}.get(value, value) if isinstance(value, bool) else value


def _use_vllm(value: Any) -> Any:
    if not isinstance(value, bool):
        raise TrlNameError(f"expected true or false, got {value!r}")
    return "vllm" if value else "hf"


def _is_correction_on(value: Any) -> Any:
    if not isinstance(value, bool):
        raise TrlNameError(f"expected true or false, got {value!r}")
    return KEEP if value else "none"


def _number(*values: float) -> tuple[Any, ...]:
    """Harmless numbers, as int and float (YAML reads ``1`` and ``1.0`` differently)."""
    return tuple(v for x in values for v in {int(x), float(x)} if v == x)


def _ignored(why: str) -> TrlName:
    return TrlName(harmless=ANY, why=why)


def _only(*values: Any, why: str) -> TrlName:
    return TrlName(harmless=values, why=why)


_LOGGING = "raftkit logs every iteration to RUN_DIR (metrics.jsonl, rollouts) and --report-to"
_SERVER = "used only in TRL's vLLM server mode; raftkit runs vLLM in its own process"
_NO_LOSS = "used only by TRL's sapo/vespo losses; raftkit's losses are grpo, dr_grpo and dapo (--loss-type)"
_ADAPTIVE = "used only with use_adaptive_entropy, which raftkit does not have"
_STEPS = ("TRL counts optimiser steps or epochs; raftkit counts iterations (sample, score, update): "
          "use --iterations (GRPO takes --mini-batches x --passes-per-batch optimiser steps per iteration)")

TRL_NAMES: dict[str, TrlName] = {
    # ---- other spellings of raftkit fields
    "num_generations": TrlName("k"),
    "max_completion_length": TrlName("max_new_tokens"),
    "learning_rate": TrlName("lr"),
    "output_dir": TrlName("output"),
    "mask_truncated_completions": TrlName("mask_truncated"),
    "steps_per_generation": TrlName("mini_batches"),
    "per_device_train_batch_size": TrlName("micro_batch_size"),
    "vllm_importance_sampling_mode": TrlName("is_correction"),
    "vllm_importance_sampling_clip_max": TrlName("is_cap"),
    "vllm_importance_sampling_cap": TrlName("is_cap"),
    "vllm_importance_sampling_correction": TrlName("is_correction", convert=_is_correction_on),
    "use_vllm": TrlName("sampler", convert=_use_vllm),
    "scale_rewards": TrlName("scale_rewards", convert=_scale_rewards),
    REWARD_WEIGHTS: TrlName(REWARD_WEIGHTS),
    # ---- the model
    "model_init_kwargs": _only(None, {}, why="raftkit loads --model as saved; set dtype and the like there"),
    "trust_remote_code": _only(False, why="raftkit runs no model code from a hub"),
    "router_aux_loss_coef": _only(None, why="raftkit adds no Mixture-of-Experts auxiliary loss"),
    "disable_dropout": _only(False, why="raftkit trains with the model's own dropout (0 in most current "
                                        "models); set it to 0 in the model's config.json"),
    "cast_lm_head_to_fp32": _only(False, why="raftkit keeps the model's own head precision"),
    # ---- the data and batches
    "remove_unused_columns": _ignored("raftkit passes every dataset column to the rewards"),
    "shuffle_dataset": _only(True, why="raftkit always shuffles the prompts with --seed"),
    "num_generations_eval": _only(None, why="the held-out evaluation samples --eval-samples per prompt"),
    "pad_to_multiple_of": _ignored("padding does not change what raftkit trains"),
    "ds3_gather_for_generation": _ignored("raftkit does not use DeepSpeed"),
    "generation_batch_size": _only(None, why="raftkit samples --prompts-per-iteration x --k completions per "
                                             "iteration; set those"),
    # ---- sampling
    "top_k": _only(*_number(0), why="raftkit samples with --temperature and --top-p only"),
    "min_p": _only(None, *_number(0), why="raftkit samples with --temperature and --top-p only"),
    "repetition_penalty": _only(*_number(1), why="raftkit samples with --temperature and --top-p only; "
                                                 "its degeneracy filters (--filter) penalise loops"),
    "generation_kwargs": _only(None, {}, why="raftkit samples with --temperature, --top-p and "
                                             "--max-new-tokens only"),
    "chat_template_kwargs": _only(None, {}, why="raftkit applies the model's chat template as it is"),
    "cache_implementation": _ignored("raftkit's samplers manage their own cache"),
    "vllm_mode": _only("colocate", why="raftkit runs vLLM in its own process (colocated); it has no "
                                       "server mode"),
    "vllm_model_impl": _only("vllm", why="raftkit uses vLLM's own model implementation"),
    "vllm_enable_sleep_mode": _ignored("raftkit keeps its vLLM engine awake and updates it in place"),
    "vllm_structured_outputs_regex": _only(None, why="raftkit does not constrain the sampler's output"),
    "vllm_server_base_url": _only(None, why=_SERVER),
    "vllm_server_host": _ignored(_SERVER),
    "vllm_server_port": _ignored(_SERVER),
    "vllm_server_timeout": _ignored(_SERVER),
    "vllm_group_port": _ignored(_SERVER),
    "vllm_gpu_memory_utilization": _ignored("raftkit sizes vLLM's KV cache in GiB: --kv-cache-gib"),
    "vllm_max_model_length": _only(None, why="raftkit sizes vLLM's context from the prompts and "
                                             "--max-new-tokens"),
    "vllm_tensor_parallel_size": _only(*_number(1), why="raftkit runs vLLM on one device per process "
                                                        "(several processes: torchrun, docs/distributed.md)"),
    "use_transformers_continuous_batching": _only(False, why="--sampler hf uses transformers' generate"),
    "transformers_continuous_batching_config": _only(None, {}, why="--sampler hf uses transformers' "
                                                                   "generate"),
    "use_transformers_paged": _only(False, why="--sampler hf uses transformers' generate"),
    # ---- the loss
    "delta": _only(None, why="raftkit clips the ratio on one side per advantage sign (--epsilon, "
                             "--epsilon-high); it has no two-sided bound"),
    "importance_sampling_level": _only("token", why="raftkit's ratios are per token (GSPO's sequence level "
                                                    "is not available)"),
    "multi_objective_aggregation": _only("sum_then_normalize", why="raftkit sums the weighted rewards, "
                                                                   "then normalises"),
    "sync_ref_model": _only(False, why="raftkit's reference is the starting model throughout"),
    "ref_model_mixup_alpha": _ignored("used only with sync_ref_model, which raftkit does not have"),
    "ref_model_sync_steps": _ignored("used only with sync_ref_model, which raftkit does not have"),
    "top_entropy_quantile": _only(*_number(1), why="raftkit keeps every token in the loss"),
    "entropy_coef": _only(*_number(0), why="raftkit's loss has no entropy bonus"),
    "use_adaptive_entropy": _only(False, why="raftkit's loss has no entropy bonus"),
    "entropy_coef_min": _ignored(_ADAPTIVE),
    "entropy_coef_max": _ignored(_ADAPTIVE),
    "entropy_coef_delta": _ignored(_ADAPTIVE),
    "entropy_target": _ignored(_ADAPTIVE),
    "sapo_temperature_neg": _ignored(_NO_LOSS),
    "sapo_temperature_pos": _ignored(_NO_LOSS),
    "vespo_k_pos": _ignored(_NO_LOSS),
    "vespo_lambda_pos": _ignored(_NO_LOSS),
    "vespo_k_neg": _ignored(_NO_LOSS),
    "vespo_lambda_neg": _ignored(_NO_LOSS),
    "vllm_importance_sampling_clip_min": _only(None, why="raftkit's mismatch correction has an upper "
                                                         "bound only (--mismatch-cap)"),
    "off_policy_mask_threshold": _only(None, why="raftkit does not mask off-policy sequences"),
    "use_bias_correction_kl": _only(False, why="raftkit's KL term (--kl-beta) is not weighted by the "
                                               "importance ratio; leave the key out"),
    "max_tool_calling_iterations": _only(None, why="raftkit samples single-turn completions (no tools)"),
    # ---- logging
    "log_completions": _ignored(f"{_LOGGING}; every completion is kept"),
    "log_multimodal": _ignored(_LOGGING),
    "num_completions_to_print": _ignored(_LOGGING),
    "log_unique_prompts": _ignored(_LOGGING),
    "log_completions_hub_repo": _only(None, why="raftkit uploads nothing to a hub"),
    # ---- transformers' TrainingArguments, as GRPOConfig inherits them
    "logging_steps": _ignored(_LOGGING),
    "logging_strategy": _ignored(_LOGGING),
    "logging_first_step": _ignored(_LOGGING),
    "logging_dir": _ignored(_LOGGING),
    "run_name": _ignored("the run directory names the run (--output)"),
    "bf16": _ignored("raftkit picks the precision from the hardware (bf16 where it is native)"),
    "fp16": _ignored("raftkit picks the precision from the hardware (bf16 where it is native)"),
    "tf32": _ignored("raftkit picks the precision from the hardware"),
    "max_steps": _only(*_number(-1), why=_STEPS),
    "num_train_epochs": TrlName(why=_STEPS),
    "warmup_steps": _only(*_number(0), why="give the warm-up as a share of the steps: --warmup-ratio"),
    "lr_scheduler_type": _only("linear", why="GRPO, Reinforce-Rej and RAFT++ warm up (--warmup-ratio) "
                                             "then decay linearly; RAFT's schedule is --lr-schedule"),
    "optim": _only("adamw_torch", "adamw_torch_fused", why="raftkit trains with AdamW"),
    "adam_beta1": _only(0.9, why="raftkit uses AdamW's default betas (0.9, 0.999)"),
    "adam_beta2": _only(0.999, why="raftkit uses AdamW's default betas (0.9, 0.999)"),
    "adam_epsilon": _only(1e-8, why="raftkit uses AdamW's default epsilon (1e-8)"),
    "save_steps": _ignored("raftkit saves a resumable checkpoint every --save-every iterations"),
    "save_strategy": _ignored("raftkit saves a resumable checkpoint every --save-every iterations"),
    "save_total_limit": _ignored("raftkit keeps one resumable checkpoint (and --checkpoint-every copies)"),
    "save_only_model": _ignored("raftkit saves the model and a resumable checkpoint"),
    "overwrite_output_dir": _only(False, why="raftkit never overwrites a run; continue one with --resume"),
    "resume_from_checkpoint": _only(None, why="continue a run with --resume RUN_DIR"),
    "do_eval": _ignored("raftkit evaluates on held-out prompts before and after (--heldout)"),
    "eval_strategy": _ignored("raftkit evaluates on held-out prompts before and after (--heldout)"),
    "eval_steps": _ignored("raftkit evaluates on held-out prompts before and after (--heldout)"),
    "per_device_eval_batch_size": _ignored("raftkit evaluates on held-out prompts before and after "
                                           "(--heldout)"),
    "auto_find_batch_size": _only(False, why="set --micro-batch-size"),
    "dataloader_num_workers": _ignored("raftkit reads the prompts itself"),
    "dataloader_pin_memory": _ignored("raftkit reads the prompts itself"),
    "disable_tqdm": _ignored("raftkit shows its own progress"),
    "push_to_hub": _only(False, why="raftkit uploads nothing to a hub"),
    "hub_model_id": _only(None, why="raftkit uploads nothing to a hub"),
    "deepspeed": _only(None, why="raftkit runs several processes with torchrun (docs/distributed.md)"),
    "fsdp": _only(None, "", [], why="raftkit runs several processes with torchrun (docs/distributed.md)"),
    "lr_scheduler_kwargs": _only(None, {}, why="GRPO's schedule is a warm-up (--warmup-ratio), then linear "
                                               "decay; RAFT's is --lr-schedule"),
    "use_liger_kernel": _ignored("raftkit computes its loss itself, with the LM head only where "
                                 "completions need it"),
    "torch_empty_cache_steps": _ignored("raftkit manages the device cache itself"),
}


def aliases_of(field: str) -> list[str]:
    """TRL's other names for a raftkit field that need no conversion (they become option spellings)."""
    return [n for n, e in TRL_NAMES.items() if e.field == field and n != field and e.convert is None]


def translate(values: Mapping[str, Any], source: str, known: Callable[[str], bool] = lambda _: False,
              warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``values`` with TRL's names as raftkit's: renamed, converted, ignored (``warn`` says so) or refused.

    ``known(name)`` says whether a name is raftkit's own: such a name is never read as TRL's.
    ``reward_weights`` stays; ``fold_reward_weights`` applies it once the rewards are known.
    Raises TrlNameError naming ``source``, the key and the reason.
    """
    out: dict[str, Any] = {}
    renamed: dict[str, str] = {}
    for key, value in values.items():
        entry = TRL_NAMES.get(key) if isinstance(key, str) else None
        if entry is None or (known(key) and entry.field != key):
            out[key] = value
            continue
        if entry.field:
            if entry.convert is not None:
                try:
                    value = entry.convert(value)
                except TrlNameError as e:
                    raise TrlNameError(f"{source}: '{key}': {e}") from None
                if value is KEEP:
                    continue
            target = entry.field
            if target != key and (target in values or target in renamed):
                other = renamed.get(target, target)
                raise TrlNameError(f"{source}: '{key}' is TRL's name for '{target}', and '{other}' is given "
                                   "too; give one of them")
            if target != key:
                renamed[target] = key
            out[target] = value
        elif entry.is_harmless(value):
            if warn is not None:
                warn(f"{source}: '{key}' is ignored: {entry.why}")
        else:
            shown = "" if entry.harmless is ANY else f" = {value!r}"
            raise TrlNameError(f"{source}: TRL's '{key}'{shown} is not supported: {entry.why}")
    return out


def refusal(option: str) -> str:
    """The message for a TRL option raftkit has no option for (``--top-k``), or '' for other names."""
    key = option.lstrip("-").replace("-", "_")
    entry = TRL_NAMES.get(key)
    if entry is None or entry.field:
        return ""
    verdict = "is ignored by raftkit" if entry.harmless is ANY else "is not supported"
    return f"{option} (TRL's {key}) {verdict}: {entry.why}" + (
        "; leave it out" if entry.harmless is ANY else "")


def fold_reward_weights(values: dict[str, Any], source: str) -> None:
    """Apply TRL's ``reward_weights`` (one weight per reward, in order) to ``values['rewards']`` in place,
    as each reward's own weight (``NAME*WEIGHT``), so config.yaml keeps raftkit's form."""
    from raftkit.rewards import RegistryError, RewardSpec

    weights = values.pop(REWARD_WEIGHTS, None)
    if weights is None:
        return
    if isinstance(weights, str):
        weights = [w for w in weights.replace(",", " ").split() if w]
    if not isinstance(weights, list | tuple):
        raise TrlNameError(f"{source}: 'reward_weights' must be a list of numbers, got {weights!r}")
    rewards = list(values.get("rewards") or [])
    if len(weights) != len(rewards):
        raise TrlNameError(f"{source}: 'reward_weights' has {len(weights)} weight(s) for {len(rewards)} "
                           "reward(s); give one per reward, in order")
    out = []
    for i, (reward, weight) in enumerate(zip(rewards, weights, strict=True)):
        try:
            spec = RewardSpec.coerce(reward)
        except RegistryError as e:
            raise TrlNameError(f"{source}: 'rewards'[{i}]: {e}") from None
        if spec.weight != 1:
            raise TrlNameError(f"{source}: reward {i + 1} ('{spec.name}') has its own weight "
                               f"*{spec.weight:g}; give it once (reward_weights or NAME*WEIGHT)")
        try:
            number = float(weight) if not isinstance(weight, bool) else None
            weighted = RewardSpec(spec.name, spec.params, number)  # refuses NaN and infinity
        except (TypeError, ValueError, RegistryError):
            raise TrlNameError(f"{source}: 'reward_weights'[{i}] must be a finite number, got "
                               f"{weight!r}") from None
        out.append({**reward, "weight": number} if isinstance(reward, dict) else str(weighted))
    values["rewards"] = out
