#!/usr/bin/env bash
# The arithmetic task end to end: data, RAFT and GRPO runs, and the held-out accuracy of each against the
# base model, greedy and at temperature 0.7 (docs/your-task.md). About 40 minutes on a 2-core CPU.
#   bash examples/verifiable/run.sh            # writes runs/arith-raft and runs/arith-grpo
set -euo pipefail
cd "$(dirname "$0")/../.."
RAFTKIT=${RAFTKIT:-.venv/bin/raftkit}
DATA=examples/verifiable
[ -f $DATA/train.jsonl ] || .venv/bin/python $DATA/make_data.py
for algo in raft grpo; do
  $RAFTKIT align --algo $algo --dataset $DATA/train.jsonl --reward math_verify --output runs/arith-$algo
done
for algo in raft grpo; do
  # Greedy, one answer per question; then 4 samples per question at T 0.7. Each compares with the base model.
  $RAFTKIT eval runs/arith-$algo --dataset $DATA/heldout.jsonl --temperature 0 --samples 1
  $RAFTKIT eval runs/arith-$algo --dataset $DATA/heldout.jsonl --temperature 0.7 --samples 4
done
