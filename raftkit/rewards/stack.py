"""The reward contract and the one scoring path every algorithm shares.

A reward is ``fn(prompts, completions, **kwargs) -> list[float | None]``, exactly as TRL's GRPOTrainer
calls it: dataset columns and cheap extras (``completion_ids``) arrive as keyword arguments. A filter is
called the same way and returns the number of degenerate-pattern hits per sample.

``RewardStack.score`` runs the configured rewards and filters (each on a thread of its own, an async one
in its own event loop there, all concurrently, each under a timeout and on its own copy of the arguments),
checks every value, and combines them: a weighted sum of the rewards that apply (``None`` is left out, as
TRL does), then the filters' verdicts.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import inspect
import math
import numbers
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from raftkit.rewards import filter_ranking, refs
from raftkit.rewards.info import RegistryError, RewardInfo
from raftkit.rewards.registry import Registry, load_registry
from raftkit.rollouts import Batch, Rollout

FILTER_ACTIONS = ("penalty", "drop")
DEFAULT_TIMEOUT = 60.0
# The arguments every reward call gets from the stack itself; no dataset column may take these names.
STACK_ARGUMENTS = ("prompts", "completions")


class RewardError(RuntimeError):
    """A reward or filter misbehaved: the message names it, the batch index and the offending value."""

    def __init__(self, message: str, reward: str = "", index: int | None = None, value: Any = None):
        super().__init__(message)
        self.reward, self.index, self.value = reward, index, value


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL hands it over: a string, or chat messages (assistant turns joined).

    >>> completion_text("Hi!")
    'Hi!'
    >>> completion_text([{"role": "assistant", "content": "Hi!"}])
    'Hi!'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list | tuple):
        messages = [m for m in completion if isinstance(m, dict)]
        said = [m for m in messages if m.get("role", "assistant") == "assistant"] or messages
        return "".join(_content_text(m.get("content")) for m in said)
    return "" if completion is None else str(completion)


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


# --------------------------------------------------------------------------- specs


_WEIGHT = re.compile(r"\*\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_KEY = re.compile(r"\w+")
SPEC_KEYS = ("name", "params", "weight")  # the keys of a reward given as a config mapping
SPEC_FORM = "[PLUGIN:]NAME[:key=value,...][*WEIGHT]"


@dataclass(frozen=True)
class RewardSpec:
    """One ``--reward``/``--filter`` entry: ``[PLUGIN:]NAME[:key=value[,key=value...]][*WEIGHT]``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> RewardSpec:
        """Parse the CLI form: ``length:target=30,alpha=0.15``, ``emoji:max=4*2``, ``pkg:emoji:max=3``."""
        text = text.strip()
        weight = 1.0
        if m := _WEIGHT.search(text):
            weight, text = float(m.group(1)), text[: m.start()]
        name, rest = _split_name(text)
        if "*" in name:  # `emoji*abc`: the weight is what is wrong, not the name
            raise RegistryError(f"--reward {text!r}: the weight after '*' must be a number, got "
                                f"{text.rpartition('*')[2]!r} (form: {SPEC_FORM})")
        if not name or not all(name.split(":")):
            raise RegistryError(f"--reward {text!r}: missing the reward name (form: {SPEC_FORM})")
        return cls(name, _parse_params(name, rest), weight)

    @classmethod
    def coerce(cls, value: str | dict | RewardSpec) -> RewardSpec:
        """Accept the CLI string, a config mapping ``{name, params, weight}``, or a spec."""
        if isinstance(value, RewardSpec):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, dict):
            return cls.from_mapping(value)
        raise RegistryError(
            f"cannot read a reward from {value!r}: use '{SPEC_FORM}' or a mapping {{name, params, weight}}")

    @classmethod
    def from_mapping(cls, value: dict) -> RewardSpec:
        """A config mapping ``{name: length, params: {target: 30}, weight: 2}``, every key checked."""
        for key in value:
            if key not in SPEC_KEYS:
                close = difflib.get_close_matches(str(key), SPEC_KEYS, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise RegistryError(
                    f"reward {value!r}: unknown key '{key}'.{hint} (keys: {', '.join(SPEC_KEYS)})")
        name = value.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"reward {value!r}: 'name' must be a reward name, got {name!r}")
        params = value.get("params")
        if params is not None and not isinstance(params, dict):
            raise RegistryError(f"reward '{name}': 'params' must be a mapping such as {{target: 30}}, got "
                                f"{params!r}")
        return cls(name.strip(), {str(k): v for k, v in (params or {}).items()},
                   _number(value.get("weight", 1.0), f"reward '{name}': 'weight'"))

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight):  # an infinite or NaN weight makes every total inf or NaN
            raise RegistryError(
                f"reward '{self.name}': the weight must be a finite number, got {self.weight}")

    def __str__(self) -> str:
        params = ",".join(f"{k}={v}" for k, v in self.params.items())
        text = self.name + (f":{params}" if params else "")
        # An explicit `*1` keeps a value that ends in `*2` from reading back as a weight.
        if self.weight != 1 or _WEIGHT.search(text):
            shown = f"{self.weight:g}"
            text += f"*{shown if float(shown) == self.weight else repr(self.weight)}"
        return text


