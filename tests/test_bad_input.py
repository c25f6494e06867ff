"""A hostile user at the real CLI (issue 11): every bad invocation exits non-zero with a message that names
the problem, never a traceback. Also the behaviours behind them: bounds, qualified names, plugins that
clash or misspell a hook, the score table at 80 columns."""

from __future__ import annotations

import json
import re
from typing import Annotated

import pytest
from click.testing import CliRunner
from conftest import inline_plugin

from raftkit.cli import main
from raftkit.rewards import (
    ALLOW_NON_FINITE,
    Ge,
    Gt,
    Le,
    Lt,
    RegistryError,
    RewardStack,
    hookimpl,
    info_for,
    load_registry,
    reward,
)

ROWS = [{"prompt": "Capital of France?", "completion": "Paris! 😊"}, {"prompt": "Hi", "completion": "Hello#"}]


def invoke(*args: str, width: int = 250):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(width)})


def assert_clean_error(result, message: str) -> None:
    """Non-zero exit, the message in the output, and no traceback (CliRunner keeps it in .exception)."""
    assert result.exit_code != 0, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.fixture
def files(tmp_path):
    """Input files, good and bad, by name."""
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    (tmp_path / "excel.csv").write_bytes(b'prompt,completion\nq,\x93Hello\x94 caf\xe9\n')
    (tmp_path / "cp1252.jsonl").write_bytes(b'{"prompt": "q", "completion": "ok"}\n{"prompt": "q", '
                                            b'"completion": "caf\xe9"}\n')
    scored = tmp_path / "scored.jsonl"
    result = invoke("score", "-r", "emoji", "-f", "stray_hash", "-i", str(good), "--json")
    assert result.exit_code == 0, result.output
    scored.write_text(result.stdout, encoding="utf-8")
    configs = {
        "typo.yaml": "iteratons: 3\n",
        "weight.yaml": "rewards:\n  - {name: length, weight: abc}\n",
        "nan.yaml": "rewards:\n  - {name: length, weight: .nan}\n",
        "params.yaml": "rewards:\n  - {name: length, params: \"target=3\"}\n",
        "parms.yaml": "rewards:\n  - {name: length, parms: {target: 3}}\n",
        "number_key.yaml": "rewards: [emoji]\n1: 2\n",
    }
    for name, text in configs.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


SCORE = [
    (["-r", "emoj"], "Did you mean 'emoji'?"),
    (["-r", "emoji*abc"], "the weight after '*' must be a number, got 'abc'"),
    (["-r", "emoji*1e999"], "the weight must be a finite number"),
    (["-r", "emoji:max=4,max=5"], "parameter 'max' is given twice"),
    (["-r", "emoji:max=-3"], "parameter 'max' = '-3' is not valid: must be >= 0"),
    (["-r", "distinct:n=0"], "parameter 'n' = '0' is not valid: must be >= 1"),
    (["-r", "repetition:n=-1"], "parameter 'n' = '-1' is not valid: must be >= 1"),
    (["-r", "length:alpha=nan"], "parameter 'alpha' must be a finite number"),
    (["-r", "emoji", "-f", "stray_hash*2"], "filter 'stray_hash' takes no weight"),
    (["-r", "emoji", "-f", "stray_hash:penalty=nan"], "filter 'stray_hash': penalty must be a finite number"),
    (["-r", "emoji", "-f", "stray_hash:penalty=-inf"], "penalty must be a finite number"),
    (["-r", "emoji", "-f", "emoji_density:max_share=1.5"], "parameter 'max_share' = '1.5' is not valid"),
    (["-r", "emoji", "--reward-timeout", "nan"], "--reward-timeout must be a positive number"),
    (["-r", "nopkg:emoji"], "no plugin 'nopkg' registers 'emoji'"),
    (["-r", "length:target"], "Parameters are given as key=value"),
    (["-r", "emoji", "--prompt-column", "promt"], "no column 'promt'; the columns are: prompt, completion. "
                                                   "Did you mean 'prompt'?"),
]


@pytest.mark.parametrize(("args", "message"), SCORE, ids=[" ".join(a) for a, _ in SCORE])
def test_score_bad_invocations(files, args, message):
    assert_clean_error(invoke("score", *args, "-i", str(files / "good.jsonl")), message)


