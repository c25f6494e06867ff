"""The offline pipelines (raftkit.pipelines): pairs parsing, the Bradley–Terry reward model, offline DPO, SFT.

Every model here is a tiny random Llama (conftest); nothing is downloaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from raftkit.pipelines.pairs import Pair, PairsError, load_pairs, parse_pair, parse_pairs, split_heldout
from raftkit.pipelines.reward_model import bradley_terry_loss


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _toy_pairs(n: int = 16) -> list[dict]:
    """A preference a tiny model learns in a few steps: the chosen reply ends differently."""
    return [{"prompt": f"Question {i}: ", "chosen": "yes, a fine answer", "rejected": "no no no"}
            for i in range(n)]


# --------------------------------------------------------------------------- pairs


def test_pairs_text_with_prompt_and_messages_column():
    assert parse_pair({"prompt": "Q: ", "chosen": "a", "rejected": "b"}) == Pair("Q: ", "a", "b")
    msgs = [{"role": "user", "content": "hi"}]
    pair = parse_pair({"messages": msgs, "chosen": "hello", "rejected": "go"})
    assert pair == Pair(msgs, "hello", "go")


def test_pairs_conversational_shared_prefix_is_the_prompt():
    user = {"role": "user", "content": "hi"}
    row = {"chosen": [user, {"role": "assistant", "content": "hello"}],
           "rejected": [user, {"role": "assistant", "content": "go away"}]}
    assert parse_pair(row) == Pair([user], "hello", "go away")
    # with an explicit prompt the lists hold the reply only; a text prompt becomes a user turn
    row = {"prompt": "hi", "chosen": [{"role": "assistant", "content": "a"}],
           "rejected": [{"role": "assistant", "content": "b"}]}
    assert parse_pair(row) == Pair([user], "a", "b")
    with pytest.raises(PairsError, match="one assistant message"):
        parse_pair({"prompt": "hi", "chosen": [{"role": "user", "content": "a"}],
                    "rejected": [{"role": "assistant", "content": "b"}]})


def test_pairs_hh_rlhf_split_at_the_last_shared_assistant_turn():
    prefix = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    pair = parse_pair({"chosen": prefix + " I am well.", "rejected": prefix + " I am a toaster."})
    assert pair == Pair(prefix, " I am well.", " I am a toaster.")


def test_pairs_errors_and_skips(tmp_path):
    with pytest.raises(PairsError, match="no rejected column"):
        parse_pair({"prompt": "p", "chosen": "a"})
    with pytest.raises(PairsError, match="both be text or both be message lists"):
        parse_pair({"chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]})
    found = parse_pairs([{"chosen": "a", "rejected": "a"}, {"chosen": "a", "rejected": "b"}])
    assert found.skipped == 1 and found.pairs == [Pair("", "a", "b")]
    path = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert load_pairs(str(path)).pairs == [Pair("p", "a", "b")]
    as_list = tmp_path / "p.json"
    as_list.write_text(json.dumps([{"prompt": "p", "chosen": "a", "rejected": "b"}]))
    assert load_pairs(str(as_list)).pairs == [Pair("p", "a", "b")]


def test_split_heldout_is_seeded_disjoint_and_never_empty():
    pairs = [Pair(str(i), "a", "b") for i in range(10)]
    train, held = split_heldout(pairs, 0.2, seed=1)
    assert len(held) == 2 and len(train) == 8 and not set(map(str, held)) & set(map(str, train))
    assert split_heldout(pairs, 0.2, seed=1) == (train, held)
    assert len(split_heldout(pairs[:3], 0.01)[1]) == 1  # a tiny share still holds one pair out
    assert split_heldout(pairs, 0.0)[1] == []


# --------------------------------------------------------------------------- reward model


def test_bradley_terry_loss_by_hand():
    one = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]))
    assert float(one) == pytest.approx(0.126928, abs=1e-6)  # log(1 + e^-2)
    assert float(bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0]))) == pytest.approx(math.log(2))
    # the mean over pairs, and the sign: preferring the rejected costs more
    both = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0]))
    assert float(both) == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2)


def test_rm_text_matches_the_reward_model_reward(default_tokenizer):
    from raftkit.pipelines.reward_model import rm_text
    from raftkit.rewards.builtin.neural import _rm_texts

    chat = [{"role": "user", "content": "hi"}]
    for prompt in ("Q: ", chat):
        assert rm_text(default_tokenizer, prompt, "yo") == _rm_texts(default_tokenizer, [prompt], ["yo"])[0]
    assert rm_text(default_tokenizer, chat, "yo").rstrip().endswith("yo<|im_end|>")


def test_reward_model_reads_the_last_non_pad_token(tiny_model_path):
    from raftkit.pipelines.reward_model import load_reward_model, score_texts

    model, tok = load_reward_model(tiny_model_path, seed=0)
    assert model.config.pad_token_id == tok.pad_token_id is not None and tok.padding_side == "right"
    texts = ["a short one", "a much longer text that forces padding on the other"]
    with torch.no_grad():
        batched = score_texts(model, tok, texts)
        alone = torch.stack([score_texts(model, tok, [t])[0] for t in texts])
        ids = tok(texts[0], return_tensors="pt")["input_ids"]
        by_hand = model.score(model.model(input_ids=ids).last_hidden_state[:, -1]).squeeze()
    assert torch.allclose(batched, alone, atol=1e-5)  # padding does not move the score
    assert float(batched[0]) == pytest.approx(float(by_hand), abs=1e-5)
    assert float(batched[0]) != pytest.approx(float(batched[1]))


def test_train_rm_cli_learns_and_its_folder_works_as_a_reward(tiny_model_path, tmp_path):
    from raftkit.cli import main
    from raftkit.pipelines.reward_model import load_reward_model, rm_text
    from raftkit.rewards.builtin.neural import reward_model

    data = _write_jsonl(tmp_path / "pairs.jsonl", _toy_pairs(16))
    out = tmp_path / "rm"
    result = CliRunner().invoke(main, ["train-rm", "--dataset", str(data), "--model", tiny_model_path,
                                       "--output", str(out), "--epochs", "3", "--lr", "3e-3",
                                       "--batch-size", "4", "--heldout-share", "0.25"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert records[-1]["heldout/accuracy"] == 1.0
    assert records[-1]["heldout/margin"] > records[0]["heldout/margin"] + 0.5
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["pairs"] == {"train": 12, "heldout": 4, "skipped": 0}

    # The folder is a reward: the plugin scores chosen above rejected, with the very scores trained on.
    prompts = ["Question 99: "] * 2
    got = reward_model(prompts, ["yes, a fine answer", "no no no"], model=str(out / "model"))
    assert got[0] > got[1]
    rm, tok = load_reward_model(str(out / "model"))
    with torch.no_grad():
        ours = rm(**tok([rm_text(tok, prompts[0], "no no no")], return_tensors="pt")).logits[0, 0]
    assert got[1] == pytest.approx(float(ours), abs=1e-4)


def test_train_rm_refuses_a_used_output_folder(tiny_model_path, tmp_path):
    from raftkit.cli import main

    data = _write_jsonl(tmp_path / "pairs.jsonl", _toy_pairs(4))
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    result = CliRunner().invoke(main, ["train-rm", "--dataset", str(data), "--model", tiny_model_path,
                                       "--output", str(tmp_path / "used")])
    assert result.exit_code != 0 and "not a new or empty folder" in result.output


# --------------------------------------------------------------------------- DPO


def test_dpo_loss_by_hand():
    from raftkit.algorithms.dpo import dpo_loss

    t = torch.tensor
    # log-ratios: chosen -1 - (-2) = 1, rejected -3 - (-2) = -1; beta 0.5 -> -log σ(1) = log(1 + e^-1)
    out = dpo_loss(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)
    assert float(out.losses[0]) == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    assert (float(out.chosen_rewards[0]), float(out.rejected_rewards[0])) == (0.5, -0.5)
    # policy = reference: log 2 whatever beta; the rejected preferred: the loss exceeds log 2
    same = dpo_loss(t([-4.0]), t([-1.0]), t([-4.0]), t([-1.0]), 0.1)
    assert float(same.losses[0]) == pytest.approx(math.log(2))
    assert float(dpo_loss(t([-3.0]), t([-1.0]), t([-2.0]), t([-2.0]), 0.1).losses[0]) > math.log(2)
    with pytest.raises(ValueError, match="beta > 0"):
        dpo_loss(t([0.0]), t([0.0]), t([0.0]), t([0.0]), 0.0)


def test_pair_examples_tokenise_like_trl(default_tokenizer):
    from raftkit.algorithms.dpo import pair_examples

    tok = default_tokenizer
    chosen, rejected = pair_examples(tok, Pair("Say hi.", " Hi there!", " No."))
    whole = tok("Say hi. Hi there!" + tok.eos_token)["input_ids"]
    assert chosen.prompt_ids + chosen.completion_ids == whole  # tokenised whole, split where they diverge
    assert chosen.completion_ids[-1] == tok.eos_token_id and rejected.completion_ids[-1] == tok.eos_token_id
    assert chosen.prompt_ids == rejected.prompt_ids
    chat = [{"role": "user", "content": "hi"}]
    c, _ = pair_examples(tok, Pair(chat, "yo", "no"))
    assert tok.decode(c.completion_ids) == "yo<|im_end|>\n"  # the template's own ending, no extra EOS
    cut = pair_examples(tok, Pair("Say hi.", " Hi there, how are you today?", " No."), max_length=5)
    assert len(cut[0]) == 5 and cut[0].prompt_ids == chosen.prompt_ids  # keeps the start
    assert pair_examples(tok, Pair("Say hi.", "a", "b"), max_length=len(chosen.prompt_ids)) is None
    empty, _ = pair_examples(tok, Pair("", "a", "b"))
    assert empty.prompt_ids == [tok.bos_token_id]  # the first completion token is scored too


def test_sequence_logprobs_cover_completion_tokens_only(tiny_model_path):
    from transformers import AutoModelForCausalLM

    from raftkit.algorithms.dpo import sequence_logprobs
    from raftkit.algorithms.sft import Example

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    examples = [Example([5, 6, 7], [8, 9]), Example([5], [4, 3, 2, 1])]
    with torch.no_grad():
        got = sequence_logprobs(model, examples, pad_id=0)
        for row, e in enumerate(examples):
            seq = torch.tensor([e.prompt_ids + e.completion_ids])
            logp = torch.log_softmax(model(seq).logits[0].float(), -1)
            p = len(e.prompt_ids)
            by_hand = sum(float(logp[p - 1 + j, t]) for j, t in enumerate(e.completion_ids))
            assert float(got[row]) == pytest.approx(by_hand, abs=1e-4)


@pytest.fixture()
def two_tiny_models(tmp_path, default_tokenizer):
    """A policy and a differently seeded reference (so log-ratios are not zero), saved as folders."""
    from conftest import tiny_llama_config
    from transformers import LlamaForCausalLM

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"tiny-{seed}"
        LlamaForCausalLM(tiny_llama_config(default_tokenizer)).save_pretrained(path)
        default_tokenizer.save_pretrained(path)
        paths.append(str(path))
    return paths


def test_dpo_matches_trl_dpo_trainer(two_tiny_models):
    """Same tiny batch, same weights: our loss and metrics equal TRL 1.16 DPOTrainer.compute_loss's."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from raftkit.algorithms.dpo import DPOUpdate, pair_examples
    from raftkit.policy import Policy

    rows = [{"prompt": "Question: what is 2+2?", "chosen": " It is 4.", "rejected": " Nobody knows, really."},
            {"prompt": "Say hi.", "chosen": " Hi there!", "rejected": " No."}]
    policy = Policy(two_tiny_models[0], bf16=False, device="cpu")
    ref = AutoModelForCausalLM.from_pretrained(two_tiny_models[1]).eval()
    update = DPOUpdate(policy, beta=0.1, lr=1e-3, reference=ref)
    ours = update.evaluate([pair_examples(policy.tokenizer, Pair(**r)) for r in rows])

    args = DPOConfig(output_dir=str(Path(two_tiny_models[0]).parent / "trl"), per_device_train_batch_size=2,
                     report_to="none", beta=0.1, use_cpu=True, bf16=False)
    trainer = DPOTrainer(model=policy.model, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=policy.tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))  # both rows: the order is moot for the means
    trainer.model.train()  # TRL files its metrics under "train" only in training mode (no dropout here)
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch))
    theirs = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert ours["loss"] == pytest.approx(loss, abs=1e-5)
    assert abs(ours["rewards/margins"]) > 1e-3  # a real comparison: the log-ratios are not all zero
    from raftkit.algorithms.dpo import METRIC_NAMES

    for name in METRIC_NAMES:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-4), name


def test_dpo_cli_raises_chosen_over_rejected(tiny_model_path, tmp_path):
    from raftkit.cli import main
    from raftkit.policy import Policy

    data = _write_jsonl(tmp_path / "pairs.jsonl", _toy_pairs(12))
    out = tmp_path / "dpo"
    result = CliRunner().invoke(main, ["dpo", "--dataset", str(data), "--model", tiny_model_path, "--output",
                                       str(out), "--epochs", "2", "--lr", "1e-3", "--batch-size", "4",
                                       "--beta", "0.1", "--heldout-share", "0.25"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert records[0]["heldout/rewards/margins"] == pytest.approx(0.0, abs=1e-4)  # policy = reference
    assert records[-1]["heldout/rewards/margins"] > 0.05 and records[-1]["heldout/rewards/accuracies"] == 1.0
    assert records[-1]["heldout/loss"] < math.log(2)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    Policy(str(out / "model"), device="cpu")  # loads as a policy: `raftkit align --model OUT/model`
