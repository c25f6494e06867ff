"""Config dataclasses: docstrings as help, generated options, files, precedence, and the round trip."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import click
import pytest
from click.testing import CliRunner

from raftkit.algorithms.raft import RaftConfig
from raftkit.cli.options import ConfigCommand, cli_values
from raftkit.config import (
    DEFAULT_FILTERS,
    AlignConfig,
    ConfigError,
    build,
    check_keys,
    load_file,
    save_yaml,
    to_dict,
)
from raftkit.options import coerce, field_docs, fields_of


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
    with pytest.raises(ConfigError, match="'mode': choose one of a, b, got 'c'"):
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


def test_configuration_docs_are_generated_from_the_configs():
    """docs/configuration.md's tables are what `python -m raftkit.cli.docgen` generates, so every field of
    every algorithm is there with its help text; the prose around them is kept."""
    from raftkit import algorithms
    from raftkit.cli import docgen
    from raftkit.options import option_specs

    text = docgen.DOCS.read_text(encoding="utf-8")
    assert docgen.updated(text) == text, "stale docs: python -m raftkit.cli.docgen --write"
    assert docgen.main(["--check"]) == 0
    found, _ = algorithms.load_algorithms()
    for cls in (AlignConfig, *(info.config for info in found.values())):
        for option in option_specs(cls):
            assert f"`--{option.replace('_', '-')}`" in text, f"{cls.__name__}: --{option} undocumented"
    assert "## Where values come from" in text  # the hand-written part survives --write
    # a table edited by hand (or a docstring changed without --write) is stale; --write restores it
    stale = text.replace("| `--dpo-beta` (or `--beta`) |", "| `--beta` |")
    assert stale != text and docgen.updated(stale) == text


def test_one_converter_for_config_fields_and_reward_parameters():
    from raftkit.rewards import Param, RegistryError

    for t, raw, want in ((int, "4", 4), (Literal[1, 3], "3", 3), (int | str, "abc", "abc"),
                         (bool, "off", False), (float | None, "null", None), (Literal["a", "b"], "b", "b")):
        assert coerce(raw, t, "x") == want, (t, raw)
        assert Param("p", t).parse(raw, "reward 'r'") == want, (t, raw)
    with pytest.raises(ConfigError, match=r"^x: expected a whole number, got 2\.5$"):
        coerce(2.5, int, "x")
    said = r"^reward 'r': parameter 'p' expects int, got 2\.5 \(expected a whole number\)$"
    with pytest.raises(RegistryError, match=said):
        Param("p", int).parse(2.5, "reward 'r'")
    with pytest.raises(ConfigError, match=r"^x: choose one of 1, 3, got '2'$"):
        coerce("2", Literal[1, 3], "x")


# --------------------------------------------------------------------------- clear names


def _settle(algo, *layers):
    from raftkit.config import settle

    return settle([(values, (lambda key: f"--{key}"), None) for values in layers[:-1]]
                  + [({**layers[-1], "algo": algo}, lambda key: f"--{key}", None)])


@pytest.mark.parametrize(("algo", "given", "field"), [
    ("grpo", "kl_beta", "beta"), ("ppo", "kl_beta", "kl_coef"), ("raft", "kl_beta", "rank_beta"),
    ("online_dpo", "dpo_beta", "beta"), ("grpo", "passes_per_batch", "num_iterations"),
    ("raft", "passes_per_batch", "epochs_per_iteration"), ("ppo", "gae_lambda", "lam"),
    ("reinforce_rej", "mismatch_correction", "is_correction"), ("raftpp", "mismatch_cap", "is_cap"),
])
def test_a_clear_name_sets_the_algorithms_own_field(algo, given, field):
    from raftkit.api import build_configs

    value = {"mismatch_correction": "token_mask", "gae_lambda": 0.5}.get(given, 2)
    values = _settle(algo, {given: value})
    assert values == {field: value, "algo": algo}
    assert getattr(build_configs({**values, "rewards": ["emoji"]})[1], field) == value
    if given == "kl_beta" and algo == "raft":  # a range check names the option it was given as
        with pytest.raises(ConfigError, match=r"--kl-beta \(rank_beta\) must be at least 0, got -1"):
            build_configs({**_settle(algo, {given: -1}), "rewards": ["emoji"]})
    if given == "gae_lambda":  # the algorithm's own check names the option too
        with pytest.raises(ConfigError, match=r"options: --gae-lambda \(lam\) must be in \[0, 1\], got 2"):
            build_configs({**_settle(algo, {given: 2}), "rewards": ["emoji"]})


def test_old_names_still_work_and_a_later_layer_wins_by_either_name():
    # the field names (a saved config.yaml, an older --config file) stay settings of their own
    assert _settle("grpo", {"beta": 0.1, "num_iterations": 2}) == {"beta": 0.1, "num_iterations": 2,
                                                                  "algo": "grpo"}
    # a saved run's old key, then a new name on the command line: the command line wins
    saved = {"beta": 0.1, "is_correction": "none", "k": 4}
    assert _settle("grpo", saved, {"kl_beta": 0.3}) == {"beta": 0.3, "is_correction": "none", "k": 4,
                                                        "algo": "grpo"}
    with pytest.raises(ConfigError, match=r"--beta and --kl_beta are one setting; give one of them"):
        _settle("grpo", {"beta": 0.1, "kl_beta": 0.2})
    with pytest.raises(ConfigError, match=r"--kl_beta is a raft/raftpp/reinforce_rej/grpo/ppo setting; "
                                          r"online_dpo does not use it"):
        _settle("online_dpo", {"kl_beta": 0.2})
    with pytest.raises(ConfigError, match=r"--dpo_beta is a online_dpo setting; grpo does not use it"):
        _settle("grpo", {"dpo_beta": 0.2})


def test_clear_names_on_the_command_line_and_in_a_config_file(tmp_path):
    from raftkit.cli import main

    runner = CliRunner()

    def run(*args):  # the run fails at the unknown reward, after every option was read and checked
        return runner.invoke(main, ["align", "--reward", "no_such_reward", "--output", str(tmp_path / "r"),
                                    *args])

    for args in (["--algo", "grpo", "--kl-beta", "0.1", "--passes-per-batch", "2",
                  "--mismatch-correction", "token_mask", "--mismatch-cap", "2"],
                 ["--algo", "grpo", "--beta", "0.1", "--num-iterations", "2", "--is-correction", "none",
                  "--is-cap", "2"],
                 ["--algo", "online_dpo", "--dpo-beta", "0.2"], ["--algo", "online_dpo", "--beta", "0.2"],
                 ["--algo", "ppo", "--kl-beta", "0.1", "--gae-lambda", "0.9", "--passes-per-batch", "1"],
                 ["--algo", "ppo", "--kl-coef", "0.1", "--lam", "0.9"],
                 ["--kl-beta", "0.1", "--passes-per-batch", "1"], ["--rank-beta", "0.1"]):
        result = run(*args)
        assert "unknown reward or filter 'no_such_reward'" in result.output, (args, result.output)
    result = run("--algo", "online_dpo", "--kl-beta", "0.1")
    assert result.exit_code == 1
    assert ("--kl-beta is a raft/raftpp/reinforce_rej/grpo/ppo setting; online_dpo does not use it"
            in result.output)
    result = run("--algo", "grpo", "--kl-beta", "0.1", "--beta", "0.2")
    assert result.exit_code == 1
    assert re.search(r"--(kl-)?beta and --(kl-)?beta are one setting; give one of them", result.output)
    cfg = tmp_path / "new.yaml"
    cfg.write_text("algo: ppo\nkl_beta: 0.1\ngae_lambda: 0.9\npasses_per_batch: 3\n")
    assert "no_such_reward" in run("--config", str(cfg)).output
    cfg.write_text("algo: ppo\nkl_beta: 0.1\nkl_coef: 0.2\n")
    result = run("--config", str(cfg))
    assert result.exit_code == 1
    assert f"--config {cfg}: 'kl_beta' and --config {cfg}: 'kl_coef' are one setting" in result.output


def test_raftkit_align_takes_clear_names_and_field_names(tmp_path):
    import raftkit

    reward = "length"
    # Each value reaches its field (the field's own check fires) before any run directory exists.
    with pytest.raises(ConfigError, match=r"align: --passes-per-batch \(num_iterations\) must be >= 1"):
        raftkit.align([reward], algo="grpo", passes_per_batch=0, output=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"raftkit.align: --kl-beta \(kl_coef\) must be a finite number"):
        raftkit.align([reward], algo="ppo", kl_beta=-1.0, output=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"raftkit.align: --dpo-beta \(beta\) must be a finite number > 0"):
        raftkit.align([reward], algo="online_dpo", beta=0.0, output=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"align: 'kl_beta' is a .*ppo setting; online_dpo does not"):
        raftkit.align([reward], algo="online_dpo", kl_beta=0.1, output=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_align_help_is_grouped_and_shows_the_chosen_algorithms_settings():
    from raftkit.cli import main
    from raftkit.cli.options import GROUPS

    runner = CliRunner(env={"COLUMNS": "100"})
    grpo = runner.invoke(main, ["align", "--algo", "grpo", "--help"]).output
    for heading in ("Run:", "Model and data:", "Sampling:", "Rewards:", "Evaluation:",
                    "grpo settings (--algo grpo):"):
        assert f"\n{heading}\n" in grpo, heading
    assert grpo.index("Sampling:") < grpo.index("--top-p") < grpo.index("Rewards:") < grpo.index("--filter")
    for shown in ("--kl-beta", "--passes-per-batch", "--mismatch-correction", "--scale-rewards",
                  "(also --beta)", "--resume", "--no-filters"):
        assert shown in grpo, shown
    # other algorithms' settings and old spellings are not listed as options
    for hidden in ("--ranking", "--gae-lambda", "--dpo-beta", "--epochs-per-iteration", "  --beta",
                   "  --is-correction"):
        assert hidden not in grpo, hidden
    assert "Other algorithms: raft, raftpp, reinforce_rej, online_dpo, ppo." in " ".join(grpo.split())
    plain = runner.invoke(main, ["align", "--help"]).output
    assert "raft settings (--algo raft):" in plain and "--ranking" in plain and "--scale-rewards" not in plain
    assert "raftkit align --algo NAME --help" in " ".join(plain.split())
    assert "--dpo-beta" in runner.invoke(main, ["align", "--algo=online_dpo", "--help"]).output
    result = runner.invoke(main, ["align", "--algo", "nope", "--help"])
    assert result.exit_code == 2 and "unknown algorithm 'nope'" in result.output
    # every shared field has its group
    grouped = {n for names in GROUPS.values() for n in names}
    assert [f for f in fields_of(AlignConfig) if f not in grouped] == []


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
