"""`raftkit align`'s options: one click option per config field, and ``--help`` in groups.

``ConfigCommand`` builds its options from config dataclasses on first use (``click_option``, one per
option name; a field's old name and TRL's names parse too, named once in its help). ``AlignCommand``
groups the shared settings by topic, then the chosen algorithm's own. Every algorithm's options parse
whatever ``--algo`` says (one that the algorithm does not use is refused with a message naming whose it
is); the help lists only what ``--algo`` (default raft) uses, and names the other algorithms.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal

import click

from raftkit.config import AlignConfig
from raftkit.options import FieldSpec, fields_of, is_sequence, option_specs, unwrap_optional

# --------------------------------------------------------------------------- options from config fields


def _click_type(t: Any) -> Any:
    base, _ = unwrap_optional(t)
    if is_sequence(base):
        args = [a for a in typing.get_args(base) if a is not Ellipsis]
        base = args[0] if args else str
    if typing.get_origin(base) is Literal:
        return click.Choice([str(c) for c in typing.get_args(base)])
    return {int: int, float: float, bool: bool}.get(base, str)


def _type_hint(t: Any) -> str:
    base, _ = unwrap_optional(t)
    if is_sequence(base):
        return "TEXT"
    return {int: "INT", float: "FLOAT"}.get(base, "TEXT")


def _short_name(class_name: str) -> str:
    """RaftConfig -> raft, GRPOConfig -> grpo (for --help defaults that differ by algorithm)."""
    return class_name.removesuffix("Config").lower()


def click_option(spec: FieldSpec, dest: str | None = None, hidden: bool = False) -> click.Option:
    """A click option for a field. Every option defaults to "not given", so a --config value can win.

    ``dest`` is the parameter name (default: the field's); the field's old name and TRL's names are extra
    spellings that parse but stay out of the help's option column (the help text names them).
    """
    base, _ = unwrap_optional(spec.type)
    default = spec.default
    shown = ", ".join(map(str, default)) if isinstance(default, list | tuple) else default
    if spec.other_defaults:
        others = ", ".join(f"{_short_name(c)}: {d}" for c, d in spec.other_defaults)
        shown = f"{_short_name(spec.owner.__name__)}: {shown}, {others}"
    from raftkit.trl_names import aliases_of

    old = [f"--{n.replace('_', '-')}" for n in spec.old_names]
    # TRL's names for the field are more spellings of the same option, named once in its help.
    trl = [f"--{n.replace('_', '-')}" for n in aliases_of(spec.name)]
    help_text = spec.doc + (f" (also {', '.join(old)})" if old else "")
    help_text += f" (TRL: {', '.join(trl)})" if trl else ""
    help_text += f"  [default: {shown}]" if shown not in (None, "", []) else ""
    flag = spec.option.replace("_", "-")
    # A field renamed in one algorithm but not in another (beta) keeps its old spelling as its own option.
    spellings = trl + (old if dest is None or dest == spec.name else [])
    name = dest or spec.name
    common = {"help": help_text, "hidden": hidden}
    if base is bool:
        return _Option([f"--{flag}/--no-{flag}", name], spellings, default=None, **common)
    if is_sequence(base):
        common["help"] = help_text + " (repeatable)"
        return _Option([f"--{flag}", name], spellings, multiple=True, type=_click_type(spec.type), **common)
    return _Option(
        [f"--{flag}", name],
        spellings,
        type=_click_type(spec.type),
        default=None,
        metavar=None if typing.get_origin(base) is Literal else _type_hint(spec.type),
        **common,
    )


def config_params(classes: Iterable[type]) -> list[click.Option]:
    """The click options of the classes' fields, one per option name.

    An option that sets one field everywhere is stored under the field's name (``is_correction`` for
    --mismatch-correction, its old spelling --is-correction parsing into it). An option that sets different
    fields (--kl-beta: beta, rank_beta, kl_coef) is stored under its own name, for ``resolve`` to map onto
    the chosen algorithm's field, and each of those fields' own names stays a hidden option of its own.
    """
    classes = list(classes)
    specs = option_specs(*classes)
    fields: dict[str, set[str]] = {}  # option name -> the field names it sets
    options: dict[str, set[str]] = {}  # field name -> the option names that set it
    for cls in classes:
        for spec in fields_of(cls).values():
            fields.setdefault(spec.option, set()).add(spec.name)
            options.setdefault(spec.name, set()).add(spec.option)
    params: list[click.Option] = []
    alone: dict[str, FieldSpec] = {}  # field name -> its spec, for the fields that get an option of their own
    for option, spec in specs.items():
        names = fields[option]
        if len(names) == 1 and options[next(iter(names))] == {option}:
            params.append(click_option(spec))
            continue
        params.append(click_option(spec, dest=option))
        for cls in classes:
            for other in fields_of(cls).values():
                if other.option == option and other.name != option:
                    alone.setdefault(other.name, other)
    for name, spec in alone.items():
        plain = dataclasses.replace(spec, option=name, other_defaults=())
        params.append(click_option(plain, hidden=True))
    return params


class _Option(click.Option):
    """A click option with extra spellings that parse but stay out of the help's option column."""

    def __init__(self, decls: list[str], hidden_spellings: list[str], **kwargs: Any):
        *flags, name = decls
        hidden = list(hidden_spellings)
        if "/" in flags[0]:  # a boolean flag: each spelling has its --no- form too
            hidden = [f"{h}/--no-{h[2:]}" for h in hidden]
        super().__init__([*flags, *hidden, name], **kwargs)
        self.hidden_spellings = {part for h in hidden for part in h.split("/")}

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in opts if o not in self.hidden_spellings]
        self.secondary_opts = [o for o in secondary if o not in self.hidden_spellings]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