@pytest.mark.parametrize(("name", "message"), [
    ("excel.csv", "excel.csv line 2: not UTF-8 text (byte 0x93"),
    ("cp1252.jsonl", "cp1252.jsonl line 2: not UTF-8 text (byte 0xe9"),
])
def test_score_input_in_another_encoding(files, name, message):
    assert_clean_error(invoke("score", "-r", "emoji", "-i", str(files / name)), message)
    assert_clean_error(invoke("score", "-r", "emoji", "--dataset", str(files / name)), message)


def test_score_reads_a_byte_order_mark(tmp_path):
    bodies = {"jsonl": '{"prompt": "q", "completion": "hi 😊"}\n', "csv": "prompt,completion\nq,hi 😊\n"}
    for suffix, body in bodies.items():
        path = tmp_path / f"bom.{suffix}"
        path.write_bytes(b"\xef\xbb\xbf" + body.encode())  # what Excel and Notepad write first
        result = invoke("score", "-r", "emoji", "-i", str(path), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"prompt": "q", "completion": "hi 😊", "emoji": 1.0, "total": 1.0,
                                             "dropped": False}


def test_score_without_a_prompt_column_still_scores_completions(tmp_path):
    path = tmp_path / "only.jsonl"
    path.write_text('{"completion": "hi 😊"}\n', encoding="utf-8")
    result = invoke("score", "-r", "emoji", "-i", str(path), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["prompt"] == ""
    path.write_text('{"Prompt": "q", "completion": "hi 😊"}\n', encoding="utf-8")  # a slip: said
    assert_clean_error(invoke("score", "-r", "emoji", "-i", str(path)), "Did you mean 'Prompt'?")


INSPECT = [
    (["{dir}/nope.jsonl"], "no such file or directory"),
    (["{dir}/scored.jsonl", "--filter", "stray_hsh"],
     "--filter stray_hsh: no such filter in these rollouts. Did you mean 'stray_hash'? Filters: stray_hash"),
    (["{dir}/scored.jsonl", "--sort", "bogus"], "--sort expects reward, reward:NAME or length"),
    (["{dir}/scored.jsonl", "--grep", "("], "is not a valid regular expression"),
]


@pytest.mark.parametrize(("args", "message"), INSPECT, ids=[" ".join(a) for a, _ in INSPECT])
def test_inspect_bad_invocations(files, args, message):
    assert_clean_error(invoke("inspect", *(a.format(dir=files) for a in args)), message)


def test_inspect_known_filter_without_hits_still_says_no_match(files):
    result = invoke("inspect", str(files / "scored.jsonl"), "--filter", "stray_hash", "--prompt", "France")
    assert result.exit_code == 0 and "no rollouts match" in result.output


REWARDS = [
    (["--bogus"], "No such option '--bogus'"),
    (["extra"], "unexpected extra argument"),
]


@pytest.mark.parametrize(("args", "message"), REWARDS, ids=[" ".join(a) for a, _ in REWARDS])
def test_rewards_bad_invocations(args, message):
    assert_clean_error(invoke("rewards", *args), message)


# Each fails while the rewards, filters and config are checked: before any model loads.
ALIGN = [
    (["--reward", "nope"], "unknown reward or filter 'nope'"),
    (["--reward", "emoji*abc"], "the weight after '*' must be a number"),
    (["--reward", "emoji:max=-3"], "parameter 'max' = '-3' is not valid"),
    (["--reward", "emoji:max=4,max=5"], "parameter 'max' is given twice"),
    (["--reward", "emoji", "--filter", "nope"], "unknown reward or filter 'nope'"),
    (["--reward", "emoji", "--filter", "stray_hash:penalty=nan"], "penalty must be a finite number"),
    (["--reward", "emoji", "--reward-timeout", "nan"], "--reward-timeout and --kv-cache-gib must be"),
    (["--config", "{dir}/typo.yaml"], "unknown option 'iteratons'. Did you mean 'iterations'?"),
    (["--config", "{dir}/weight.yaml"], "'rewards'[0]: reward 'length': 'weight' must be a number, got"),
    (["--config", "{dir}/nan.yaml"], "'weight' must be a finite number"),
    (["--config", "{dir}/params.yaml"], "'params' must be a mapping such as {target: 30}, got 'target=3'"),
    (["--config", "{dir}/parms.yaml"], "unknown key 'parms'. Did you mean 'params'?"),
    (["--config", "{dir}/number_key.yaml"], "unknown option '1'"),
]


@pytest.mark.parametrize(("args", "message"), ALIGN, ids=[" ".join(a) for a, _ in ALIGN])
def test_align_bad_invocations(files, monkeypatch, args, message):
    monkeypatch.chdir(files)  # a run directory would land here (none must be made)
    assert_clean_error(invoke("align", *(a.format(dir=files) for a in args)), message)
    assert not (files / "runs").exists()


# --------------------------------------------------------------------------- bounds


@reward(name="bounded")
def bounded(completions, *, n: Annotated[int, Ge(1)] = 2, share: Annotated[float, Gt(0), Le(1)] = 0.5,
            below: Annotated[float, Lt(10)] = 0.0, free: Annotated[float, ALLOW_NON_FINITE] = 0.0,
            plain: float = 1.0, **kwargs):
    return [0.0] * len(completions)


@pytest.mark.parametrize(("raw", "message"), [
    ({"n": "0"}, "'n' = '0' is not valid: must be >= 1"),
    ({"share": "0"}, "'share' = '0' is not valid: must be > 0"),
    ({"share": "1.5"}, "'share' = '1.5' is not valid: must be <= 1"),
    ({"below": "10"}, "'below' = '10' is not valid: must be < 10"),
    ({"plain": "inf"}, "'plain' must be a finite number, got 'inf'"),
    ({"plain": float("nan")}, "'plain' must be a finite number"),
    ({"share": "nan"}, "'share' must be a finite number"),  # NaN compares false: not left to the bounds
])
def test_bounds_and_non_finite_floats_are_refused_with_the_parameter_name(raw, message):
    with pytest.raises(RegistryError, match=re.escape(message)):
        info_for(bounded).parse_params(raw)


def test_bounds_accept_what_they_allow():
    got = info_for(bounded).parse_params({"n": "1", "share": "1", "below": "9.5", "free": "-inf"})
    assert got == {"n": 1, "share": 1.0, "below": 9.5, "free": float("-inf")}


# --------------------------------------------------------------------------- plugins


@reward(name="emoji", description="Someone else's emoji.")
def other_emoji(completions, **kwargs):
    return [7.0] * len(completions)


def test_a_plugin_that_takes_a_registered_name_is_a_failure_not_a_crash():
    with inline_plugin(other_emoji, name="other-plugin"):
        registry = load_registry()
        listing = invoke("rewards")
        by_default = RewardStack.build(["emoji"]).score(["q"], ["no emoji"]).total
        chosen = RewardStack.build(["other-plugin:emoji"])
        builtin = RewardStack.build(["raftkit:emoji:max=1", "rules:emoji"])
    assert registry.get("emoji").plugin == "raftkit:rules"  # the first registration keeps the name
    assert "RAFTKIT_LOAD_PLUGINS" in registry.failures["other-plugin"]
    assert "'other-plugin:emoji'" in registry.failures["other-plugin"]
    assert listing.exit_code == 0 and "1 plugin(s) failed to load" in listing.output
    assert "other-plugin" in listing.output and "length" in listing.output  # the others still listed
    assert by_default == [0.0]
    assert chosen.score(["q"], ["x"]).total == [7.0] and chosen.entries[0].label == "other-plugin:emoji"
    assert [e.info.plugin for e in builtin.entries] == ["raftkit:rules", "raftkit:rules"]
    assert builtin.entries[0].params == {"max": 1}


def test_a_plugin_registering_one_name_twice_loads_nothing_and_is_reported():
    def twice(completions, **kwargs):
        return [0.0] * len(completions)

    with inline_plugin(twice, twice, name="twice-plugin"):
        registry = load_registry()
    assert "twice more than once" in registry.failures["twice-plugin"]
    assert "twice" not in registry.rewards and "emoji" in registry.rewards


def test_a_misspelt_hook_is_reported():
    import types

    from raftkit.rewards import plugin_manager

    module = types.ModuleType("typo-plugin")

    def register_reward(register):
        register(other_emoji)

    module.register_reward = hookimpl(register_reward)
    plugin_manager().register(module, name="typo-plugin")
    try:
        registry = load_registry()
        listing = invoke("rewards")
    finally:
        plugin_manager().unregister(name="typo-plugin")
    assert "implements 'register_reward', which is not a raftkit hook" in registry.failures["typo-plugin"]
    assert "Did you mean 'register_rewards'?" in registry.failures["typo-plugin"]
    assert "typo-plugin" in listing.output and listing.exit_code == 0
    assert "typo-plugin" not in load_registry().failures  # unregistered: nothing left to report


# --------------------------------------------------------------------------- output


def test_score_refuses_a_total_that_overflows_in_one_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"prompt": "q", "completion": "😊😊"}\n', encoding="utf-8")
    result = invoke("score", "-r", "emoji*1e308", "-i", str(path), "--json")  # 2 * 1e308 overflows
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "overflow" in result.output and "emoji 2.0 x weight 1e+308" in result.output
    assert "Infinity" not in result.stdout