def _split_name(text: str) -> tuple[str, str]:
    """(name, parameters) of ``[PLUGIN:]NAME[:k=v,...]``: the parameters start at the first ``:`` part
    holding an ``=``, so a name may be qualified by its plugin and a value may contain ``:``."""
    parts = text.split(":")
    first = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
    return ":".join(p.strip() for p in parts[:first]), ":".join(parts[first:])


def _parse_params(name: str, rest: str) -> dict[str, str]:
    params: dict[str, str] = {}
    # Split on commas that start a new key=, so values may themselves contain commas.
    for item in re.split(r",(?=\s*\w+\s*=)", rest) if rest.strip() else []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _KEY.fullmatch(key):
            raise RegistryError(f"--reward {name}: expected key=value, got {item!r}")
        if key in params:
            raise RegistryError(f"--reward {name}: parameter '{key}' is given twice")
        params[key] = value.strip()
    return params


def _number(value: Any, what: str) -> float:
    """A float from a config value (YAML reads `1e-3` as text); a finite one, else a RegistryError."""
    try:
        number = float(value) if not isinstance(value, bool) else None  # `weight: yes` is no number
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise RegistryError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(number):
        raise RegistryError(f"{what} must be a finite number, got {value!r}")
    return number


@dataclass
class ConfiguredReward:
    """A registered reward or filter with its parameters bound: what the stack actually calls."""

    label: str  # the key its values are logged under
    info: RewardInfo
    fn: Callable[..., Any]  # TRL-compatible: named after the label, parameters bound
    params: dict[str, Any]
    weight: float = 1.0
    action: str = "penalty"  # filters only: "penalty" ranks the sample below clean ones, "drop" excludes it
    penalty: float | None = None  # filters only: an explicit cap (None: below the clean ones, filter_ranking)

    @property
    def is_filter(self) -> bool:
        return self.info.is_filter


def bind(info: RewardInfo, params: dict[str, Any], label: str | None = None) -> Callable[..., Any]:
    """A TRL-compatible function with ``params`` fixed, named ``label`` (TRL logs rewards by __name__)."""
    fn = info.fn
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def bound(*args, **kwargs):
            return await fn(*args, **{**kwargs, **params})
    else:
        @functools.wraps(fn)
        def bound(*args, **kwargs):
            return fn(*args, **{**kwargs, **params})
    bound.__name__ = bound.__qualname__ = label or info.name
    return bound


def _filter_settings(spec: RewardSpec, raw: dict[str, Any]) -> tuple[str, float | None]:
    """Take a filter's ``action`` and ``penalty`` out of ``raw`` (they are the stack's, not the
    function's), checked: a NaN or infinite penalty would make every capped total NaN or infinite.
    No ``penalty`` means the scale-free default (``raftkit.rewards.filter_ranking``)."""
    if spec.weight != 1:
        raise RegistryError(f"filter '{spec.name}' takes no weight (*{spec.weight:g}): a hit caps the total "
                            f"at the filter's penalty; set that instead, e.g. {spec.name}:penalty=-2")
    action = str(raw.pop("action", "penalty"))
    if action not in FILTER_ACTIONS:
        raise RegistryError(f"filter '{spec.name}': action must be penalty or drop, got {action!r}")
    penalty = raw.pop("penalty", None)
    return action, None if penalty is None else _number(penalty, f"filter '{spec.name}': penalty")


