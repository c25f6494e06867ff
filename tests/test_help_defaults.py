"""The help texts that state defaults say what the code does: the default filters, each built-in
algorithm's learning rate and prompts per iteration, and the algorithms the top-level help lists."""

from __future__ import annotations

import re

from click.testing import CliRunner

from raftkit import algorithms
from raftkit.cli import main
from raftkit.config import DEFAULT_FILTERS, AlignConfig
from raftkit.options import fields_of

BUILT_IN = ("raft", "raftpp", "reinforce_rej", "grpo", "online_dpo", "ppo")


def stated_defaults(doc: str) -> dict[str, str]:
    """Algorithm name -> value, from a help text written as 'X for a and b, Y for c, ...'."""
    out: dict[str, str] = {}
    for value, names in re.findall(r"(\d+(?:\.\d+)?(?:e-\d+)?) for ([a-z_]+(?:(?:, | and )[a-z_]+)*)", doc):
        for name in re.split(r", | and ", names):
            out[name] = value
    return out


def test_stated_defaults_reads_the_help_form():
    assert stated_defaults("default: 3e-5 for raft and raftpp, 1e-4 for grpo.") == {
        "raft": "3e-5", "raftpp": "3e-5", "grpo": "1e-4"}


def test_filter_help_names_every_default_filter():
    doc = " ".join(fields_of(AlignConfig)["filters"].doc.split())
    assert len(DEFAULT_FILTERS) == 8
    assert "default eight" in doc
    for name in DEFAULT_FILTERS:
        assert name in doc, name


def test_lr_and_prompt_help_state_each_algorithms_default():
    found, _ = algorithms.load_algorithms()
    specs = fields_of(AlignConfig)
    lrs = stated_defaults(" ".join(specs["lr"].doc.split()))
    prompts = stated_defaults(" ".join(specs["prompts_per_iteration"].doc.split()))
    for name in BUILT_IN:
        cls = found[name].cls
        assert float(lrs[name]) == cls.default_lr, (name, lrs.get(name), cls.default_lr)
        assert int(prompts[name]) == cls.default_prompts, (name, prompts.get(name), cls.default_prompts)


def test_top_level_help_lists_every_built_in_algorithm():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in BUILT_IN:
        assert re.search(rf"\b{name}\b", result.output), name


def test_each_algorithms_help_shows_its_own_options_and_defaults():
    """`raftkit align --algo NAME --help` lists every option of NAME's config with NAME's default (a field
    that several algorithms share has a default of its own in each)."""
    from raftkit.options import option_specs

    found, _ = algorithms.load_algorithms()
    shared = set(option_specs(AlignConfig))
    for name in BUILT_IN:
        text = " ".join(CliRunner(env={"COLUMNS": "250"}).invoke(main, ["align", "--algo", name, "--help"])
                        .output.split())
        section = text.split(f"{name} settings (--algo {name}):")[1].split("Other algorithms:")[0]
        for option, spec in option_specs(found[name].config).items():
            if option in shared:
                continue
            flag = f"--{option.replace('_', '-')}"
            row = rf"(?<![\w-]){flag} (?:FLOAT|INT|TEXT|\[|/)"  # its row, not a mention in a help text
            assert re.search(row, section), (name, option)
            if spec.default not in (None, ""):  # the first default after the option is its own
                shown = re.search(rf"{row}.*?\[default: ([^\]]*)\]", section).group(1)
                assert shown == str(spec.default), (name, option, shown)