def test_score_table_at_80_columns_shows_every_total(tmp_path):
    path = tmp_path / "long.jsonl"
    text = "A rather long completion with an emoji 😊 and words that go on and on. " * 3
    rows = [json.dumps({"prompt": "q", "completion": text + str(i)}) + "\n" for i in range(3)]
    path.write_text("".join(rows), encoding="utf-8")
    rewards = ["-r", "emoji*1.5", "-r", "length:target=10*2", "-r", "repetition", "-r", "distinct",
               "-r", "keyword:words=emoji,words",
               "-f", "stray_hash", "-f", "emoticon_flood", "-f", "repetition_loop"]
    for args in (rewards, rewards[:6]):  # too many columns for the text beside them, and enough room
        result = invoke("score", *args, "-i", str(path), width=80)
        assert result.exit_code == 0, result.output
        totals = {f"{t:.3f}" for t in (json.loads(line)["total"] for line in
                                       invoke("score", *args, "-i", str(path), "--json").stdout.splitlines())}
        rows = [line for line in result.output.splitlines() if re.match(r"\s*\d+\s", line)]
        assert max(map(len, result.output.splitlines())) <= 80
        for total in totals:
            assert any(total in line.split() for line in rows), (total, result.output)
        assert "A rather long completion" in result.output


