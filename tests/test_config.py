"""Config dataclasses: docstrings as help, generated options, files, precedence, and the round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import click
import pytest
from click.testing import CliRunner

from raftkit.algorithms.raft import RaftConfig
from raftkit.config import (
    DEFAULT_FILTERS,
    AlignConfig,
    ConfigCommand,
    ConfigError,
    build,
    check_keys,
    cli_values,
    field_docs,
    fields_of,
    load_file,
    save_yaml,
    to_dict,
)


@dataclass
class _Common:
    steps: int = 3
    """How many steps."""
    names: list[str] = field(default_factory=list, metadata={"option": "name"})
    """A name; repeat for several."""
    fast: bool = False
    """Go fast."""
    mode: Literal["a", "b"] = "a"
    """Which mode."""
    out: str | None = None
    """Where to write."""


@dataclass
class _Algo:
    rate: float = 0.5
    """The rate,
    over two lines."""
    steps: int = 99  # shared name: belongs to _Common, not repeated
    """Ignored duplicate."""


def test_field_docs_are_read_from_the_source():
    docs = field_docs(_Common)
    assert docs["steps"] == "How many steps."
    assert docs["names"] == "A name; repeat for several."
    assert field_docs(_Algo)["rate"] == "The rate, over two lines."
    # every field of the real configs is documented
    for cls in (AlignConfig, RaftConfig):
        from dataclasses import fields

        missing = [f.name for f in fields(cls) if not field_docs(cls).get(f.name)]
        assert missing == [], f"{cls.__name__} fields without a docstring: {missing}"


def test_shared_names_belong_to_the_first_class():
    specs = fields_of(_Common, _Algo)
    assert list(specs) == ["steps", "names", "fast", "mode", "out", "rate"]
    assert specs["steps"].default == 3 and specs["steps"].owner is _Common
    assert specs["steps"].other_defaults == (("_Algo", 99),)


def _command():
    @click.command(cls=ConfigCommand, classes=lambda: [_Common, _Algo])
    @click.option("--config", "config_file")
    @click.pass_context
    def cmd(ctx, config_file, **_):
        values = load_file(config_file) if config_file else {}
        check_keys(values, ctx.command.config_fields(), "file")
        values.update(cli_values(ctx, ctx.command.config_fields()))
        c, a = build(_Common, values), build(_Algo, values)
        click.echo(repr((c.steps, c.names, c.fast, c.mode, c.out, a.rate, a.steps)))

    return cmd


def test_generated_options_and_help():
    runner = CliRunner()
    result = runner.invoke(_command(), ["--help"])
    assert result.exit_code == 0
    for text in (
        "--steps",
        "How many steps.",
        "--name",
        "(repeatable)",
        "--fast / --no-fast",
        "[a|b]",
        "--rate",
        "The rate, over two lines.",
        "[default: _common: 3, _algo: 99]",
    ):
        assert text in result.output, text
    result = runner.invoke(
        _command(), ["--steps", "5", "--name", "x", "--name", "y", "--fast", "--mode", "b", "--rate", "0.25"]
    )
    assert result.exit_code == 0, result.output
    # steps given once sets both classes' field (one name, one meaning)
    assert result.output.strip() == "(5, ['x', 'y'], True, 'b', None, 0.25, 5)"


def test_defaults_then_file_then_flags(tmp_path):
    runner = CliRunner()
    assert runner.invoke(_command(), []).output.strip() == "(3, [], False, 'a', None, 0.5, 99)"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: 7\nnames: [p, q]\nfast: true\nrate: 0.1\n")
    assert (
        runner.invoke(_command(), ["--config", str(cfg)]).output.strip()
        == "(7, ['p', 'q'], True, 'a', None, 0.1, 7)"
    )
    out = runner.invoke(_command(), ["--config", str(cfg), "--steps", "8", "--no-fast", "--name", "z"]).output
    assert out.strip() == "(8, ['z'], False, 'a', None, 0.1, 8)"


def test_toml_and_errors(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('steps = 4\nnames = ["a"]\nmode = "b"\n')
    assert load_file(toml) == {"steps": 4, "names": ["a"], "mode": "b"}
    with pytest.raises(ConfigError, match="Did you mean 'steps'"):
        check_keys({"step": 1}, fields_of(_Common), "c.yaml")
    with pytest.raises(ConfigError, match="'steps': expected a whole number"):
        build(_Common, {"steps": "many"}, "c.yaml")
    with pytest.raises(ConfigError, match="not one of a, b"):
        build(_Common, {"mode": "c"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="--k must be at least 1"):
        AlignConfig(k=0)
    assert build(_Common, {"out": "none"}).out is None
    # rewards in a file may be mappings as well as NAME:k=v*W strings
    cfg = build(
        AlignConfig, {"rewards": ["emoji", {"name": "length", "params": {"target": 20}, "weight": 2}]}
    )
    assert cfg.rewards[1]["params"] == {"target": 20}
    with pytest.raises(ConfigError, match="rewards"):
        build(AlignConfig, {"rewards": [["emoji"]]})


def test_round_trip_through_yaml_and_toml(tmp_path):
    align = AlignConfig(
        rewards=["emoji", "length:target=30*2"],
        iterations=3,
        lr=2e-5,
        output=None,
        gradient_checkpointing=True,
    )
    raft = RaftConfig(ranking="top", explore_hint=" Use emojis.", explore_share=0.25)
    flat = to_dict(align, raft)
    path = tmp_path / "config.yaml"
    save_yaml(path, flat)
    again = load_file(path)
    check_keys(again, fields_of(AlignConfig, RaftConfig), str(path))
    assert build(AlignConfig, again) == align
    assert build(RaftConfig, again) == raft
    assert again["filters"] == list(DEFAULT_FILTERS)


def test_align_help_lists_every_field():
    from raftkit.cli import main

    result = CliRunner().invoke(main, ["align", "--help"])
    assert result.exit_code == 0
    for spec in fields_of(AlignConfig, RaftConfig).values():
        assert f"--{spec.option.replace('_', '-')}" in result.output
    assert "--no-filters" in result.output and "--resume" in result.output


def test_align_reports_config_errors_without_a_traceback(tmp_path):
    from raftkit.cli import main

    bad = tmp_path / "c.yaml"
    bad.write_text("iteratons: 3\n")
    result = CliRunner().invoke(main, ["align", "--reward", "emoji", "--config", str(bad)])
    assert result.exit_code == 1 and "unknown option 'iteratons'" in result.output
    assert "Did you mean 'iterations'" in result.output
    result = CliRunner().invoke(main, ["align", "--reward", "emoji", "--explore-share", "3"])
    assert result.exit_code == 1 and "explore-share must be between 0 and 1" in result.output
    result = CliRunner().invoke(main, ["align", "--no-filters", "--filter", "stray_hash"])
    assert result.exit_code == 2 and "contradict" in result.output


def test_configuration_docs_list_every_option_of_every_algorithm():
    """docs/configuration.md is printed by scripts/config_tables.py; a new field must reach it."""
    from pathlib import Path

    from raftkit import algorithms
    from raftkit.config import AlignConfig, fields_of

    text = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    found, _ = algorithms.load_algorithms()
    for cls in (AlignConfig, *(info.config for info in found.values())):
        for spec in fields_of(cls).values():
            assert f"`--{spec.option.replace('_', '-')}`" in text, f"{cls.__name__}.{spec.name} undocumented"
        assert cls is AlignConfig or f"({cls.__name__}," in text


# --------------------------------------------------------------------------- TRL's names


def test_trl_names_become_raftkit_fields_in_a_config_file(tmp_path):
    from raftkit.api import _is_setting, build_configs
    from raftkit.trl_names import fold_reward_weights, translate

    path = tmp_path / "trl.yaml"
    path.write_text("algo: grpo\nnum_generations: 4\nmax_completion_length: 32\nlearning_rate: 1.0e-5\n"
                    "scale_rewards: false\nuse_vllm: false\nlogging_steps: 5\nbf16: true\ntop_k: 0\n"
                    "rewards: [emoji, length]\nreward_weights: [1.0, 0.5]\n")
    warned: list[str] = []
    values = translate(load_file(path), str(path), known=_is_setting, warn=warned.append)
    fold_reward_weights(values, str(path))
    assert values == {"algo": "grpo", "k": 4, "max_new_tokens": 32, "lr": 1e-5, "scale_rewards": "none",
                      "sampler": "hf", "rewards": ["emoji", "length*0.5"]}
    assert [w.split("'")[1] for w in warned] == ["logging_steps", "bf16", "top_k"]  # harmless: ignored
    cfg, grpo = build_configs(values)
    assert (cfg.k, cfg.max_new_tokens, cfg.lr, grpo.scale_rewards) == (4, 32, 1e-5, "none")


@pytest.mark.parametrize(("values", "message"), [
    ({"top_k": 50}, r"TRL's 'top_k' = 50 is not supported: raftkit samples with --temperature and --top-p"),
    ({"max_steps": 100}, r"'max_steps' = 100 is not supported: .*use --iterations"),
    ({"num_generations": 4, "k": 8}, r"'num_generations' is TRL's name for 'k', and 'k' is given too"),
    ({"use_vllm": "maybe"}, r"'use_vllm': expected true or false"),
])
def test_unsupported_or_doubled_trl_names_are_refused(values, message):
    from raftkit.trl_names import translate

    with pytest.raises(ConfigError, match=r"^c\.yaml: .*" + message):
        translate(values, "c.yaml")


def test_reward_weights_must_match_the_rewards():
    from raftkit.trl_names import fold_reward_weights

    values = {"rewards": ["emoji", {"name": "length", "params": {"target": 9}}], "reward_weights": "2,0.5"}
    fold_reward_weights(values, "opts")
    assert values == {"rewards": ["emoji*2", {"name": "length", "params": {"target": 9}, "weight": 0.5}]}
    with pytest.raises(ConfigError, match="1 weight\\(s\\) for 2 reward\\(s\\)"):
        fold_reward_weights({"rewards": ["emoji", "length"], "reward_weights": [1]}, "opts")
    with pytest.raises(ConfigError, match="has its own weight \\*3; give it once"):
        fold_reward_weights({"rewards": ["emoji*3"], "reward_weights": [1]}, "opts")
    with pytest.raises(ConfigError, match=r"'reward_weights'\[0\] must be a finite number, got 'x'"):
        fold_reward_weights({"rewards": ["emoji"], "reward_weights": ["x"]}, "opts")


def test_trl_option_spellings_on_the_command_line(tmp_path):
    from raftkit.cli import main

    runner = CliRunner()
    help_text = "".join(runner.invoke(main, ["align", "--help"]).output.split())  # wrapping aside
    # One option, TRL's spelling named in its help, not listed as an option of its own.
    assert "(TRL:--num-generations)" in help_text and "--k,--num-generations" not in help_text
    assert "(TRL:--learning-rate)" in help_text and "--reward-weights" in help_text
    # Accepted: the run fails only later, at the reward name, after every option was read.
    result = runner.invoke(main, ["align", "--num-generations", "4", "--max-completion-length", "32",
                                  "--learning-rate", "1e-5", "--reward", "no_such_reward",
                                  "--output", str(tmp_path / "r")])
    assert "unknown reward or filter 'no_such_reward'" in result.output, result.output
    result = runner.invoke(main, ["align", "--top-k", "50", "--reward", "emoji"])
    assert result.exit_code == 2
    assert "--top-k (TRL's top_k) is not supported: raftkit samples" in result.output
    result = runner.invoke(main, ["align", "--num-generatons", "4"])  # a typo still gets the close names
    assert result.exit_code == 2 and "Did you mean" in result.output and "--num-generations" in result.output
    bad = tmp_path / "trl.yaml"
    bad.write_text("num_train_epochs: 3\n")
    result = runner.invoke(main, ["align", "--reward", "emoji", "--config", str(bad)])
    assert result.exit_code == 1 and "TRL's 'num_train_epochs' = 3 is not supported" in result.output


def test_every_trl_grpo_field_is_handled_and_documented():
    """Each field the installed TRL's GRPOConfig declares is raftkit's own name or in the TRL table, and
    docs/from-trl.md names it."""
    import ast
    from pathlib import Path

    from raftkit.api import _is_setting
    from raftkit.trl_names import TRL_NAMES

    trl = pytest.importorskip("trl")
    folder = Path(trl.__file__).parent / "trainer"
    declared = []
    for file, cls in (("grpo_config.py", "GRPOConfig"), ("base_config.py", "_BaseConfig")):
        tree = ast.parse((folder / file).read_text(encoding="utf-8"))
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
        declared += [n.target.id for n in body if isinstance(n, ast.AnnAssign)]
    assert "num_generations" in declared and len(declared) > 60
    assert not [n for n in declared if n not in TRL_NAMES and not _is_setting(n)]
    text = (Path(__file__).parent.parent / "docs" / "from-trl.md").read_text(encoding="utf-8")
    assert not [n for n in {*declared, *TRL_NAMES} if f"| `{n}` |" not in text]
