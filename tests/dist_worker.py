"""One update of GRPO, of RAFT and of online DPO on a fixed, hand-made batch; run by tests/test_distributed.py
under torchrun (each rank takes its share of the batch) and as one plain process (the whole batch), to compare
the weights.

    python tests/dist_worker.py MODEL OUT       # or: torchrun --nproc_per_node 2 tests/dist_worker.py ...

Writes OUT/{algo}-rank{R}.pt (the weights after the update) and OUT/{algo}-rank{R}.json (the rollouts this
rank selected, by index in the whole batch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from raftkit import distributed
from raftkit.algorithms.grpo import GRPO, GRPOConfig
from raftkit.algorithms.online_dpo import OnlineDPO, OnlineDPOConfig
from raftkit.algorithms.raft import RAFT, RaftConfig
from raftkit.policy import Policy
from raftkit.rewards import Scores
from raftkit.rollouts import Batch, Rollout
from raftkit.sampling.sampler import SamplingParams

K = 2
# Per prompt (2 samples each): the best 3 of all 8 (RAFT --ranking top, fraction 0.375) are 0, 1 and 5; a
# rank ranking only its own 4 samples would keep 2 of them, i.e. 4 in all. Prompt 3 ties: online DPO has
# 2 pairs on the first rank and 1 on the second, so a rank's own pair count is not the batch's.
TOTALS = [5.0, 4.0, 0.0, 0.5, 1.0, 1.5, 0.1, 0.1]


def whole_batch(tokenizer) -> tuple[Batch, list[Rollout], Scores]:
    g = torch.Generator().manual_seed(0)
    prompts = [f"question number {i}" for i in range(len(TOTALS) // K)]
    rollouts = []
    for p, text in enumerate(prompts):
        ids = tokenizer(text)["input_ids"]
        for j in range(K):
            n = 3 + (p + j) % 3
            completion = torch.randint(10, 1000, (n,), generator=g).tolist()
            rollouts.append(Rollout(p, text, "x", completion, [], prompt_ids=ids))
    scores = Scores({"r": list(TOTALS)}, {"r": 1.0}, {}, list(TOTALS), [False] * len(TOTALS))
    return Batch(prompts, {}, list(range(len(prompts)))), rollouts, scores


def my_share(batch: Batch, rollouts: list[Rollout], scores: Scores) -> tuple[Batch, list[Rollout], Scores]:
    """This rank's prompts, their rollouts (prompt_index counted within the share) and their scores."""
    mine = distributed.shard(list(range(len(batch))))
    rows = [i for i, r in enumerate(rollouts) if r.prompt_index in mine]
    local = [Rollout(**{**r.__dict__, "prompt_index": mine.index(r.prompt_index)})
             for r in (rollouts[i] for i in rows)]
    pick = lambda values: [values[i] for i in rows]  # noqa: E731
    part = Scores({k: pick(v) for k, v in scores.rewards.items()}, scores.weights, {},
                  pick(scores.total), pick(scores.dropped))
    return distributed.shard_batch(batch), local, part


def main(model: str, out: Path) -> None:
    torch.set_num_threads(1)
    distributed.init()
    out.mkdir(parents=True, exist_ok=True)
    for name in ("grpo", "grpo_mini_batches", "raft", "online_dpo"):
        policy = Policy(model, bf16=False)  # fp32: the comparison is at 1e-5
        if name.startswith("grpo"):
            # Two mini-batches of two prompts each: with two processes, each step's prompts are one rank's.
            # No warm-up: the default's first step runs at lr 0 and would move nothing to compare.
            config = GRPOConfig(explore_hint="", micro_batch_size=1, beta=0.04, warmup_ratio=0.0,
                                mini_batches=2 if name == "grpo_mini_batches" else 1)
            sampling = SamplingParams(max_new_tokens=8)
            algo = GRPO(policy, config, lr=1e-2, total_steps=1, k=K, sampling=sampling)
        elif name == "online_dpo":
            algo = OnlineDPO(policy, OnlineDPOConfig(micro_batch_size=1), lr=1e-2, total_steps=1, k=K)
        else:
            config = RaftConfig(ranking="top", top_fraction=0.375, explore_hint="", keep_answers=False,
                                epochs_per_iteration=2, micro_batch_size=1, gradient_accumulation_steps=2)
            algo = RAFT(policy, config, lr=1e-2, total_steps=1, k=K, sampling=None)
        batch, rollouts, scores = my_share(*whole_batch(policy.tokenizer))
        result = algo.update(batch, rollouts, scores, 1)
        r = distributed.rank()
        torch.save(policy.model.state_dict(), out / f"{name}-rank{r}.pt")
        offset = r * len(rollouts)
        chosen = [offset + i for i, s in enumerate(result.per_sample) if s.get("selected")]
        (out / f"{name}-rank{r}.json").write_text(json.dumps({"selected": chosen,
                                                              "loss": result.metrics["loss"]}))
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