# --------------------------------------------------------------------------- over-long prompts


def test_an_over_long_prompt_is_refused_by_row_before_it_is_tokenised(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    big = tmp_path / "big.jsonl"
    rows = [{"prompt": "short"}, {"prompt": "word " * 1_000_000}, {"prompt": "also short"}]  # a 5 MB line
    big.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = invoke("align", "--reward", "length", "--dataset", str(big))
    assert_clean_error(result, f"{big}, column 'prompt', row 2: the prompt is 5,000,000 characters long; "
                               "prompts are sampled up to 512 tokens, at most 65,536 characters")
    assert not (tmp_path / "runs").exists()


class _NoTokenizing:
    """Stands for a tokenizer that must not be reached: tokenising 50 MB is what ran out of memory."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("tokenised an over-long prompt")

    def apply_chat_template(self, *args, **kwargs):
        raise AssertionError("rendered an over-long prompt")


def test_the_sampler_skips_an_over_long_prompt_without_tokenising_it():
    from raftkit.chat import PromptTooLong, encode_prompt
    from raftkit.sampling.sampler import encode_prompts

    huge = "x" * (50 * 2**20)
    encoded, skipped = encode_prompts(_NoTokenizing(), [huge, [{"role": "user", "content": huge}]], 512)
    assert encoded == [None, None] and skipped == [0, 1]
    with pytest.raises(PromptTooLong, match="the prompt is 52,428,800 characters long; one of at most 8 "
                                            "tokens has at most 1,024"):
        encode_prompt(_NoTokenizing(), huge, 8)


def test_report_that_cannot_be_written_in_the_run_folder_suggests_o(tmp_path):
    import os

    from raftkit.runs.rundir import RunWriter, release_lock

    root = tmp_path / "run"
    writer = RunWriter.create(root, {"iterations": 1, "rewards": ["length"]}, "raft")
    writer.commit_iteration(1, {"reward/total/mean": 0.5})
    writer.finish()
    release_lock(root)
    # Tests run as root, for whom permission bits stop no write; a directory where the page's temporary
    # file goes makes the write fail for real, as a read-only run folder does.
    (root / f".report.html.tmp-{os.getpid()}").mkdir()
    result = invoke("report", str(root))
    assert_clean_error(result, f"cannot write {root / 'report.html'} (Is a directory); write the page "
                               "elsewhere with -o FILE.html")
    assert invoke("report", str(root), "-o", str(tmp_path / "page.html")).exit_code == 0


def test_the_character_bound_is_above_the_longest_token(default_tokenizer):
    from raftkit.chat import CHARS_PER_TOKEN

    # So a prompt over the bound could never fit the token limit: refusing it loses no usable prompt.
    vocab = default_tokenizer.get_vocab()
    longest = max(len(default_tokenizer.convert_tokens_to_string([t])) for t in vocab)
    assert longest == 81 and CHARS_PER_TOKEN > longest
