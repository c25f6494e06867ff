#!/usr/bin/env bash
# The JSON-answer task end to end: data, RAFT and GRPO runs with the format verifier, and each run's held-out
# format rate and answer accuracy against the base model (docs/your-task.md). About 35 minutes on a 2-core CPU.
#   bash examples/json-answer/run.sh            # writes runs/json-raft and runs/json-grpo
set -euo pipefail
cd "$(dirname "$0")/../.."
RAFTKIT=${RAFTKIT:-.venv/bin/raftkit}
DATA=examples/json-answer
[ -f $DATA/train.jsonl ] || .venv/bin/python $DATA/make_data.py
for algo in raft grpo; do
  $RAFTKIT align --algo $algo --dataset $DATA/train.jsonl --reward $DATA/reward.py:json_answer --output runs/json-$algo
  $RAFTKIT eval runs/json-$algo --dataset $DATA/heldout.jsonl --temperature 0.7 --samples 4
done