# --------------------------------------------------------------------------- scores


@dataclass
class Scores:
    """Every value the stack computed for a batch of n samples."""

    rewards: dict[str, list[float | None]]  # raw values per reward label
    weights: dict[str, float]
    hits: dict[str, list[int]]  # hit counts per filter label
    total: list[float]  # what algorithms rank / normalise
    dropped: list[bool]  # excluded by a "drop" filter: never selected, no gradient
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each reward's call

    def __len__(self) -> int:
        return len(self.total)

    @property
    def degenerate(self) -> list[bool]:
        """Samples some filter hit (whatever its action)."""
        return [any(h[i] for h in self.hits.values()) for i in range(len(self.total))]

    @property
    def unscorable(self) -> list[bool]:
        """Samples no reward scored (every one returned None) and no filter hit: TRL 1.16 leaves these out
        of GRPO's group statistics (NaN) rather than counting their total of 0."""
        if not self.rewards:
            return [False] * len(self.total)
        degenerate = self.degenerate
        return [all(v[i] is None for v in self.rewards.values()) and not degenerate[i]
                for i in range(len(self.total))]

    def sample(self, i: int) -> dict[str, Any]:
        """Sample i's values, as written to the run directory."""
        return {
            "rewards": {k: v[i] for k, v in self.rewards.items()},
            "hits": {k: v[i] for k, v in self.hits.items()},
            "total": self.total[i],
            "dropped": self.dropped[i],
        }


# --------------------------------------------------------------------------- the stack