def cli_values(ctx: click.Context, names: Iterable[str]) -> dict[str, Any]:
    """The options the user actually gave on the command line (not click's defaults)."""
    out = {}
    for name in names:
        source = ctx.get_parameter_source(name)
        if source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT):
            value = ctx.params[name]
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


class ConfigCommand(click.Command):
    """A click command whose options come from config dataclasses, found on first use.

    Loading the algorithm configs imports torch; deferring it keeps `raftkit --help` and the other
    commands fast.
    """

    def __init__(self, *args: Any, classes: Callable[[], list[type]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._classes = classes
        self._loaded = False

    def config_fields(self) -> dict[str, FieldSpec]:
        return fields_of(*self._classes())

    def config_classes(self) -> list[type]:
        return list(self._classes())

    def config_options(self) -> dict[str, str]:
        """Each config parameter's name (a field or an option name) -> the option that sets it, --dashed."""
        return {p.name: p.opts[0] for p in self._config_params() if p.name}

    def _config_params(self) -> list[click.Option]:
        if not self._loaded:
            self._loaded = True
            self._generated = config_params(self._classes())
            self.params.extend(self._generated)
        return self._generated

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self._config_params()
        return super().get_params(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """As click's, but a TRL option raftkit has no counterpart for says why (``--top-k``)."""
        from raftkit.trl_names import refusal

        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as e:
            if message := refusal(e.option_name):
                raise click.UsageError(message, ctx) from None
            raise


# --------------------------------------------------------------------------- the align command

# Shared settings by topic, by parameter name (a field of AlignConfig or one of the command's own options).
GROUPS: dict[str, tuple[str, ...]] = {
    "Run": ("algo", "config_file", "resume_dir", "restart", "output", "iterations", "seed", "save_every",
            "checkpoint_every", "report_to", "verbose", "help"),
    "Model and data": ("model", "dataset", "prompt_column", "answer_column", "prompts_per_iteration", "lr",
                       "lora_r", "gradient_checkpointing"),
    "Sampling": ("k", "max_new_tokens", "temperature", "top_p", "sampler", "kv_cache_gib"),
    "Rewards": ("rewards", "filters", "no_filters", "reward_weights", "reward_timeout"),
    "Evaluation": ("heldout", "eval_samples", "eval_temperature"),
}
ALGO = "raftkit.help_algo"  # ctx.meta key: the --algo the command line names, for the help


def algo_in(args: list[str]) -> str | None:
    """The value of the last ``--algo`` in ``args`` (before a ``--``), or None."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--algo" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--algo="):
            found = arg.split("=", 1)[1]
    return found


class AlignCommand(ConfigCommand):
    """A ConfigCommand whose help groups the options and shows only the chosen algorithm's settings."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ALGO] = algo_in(args)  # --help is eager: it may act before --algo is processed
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from raftkit import algorithms

        name = ctx.meta.get(ALGO) or AlignConfig.algo
        try:
            info = algorithms.get(name)
        except algorithms.AlgorithmError as e:
            raise click.UsageError(f"--algo: {e}", ctx) from None
        help_option = self.get_help_option(ctx)
        records = {"help" if p is help_option else p.name: p.get_help_record(ctx)
                   for p in self.get_params(ctx) if p.name not in self.config_options()}  # the command's own
        records.update({spec.name: click_option(spec).get_help_record(ctx)
                        for spec in option_specs(AlignConfig).values()})
        grouped = {n for names in GROUPS.values() for n in names}
        groups: dict[str, list[Any]] = {title: [records[n] for n in names if records.get(n)]
                                        for title, names in GROUPS.items()}
        groups["Other options"] = [r for n, r in records.items() if r and n not in grouped]
        shared = set(option_specs(AlignConfig))
        groups[f"{info.name} settings (--algo {info.name})"] = [
            click_option(spec).get_help_record(ctx)
            for option, spec in option_specs(info.config).items() if option not in shared]
        for title, rows in groups.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
        found, _ = algorithms.load_algorithms()
        others = [n for n in found if n != info.name]
        if others:
            formatter.write_paragraph()
            formatter.write_text(f"Other algorithms: {', '.join(others)}. Their settings: raftkit align "
                                 "--algo NAME --help (raftkit algorithms describes each).")
