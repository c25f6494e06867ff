"""Prompt sets: the bundled questions, loading files of every supported type, errors, batching."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from raftkit.datasets import DatasetError, PromptSet, epoch_order, load_prompts
from raftkit.rollouts import Batch

CHAT_A = [{"role": "user", "content": "What is 2+2?"}]
CHAT_B = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Japan?"}]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the bundled set


@pytest.fixture(scope="module")
def bundled() -> PromptSet:
    return load_prompts()


def test_bundled_set_size_languages_topics(bundled):
    assert len(bundled) >= 240
    assert load_prompts("bundled").prompts == bundled.prompts
    langs = Counter(bundled.columns["lang"])
    assert set(langs) == {"en", "ja"}
    assert abs(langs["en"] - langs["ja"]) <= len(bundled) // 10  # roughly half each
    assert len(set(bundled.columns["topic"])) >= 10
    for p in bundled.prompts:  # one user turn, a short question
        assert isinstance(p, list) and len(p) == 1 and p[0]["role"] == "user"
        assert 0 < len(p[0]["content"]) <= 120
    # Japanese rows really are Japanese (kana/kanji), English rows are not.
    for p, lang in zip(bundled.prompts, bundled.columns["lang"], strict=True):
        has_cjk = any("\u3040" <= ch <= "\u9fff" for ch in p[0]["content"])
        assert has_cjk == (lang == "ja"), p


def test_bundled_no_duplicate_questions(bundled):
    questions = [p[0]["content"].strip().casefold() for p in bundled.prompts]
    assert len(set(questions)) == len(questions)


def test_bundled_heldout_is_exactly_the_marked_rows(bundled):
    marked = [i for i, s in enumerate(bundled.columns["split"]) if s == "heldout"]
    assert set(bundled.columns["split"]) == {"train", "heldout"}
    assert len(marked) == 40
    train, held = bundled.split_heldout(40)
    assert len(held) == 40 and len(train) == len(bundled) - 40
    assert held.prompts == [bundled.prompts[i] for i in marked]
    assert set(held.columns["split"]) == {"heldout"} and set(train.columns["split"]) == {"train"}
    held_q = {p[0]["content"] for p in held.prompts}
    assert held_q.isdisjoint(p[0]["content"] for p in train.prompts)
    assert Counter(held.columns["lang"]) == {"en": 20, "ja": 20}
    assert len(set(held.columns["topic"])) >= 8  # spread over topics


def test_bundled_heldout_smaller_n_never_leaks_into_train(bundled):
    train, held = bundled.split_heldout(10)
    assert len(held) == 10
    assert len(train) == len(bundled) - 40  # the other 30 marked rows are not trained on either
    assert "heldout" not in train.columns["split"]


# --------------------------------------------------------------------------- loading files


def test_jsonl_plain_strings_with_columns(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Hi there", "answer": "a", "n": 1},
                                           {"prompt": "[draft] not json", "answer": "b", "n": 2},
                                           {"prompt": "Third", "answer": "c", "n": 3}])
    ps = load_prompts(str(f))
    assert ps.prompts == ["Hi there", "[draft] not json", "Third"]
    assert ps.columns == {"answer": ["a", "b", "c"], "n": [1, 2, 3]}
    assert str(f) in ps.source
    assert load_prompts(str(f), limit=2).columns == {"answer": ["a", "b"], "n": [1, 2]}


def test_jsonl_chat_messages(tmp_path):
    f = write_jsonl(tmp_path / "chat.jsonl", [{"messages": CHAT_A, "lang": "en"},
                                              {"messages": CHAT_B, "lang": "ja"}])
    ps = load_prompts(str(f), prompt_column="messages")
    assert ps.prompts == [CHAT_A, CHAT_B]
    assert ps.columns == {"lang": ["en", "ja"]}


def test_csv_with_json_string_messages(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text('question,answer\n"' + json.dumps(CHAT_B).replace('"', '""') + '",Tokyo\nplain text,x\n')
    ps = load_prompts(str(f), prompt_column="question")
    assert ps.prompts == [CHAT_B, "plain text"]
    assert ps.columns == {"answer": ["Tokyo", "x"]}


def test_parquet_chat_messages(tmp_path):
    import pandas as pd

    f = tmp_path / "p.parquet"
    pd.DataFrame({"prompt": [CHAT_A, CHAT_B], "target": [4, 30]}).to_parquet(f)
    ps = load_prompts(str(f))
    # Arrow stores messages as structs: no key may be invented, none lost.
    assert ps.prompts == [CHAT_A, CHAT_B]
    assert ps.columns == {"target": [4, 30]}


def test_json_array(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps([{"prompt": "one", "k": "x"}, {"prompt": CHAT_A, "k": "y"}]))
    ps = load_prompts(str(f))
    assert ps.prompts == ["one", CHAT_A]
    assert ps.columns == {"k": ["x", "y"]}


def test_folder_of_files(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    write_jsonl(d / "a.jsonl", [{"prompt": "a1", "c": 1}, {"prompt": "a2", "c": 2}])
    write_jsonl(d / "b.jsonl", [{"prompt": "b1", "c": 3}])
    ps = load_prompts(str(d))
    assert sorted(ps.prompts) == ["a1", "a2", "b1"]
    assert dict(zip(ps.prompts, ps.columns["c"], strict=True)) == {"a1": 1, "a2": 2, "b1": 3}


def test_from_records_validates_like_load():
    ps = PromptSet.from_records([{"prompt": "x", "a": 1}, {"prompt": json.dumps(CHAT_A)}])
    assert ps.prompts == ["x", CHAT_A]
    assert ps.columns == {"a": [1, None]}


# --------------------------------------------------------------------------- errors


def error_of(*args, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        load_prompts(*args, **kwargs)
    return str(info.value)


def test_missing_prompt_column_lists_columns_and_closest(tmp_path):
    f = write_jsonl(tmp_path / "q.jsonl", [{"questions": "a", "answer": "b"}])
    msg = error_of(str(f))
    assert "no column 'prompt'" in msg and "questions, answer" in msg
    msg = error_of(str(f), prompt_column="question")
    assert "Did you mean 'questions'" in msg and "--prompt-column questions" in msg
    assert "Did you mean 'questions'" in error_of(str(f), prompt_column="QUESTIONS")


def test_empty_dataset(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    (tmp_path / "h.csv").write_text("prompt,answer\n")
    assert "has no rows" in error_of(str(tmp_path / "e.jsonl"))
    assert "has no rows" in error_of(str(tmp_path / "h.csv"))


def test_bad_prompt_row_is_named(tmp_path):
    f = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "ok"}, {"prompt": 42}])
    msg = error_of(str(f))
    assert "column 'prompt', row 2" in msg and "int" in msg and str(f) in msg


@pytest.mark.parametrize(("prompt", "expected"), [
    ([{"role": "user"}], "'content' must be a string"),
    ([{"content": "hi"}], "'role' must be a non-empty string"),
    ([], "message list is empty"),
    (["just text"], "expected {"),
    (json.dumps([{"role": "user", "content": None}]), "'content' must be a string"),
    ("   ", "the prompt is empty"),
])
def test_invalid_message_lists(tmp_path, prompt, expected):
    f = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "fine"}, {"prompt": "fine too"}, {"prompt": prompt}])
    msg = error_of(str(f))
    assert "row 3" in msg and expected in msg


def test_unknown_file_type_and_missing_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("hello\n")
    msg = error_of(str(f))
    assert "unknown file type '.txt'" in msg and ".jsonl" in msg
    assert "no such file or folder" in error_of(str(tmp_path / "missing.jsonl"))


def test_invalid_json_line_is_located(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": \n')
    assert "line 2 is not valid JSON" in error_of(str(f))


def test_reserved_column_name(tmp_path):
    f = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "a", "completions": "x"}])
    assert "'completions'" in error_of(str(f)) and "rename" in error_of(str(f))


def test_folder_with_mixed_or_no_files(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"prompt": "a"}])
    (tmp_path / "b.csv").write_text("prompt\nb\n")
    assert "mixes file types" in error_of(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert "no .json, .jsonl, .csv, .parquet files" in error_of(str(empty))


def test_hub_name_without_network(monkeypatch):
    # Offline mode fails the same way an unreachable hub does, without the library's network retries.
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    msg = error_of("someone/some-prompts")
    assert "hub could not be reached" in msg and "local file" in msg


def test_limit_must_be_positive():
    assert "limit must be at least 1" in error_of(None, limit=0)


# --------------------------------------------------------------------------- batching and splits


def small_set(n: int = 7) -> PromptSet:
    return PromptSet([f"q{i}" for i in range(n)], {"id": list(range(n)), "tag": [f"t{i}" for i in range(n)]},
                     "test")


def test_subset_and_batch_keep_columns_aligned():
    ps = small_set()
    sub = ps.subset([5, 1, 3])
    assert sub.prompts == ["q5", "q1", "q3"] and sub.columns == {"id": [5, 1, 3], "tag": ["t5", "t1", "t3"]}
    b = ps.batch([6, 0])
    assert isinstance(b, Batch)
    assert (b.prompts, b.columns, b.indices) == (["q6", "q0"], {"id": [6, 0], "tag": ["t6", "t0"]}, [6, 0])
    with pytest.raises(DatasetError, match="column 'id' has 2 values for 3 prompts"):
        PromptSet(["a", "b", "c"], {"id": [1, 2]})


def test_batch_at_is_deterministic_and_walks_epochs():
    ps = small_set(7)
    size = 3
    batches = [ps.batch_at(i, size, seed=11) for i in range(7)]  # 21 positions = exactly 3 epochs
    assert [ps.batch_at(i, size, seed=11).indices for i in range(7)] == [b.indices for b in batches]
    stream = [i for b in batches for i in b.indices]
    # The stream is the concatenation of each epoch's seeded shuffle, so a batch may straddle two epochs
    # (iteration 2 takes positions 6, 7, 8: the last of epoch 0 and the first two of epoch 1).
    assert stream == epoch_order(7, 11, 0) + epoch_order(7, 11, 1) + epoch_order(7, 11, 2)
    for e in range(3):
        assert sorted(stream[7 * e : 7 * e + 7]) == list(range(7))  # every prompt once per epoch
    assert batches[2].indices == [epoch_order(7, 11, 0)[6], *epoch_order(7, 11, 1)[:2]]
    for b in batches:  # columns follow the rows
        assert b.columns["id"] == b.indices and b.prompts == [f"q{i}" for i in b.indices]
    # Epochs are shuffled differently, and the seed matters.
    assert len({tuple(epoch_order(7, 11, e)) for e in range(3)}) > 1
    assert ps.batch_at(0, 7, seed=12).indices != ps.batch_at(0, 7, seed=11).indices


def test_batch_at_resume_sees_same_batch_without_history():
    ps = small_set(50)
    later = ps.batch_at(37, 8, seed=3)  # computed cold, as a resumed run would
    walked = [ps.batch_at(i, 8, seed=3) for i in range(38)][-1]
    assert later.indices == walked.indices
    with pytest.raises(ValueError):
        ps.batch_at(0, 0, seed=3)


def test_split_heldout_seeded_without_split_column():
    ps = small_set(20)
    train, held = ps.split_heldout(5, seed=1)
    assert len(held) == 5 and len(train) == 15
    assert set(held.columns["id"]).isdisjoint(train.columns["id"])
    assert sorted(held.columns["id"] + train.columns["id"]) == list(range(20))
    assert train.columns["id"] == sorted(train.columns["id"])  # original order kept
    assert ps.split_heldout(5, seed=1)[1].prompts == held.prompts
    assert ps.split_heldout(5, seed=2)[1].prompts != held.prompts
    with pytest.raises(DatasetError, match="cannot hold out 20 of 20"):
        ps.split_heldout(20)


def test_batches_of_a_split_carry_source_row_numbers():
    # Rollout records name the dataset row; after the held-out split that must still be the source row.
    ps = load_prompts()
    train, held = ps.split_heldout(40)
    batch = train.batch_at(0, 8, seed=3)
    assert all(ps.prompts[row] == prompt for row, prompt in zip(batch.indices, batch.prompts, strict=True))
    assert set(held.rows).isdisjoint(train.rows)
    assert all(ps.columns["split"][row] == "heldout" for row in held.rows)


BENCHMARK_DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data"
BENCHMARK_SETS = [BENCHMARK_DATA / f"facts_{s}.jsonl" for s in "abcd"]


def test_bundled_answers_and_measurement_sets_are_separate(bundled):
    # Every bundled question carries accepted answers for answer_match / `raftkit eval`.
    answers = bundled.columns["answers"]
    assert len(answers) == len(bundled)
    for p, entry in zip(bundled.prompts, answers, strict=True):
        assert isinstance(entry, list) and entry, p
        assert all(isinstance(a, str) and a.strip() for a in entry), (p, entry)
    # The held-out measurement sets (not shipped in the package) never repeat a bundled question, nor one
    # of another set: a repeated question would measure memory, not answers. facts_c and facts_d
    # (conversational phrasings: "Quick question: ...") widen the pool beyond facts_a and facts_b.
    bundled_q = {p[0]["content"].strip().casefold() for p in bundled.prompts}
    seen: set[str] = set()
    for path in BENCHMARK_SETS:
        facts = load_prompts(str(path))
        if path.stem in ("facts_a", "facts_b"):
            assert len(facts) == 60 and Counter(facts.columns["lang"]) == {"en": 30, "ja": 30}
        assert set(facts.columns["lang"]) == {"en", "ja"}, path.name
        assert "split" not in facts.columns
        for p, entry in zip(facts.prompts, facts.columns["answers"], strict=True):
            q = p[0]["content"].strip().casefold()
            assert q not in bundled_q and q not in seen, (path.name, p)
            seen.add(q)
            assert isinstance(entry, list) and entry and all(isinstance(a, str) and a.strip() for a in entry)


def test_a_bad_byte_past_the_first_megabyte_is_found_on_its_line(tmp_path):
    # The UTF-8 check reads in 1 MiB chunks; the line count must carry across them, and a character split
    # by a chunk boundary is not an error.
    row = json.dumps({"prompt": "Où est la gare ? " + "é" * 40}, ensure_ascii=False) + "\n"
    lines = (1 << 20) // len(row.encode()) + 100
    path = tmp_path / "big.jsonl"
    path.write_bytes(row.encode() * lines + b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match=rf"big.jsonl line {lines + 1}: not UTF-8 text \(byte 0xe9"):
        load_prompts(str(path))
    path.write_bytes(row.encode() * lines)
    assert len(load_prompts(str(path)).prompts) == lines