class RewardStack:
    """The configured rewards and filters of a run, scored together."""

    def __init__(self, entries: Sequence[ConfiguredReward], timeout: float = DEFAULT_TIMEOUT):
        if not (isinstance(timeout, numbers.Real) and math.isfinite(timeout) and timeout > 0):
            raise RegistryError(f"--reward-timeout must be a positive number of seconds, got {timeout!r}")
        self.entries = list(entries)
        self.timeout = timeout
        labels = [e.label for e in self.entries]
        if len(set(labels)) != len(labels):
            raise RegistryError(f"the same reward is configured twice with the same parameters: {labels}")

    @classmethod
    def build(
        cls,
        rewards: Sequence[str | dict | RewardSpec],
        filters: Sequence[str | dict | RewardSpec] = (),
        registry: Registry | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RewardStack:
        """Resolve reward and filter specs against the registry, validating every parameter."""
        registry = registry or load_registry()
        specs = [RewardSpec.coerce(r) for r in rewards] + [RewardSpec.coerce(f) for f in filters]
        n_rewards = len(rewards)
        # A function reference (`dir/file.py:fn`) is logged under its function's name.
        names = [refs.label(s.name) for s in specs]
        entries = []
        for i, spec in enumerate(specs):
            info = registry.get(spec.name)
            if i < n_rewards and info.is_filter:
                raise RegistryError(f"'{spec.name}' is a filter: pass it with --filter, not --reward")
            if i >= n_rewards and not info.is_filter:
                raise RegistryError(f"'{spec.name}' is a reward, not a filter: pass it with --reward")
            raw = dict(spec.params)
            action, penalty = "penalty", None
            if info.is_filter:
                action, penalty = _filter_settings(spec, raw)
            params = info.parse_params(raw)
            # The same reward twice (different parameters) is logged under NAME:k=v to keep keys apart.
            short = names[i]
            label = short if names.count(short) == 1 else str(RewardSpec(spec.name, spec.params))
            same = {s.name for s, n in zip(specs, names, strict=True) if n == short}
            if names.count(short) > 1 and same == {spec.name}:  # one function twice: its arguments differ
                label = str(RewardSpec(short, spec.params))
            entries.append(ConfiguredReward(label, info, bind(info, params, label), params, spec.weight,
                                            action, penalty))
        return cls(entries, timeout=timeout)

    @property
    def rewards(self) -> list[ConfiguredReward]:
        return [e for e in self.entries if not e.is_filter]

    @property
    def filters(self) -> list[ConfiguredReward]:
        return [e for e in self.entries if e.is_filter]

    # ---- scoring

    def score(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        columns: dict[str, Sequence[Any]] | None = None,
        groups: Sequence[int] | None = None,
        context: dict[str, Any] | None = None,
        **extra: Sequence[Any],
    ) -> Scores:
        """Score n samples. ``columns`` and ``extra`` hold one value per sample, passed as kwargs.
        ``context`` holds kwargs that are not per sample (the loop's ``trainer_state``, ``log_extra``,
        ``log_metric``, as TRL passes them): handed over as they are.

        ``groups`` (one id per sample, e.g. its prompt) bounds where a filter hit ranks its sample: below
        every clean sample of the same group (``raftkit.rewards.filter_ranking``); by default the batch is
        one group.
        """
        n = len(completions)
        context = context or {}
        if clash := sorted(c for c in columns or {} if c in STACK_ARGUMENTS or c in extra or c in context):
            # Checked here, where the call is built: a column named like an argument would silently
            # replace what every reward receives.
            raise RewardError(f"column(s) {clash} have the names of arguments the reward call gets from "
                              "raftkit itself; rename them")
        kwargs: dict[str, Any] = {**(columns or {}), **extra}
        for key, values in kwargs.items():
            if len(values) != n:
                raise RewardError(f"column '{key}' has {len(values)} values for {n} completions")
        for e in self.entries:
            if clash := set(kwargs) & set(e.info.params):
                kind = "filter" if e.is_filter else "reward"
                raise RewardError(
                    f"dataset column(s) {sorted(clash)} share a name with parameter(s) of "
                    f"{kind} '{e.label}'; rename the column(s)", reward=e.label)
        call_kwargs = {"prompts": list(prompts), "completions": list(completions), **kwargs, **context}
        outputs, seconds = _run_all(self.entries, call_kwargs, self.timeout)
        rewards: dict[str, list[float | None]] = {}
        hits: dict[str, list[int]] = {}
        for e, out in zip(self.entries, outputs, strict=True):
            if isinstance(out, BaseException):
                raise _explain_exception(e, out, call_kwargs, self.timeout)
            if e.is_filter:
                hits[e.label] = _check_hits(e.label, out, n, completions)
            else:
                rewards[e.label] = _check_values(e.label, out, n, completions)
        raw = [self._weighted_total(rewards, i) for i in range(n)]
        capped = [f for f in self.filters if f.action == "penalty"]
        auto = [any(hits[f.label][i] for f in capped if f.penalty is None) for i in range(n)]
        caps = [min((f.penalty for f in capped if f.penalty is not None and hits[f.label][i]), default=None)
                for i in range(n)]
        dropped = [any(hits[f.label][i] for f in self.filters if f.action == "drop") for i in range(n)]
        clean = [not any(h[i] for h in hits.values())
                 and any(v[i] is not None for v in rewards.values()) for i in range(n)]
        total = filter_ranking.place_degenerate(raw, auto, caps, clean, groups)
        weights = {e.label: e.weight for e in self.rewards}
        return Scores(rewards, weights, hits, total, dropped, seconds)

    def _weighted_total(self, rewards: dict[str, list[float | None]], i: int) -> float:
        """The weighted sum of sample i's rewards that apply (None is left out, as TRL does); finite, or a
        RewardError: finite values times finite weights can still overflow, and one infinite total makes
        every advantage of its group NaN."""
        applied = [e for e in self.rewards if rewards[e.label][i] is not None]
        total = float(sum(e.weight * rewards[e.label][i] for e in applied))
        if not math.isfinite(total):
            shown = ", ".join(f"{e.label} {rewards[e.label][i]!r} x weight {e.weight:g}" for e in applied)
            raise RewardError(f"the weighted total of batch index {i} is {total} ({shown}): the values times "
                              "their weights overflow; lower a weight or rescale the reward", index=i)
        return total

    def score_rollouts(self, rollouts: Sequence[Rollout], batch: Batch, context: dict[str, Any] | None = None
                       ) -> Scores:
        """Score sampled rollouts: each gets its prompt's dataset columns and its ``completion_ids``
        (``context``: as in ``score``)."""
        columns = {k: [v[r.prompt_index] for r in rollouts] for k, v in batch.columns.items()}
        return self.score(
            [r.prompt for r in rollouts],
            [r.completion_for_rewards() for r in rollouts],
            columns,
            groups=[r.prompt_index for r in rollouts],
            context=context,
            completion_ids=[r.completion_ids for r in rollouts],
        )


# --------------------------------------------------------------------------- running and checking


def _run_all(entries: Sequence[ConfiguredReward], kwargs: dict[str, Any], timeout: float):
    """Call every entry concurrently, each on a daemon thread of its own (an async one in its own event loop
    there); returns (outputs or exceptions, seconds per label).

    Each entry gets its own copy of the list arguments, so a reward that edits ``completions`` in place
    cannot change what the next one scores. An entry still running ``timeout`` seconds after the start
    yields a TimeoutError, and whatever it returns later is never read: a coroutine that blocks
    (``time.sleep``) or swallows its cancellation holds only its own thread.
    """
    start = time.perf_counter()
    calls = [_start_call(e, _own_copy(kwargs)) for e in entries]
    outputs: list[Any] = []
    seconds: dict[str, float] = {}
    for e, (done, slot) in zip(entries, calls, strict=True):
        if done.wait(max(0.0, timeout - (time.perf_counter() - start))) and "out" in slot:
            outputs.append(slot["out"])
            seconds[e.label] = slot["seconds"]
        else:
            outputs.append(TimeoutError(f"{e.label} did not return within {timeout:g} s"))
            seconds[e.label] = time.perf_counter() - start
    return outputs, seconds


def _own_copy(value: Any) -> Any:
    """Lists, tuples and dicts copied down to their leaves (chat messages included); the leaves (strings,
    numbers, other objects) shared, as they cannot be changed in place or are the caller's own."""
    if isinstance(value, list | tuple):
        return [_own_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _own_copy(v) for k, v in value.items()}
    return value


def _start_call(e: ConfiguredReward, kwargs: dict[str, Any]) -> tuple[threading.Event, dict[str, Any]]:
    """Start ``e.fn(**kwargs)`` on a daemon thread; the event is set once ``slot`` holds ``out`` (a value or
    the exception it raised) and ``seconds``.

    Not an executor: a timed-out thread cannot be killed, and both the interpreter and an executor join
    their threads on the way out, which would turn the timeout back into a silent hang. A daemon thread is
    abandoned instead. (Code that holds the GIL, e.g. one catastrophic ``re`` match, still blocks
    everything: the built-in rewards use only linear-time patterns for that reason.)
    """
    done, slot = threading.Event(), {}

    def target() -> None:
        t0 = time.perf_counter()
        try:
            out = e.fn(**kwargs)
            if inspect.isawaitable(out):  # an async reward (or a sync wrapper returning a coroutine)
                out = asyncio.run(_awaited(out))
        except BaseException as exc:  # sys.exit too: reported as the reward's error, not a silent exit
            out = exc
        slot.update(out=out, seconds=time.perf_counter() - t0)
        done.set()

    threading.Thread(target=target, name=f"raftkit-reward-{e.label}", daemon=True).start()
    return done, slot


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _explain_exception(e: ConfiguredReward, exc: BaseException, kwargs: dict[str, Any], timeout: float):
    kind = e.info.kind if e.is_filter else "reward"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        n = len(kwargs["completions"])
        longest = max((len(str(c)) for c in kwargs["completions"]), default=0)
        return RewardError(
            f"{kind} '{e.label}' did not return within {timeout:g} s on a batch of {n} completions "
            f"(longest {longest} characters); raise the timeout (--reward-timeout) or make it faster",
            reward=e.label)
    if isinstance(exc, SystemExit):  # would end the whole run without a word
        return RewardError(f"{kind} '{e.label}' called sys.exit({exc.code!r}); a {kind} must return its "
                           "values (or raise an exception), not end the process", reward=e.label)
    index = _first_failing_index(e, kwargs, budget=timeout)
    completions = kwargs["completions"]
    where = f" at batch index {index}" if index is not None else f" on a batch of {len(completions)}"
    shown = f" (completion: {_short(completions[index])})" if index is not None else ""
    err = RewardError(f"{kind} '{e.label}' raised {type(exc).__name__}: {exc}{where}{shown}",
                      reward=e.label, index=index, value=completions[index] if index is not None else None)
    err.__cause__ = exc
    return err


def _first_failing_index(e: ConfiguredReward, kwargs: dict[str, Any], budget: float) -> int | None:
    """Re-run a sync function one sample at a time to find which input made it raise.

    Bounded by ``budget`` seconds (on a daemon thread), so explaining an error can never hang either.
    """
    if inspect.iscoroutinefunction(e.fn):
        return None
    n = len(kwargs["completions"])
    found: list[int] = []

    def fails(i: int) -> bool:
        one = {k: v[i : i + 1] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
        try:
            e.fn(**one)
        except Exception:
            return True
        return False

    def search() -> None:
        for i in range(n):
            if fails(i):
                # Failing on the first and the last sample alike: a batch-wide problem (a missing column,
                # a model that does not load), so no index is blamed.
                if not (i == 0 and n > 1 and fails(n - 1)):
                    found.append(i)
                return

    thread = threading.Thread(target=search, name=f"raftkit-explain-{e.label}", daemon=True)
    thread.start()
    thread.join(budget)
    return found[0] if found else None


def _check_values(label: str, out: Any, n: int, completions: Sequence[Any]) -> list[float | None]:
    out = _as_list(label, out)
    if len(out) != n:
        raise RewardError(f"reward '{label}' returned {len(out)} values for {n} completions", reward=label)
    values: list[float | None] = []
    for i, v in enumerate(out):
        if v is None:
            values.append(None)
            continue
        if hasattr(v, "item") and not isinstance(v, numbers.Number):  # numpy / torch scalars
            v = v.item()
        if not isinstance(v, numbers.Real):
            raise RewardError(
                f"reward '{label}' returned a non-number {_short(repr(v))} ({type(v).__name__}) at batch "
                f"index {i} (completion: {_short(completions[i])})", reward=label, index=i, value=v)
        try:
            v = float(v)
        except OverflowError:  # an int beyond float range (10**400): no total can hold it
            # Its size, not its digits: str() of a huge int is slow and refused past 4,300 digits.
            size = int(int(abs(v)).bit_length() * math.log10(2))
            raise RewardError(
                f"reward '{label}' returned {'-' * (v < 0)}1e{size} or so, too large for a float, at batch "
                f"index {i}; return values within ±1.8e308 (completion: {_short(completions[i])})",
                reward=label, index=i, value=None) from None
        if not math.isfinite(v):
            raise RewardError(
                f"reward '{label}' returned {v} at batch index {i} (completion: {_short(completions[i])})",
                reward=label, index=i, value=v)
        values.append(v)
    return values


def _check_hits(label: str, out: Any, n: int, completions: Sequence[Any]) -> list[int]:
    out = _as_list(label, out, kind="filter")
    if len(out) != n:
        raise RewardError(f"filter '{label}' returned {len(out)} values for {n} completions", reward=label)
    hits = []
    for i, v in enumerate(out):
        if hasattr(v, "item") and not isinstance(v, numbers.Number):
            v = v.item()
        if not isinstance(v, numbers.Integral) or v < 0:  # bool is Integral: True counts as one hit
            raise RewardError(
                f"filter '{label}' returned {_short(repr(v))} at batch index {i}; a filter returns a hit "
                f"count (int >= 0 or bool) (completion: {_short(completions[i])})", reward=label, index=i,
                value=v)
        hits.append(int(v))
    return hits


def _as_list(label: str, out: Any, kind: str = "reward") -> list[Any]:
    if hasattr(out, "tolist") and not isinstance(out, list | tuple):  # numpy arrays, torch tensors
        out = out.tolist()
    if not isinstance(out, list | tuple):
        raise RewardError(f"{kind} '{label}' returned {type(out).__name__}, expected a list with one value "
                          "per completion", reward=label, value=out)
    return list(out)
