#!/usr/bin/env bash
# A reward model end to end, offline (docs/pipelines.md): preference pairs -> `raftkit train-rm` ->
# `raftkit align` with the trained model as the only reward -> `raftkit eval` on the 40 held-out prompts
# (never in the pairs, never trained on): the RM's score and answer accuracy, base model against aligned.
#
#   bash examples/reward_model_pipeline.sh runs/rm-pipeline          # full size, the bundled model
#   SIZE=tiny MODEL=tiny-model/ bash examples/reward_model_pipeline.sh /tmp/rm-tiny   # a smoke test
#
# The pairs are benchmarks/data/preferences.jsonl (220 pairs from the bundled TRAIN prompts, written by
# scripts/make_preferences.py: a short answer with a fitting emoji beats a rambling answer, emoji/@mention
# spam, or the same sentence with a wrong answer). SIZE=tiny writes 8 of them to OUT instead and runs every
# step at a minimal budget (HF sampling, one iteration, two prompts). OUT must not exist or be empty.
#
# Settings (environment): SIZE full|tiny, MODEL (policy and RM base; default: the bundled model),
# RM_EPOCHS, RM_LR, ITERATIONS, RAFTKIT and PYTHON (the CLI and interpreter to use).
set -euo pipefail

OUT=${1:-runs/rm-pipeline}
SIZE=${SIZE:-full}
MODEL=${MODEL:-default}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RAFTKIT=${RAFTKIT:-raftkit}
PYTHON=${PYTHON:-python}
# The hint `raftkit align --reward emoji --reward length` explores with (auto knows only built-in rewards).
HINT=" Answer in one short sentence. Use emojis 😊."

case "$SIZE" in
  full)
    PAIRS=$ROOT/benchmarks/data/preferences.jsonl
    RM_ARGS=(--epochs "${RM_EPOCHS:-3}" --lr "${RM_LR:-2e-5}" --batch-size 8 --heldout-share 0.1)
    ALIGN_ARGS=(--iterations "${ITERATIONS:-8}")
    EVAL_ARGS=(--samples 4)
    ;;
  tiny)
    mkdir -p "$OUT"
    PAIRS=$OUT/preferences.jsonl
    "$PYTHON" "$ROOT/scripts/make_preferences.py" --limit 8 --output "$PAIRS"
    RM_ARGS=(--epochs "${RM_EPOCHS:-1}" --lr "${RM_LR:-1e-3}" --batch-size 4 --heldout-share 0.25)
    # A random tiny model never says an answer, so RAFT's answer gate would keep nothing.
    ALIGN_ARGS=(--iterations "${ITERATIONS:-1}" --prompts-per-iteration 2 --k 2 --max-new-tokens 4
                --sampler hf --no-keep-answers --micro-batch-size 2 --epochs-per-iteration 1)
    EVAL_ARGS=(--limit 2 --samples 1 --max-new-tokens 4 --sampler hf)
    ;;
  *) echo "SIZE must be full or tiny, got '$SIZE'" >&2; exit 2 ;;
esac

# 1. The reward model: Bradley-Terry on the pairs; OUT/rm/metrics.jsonl has the held-out pair accuracy.
"$RAFTKIT" train-rm --dataset "$PAIRS" --model "$MODEL" --output "$OUT/rm" "${RM_ARGS[@]}"
RM=$OUT/rm/model

# 2. Align the policy to it (RAFT, the default algorithm); the held-out evaluation is step 3's. A neural
#    reward on a 2-core CPU took over the default 60 s to score 256 completions, hence the longer timeout.
"$RAFTKIT" align --model "$MODEL" --reward "reward_model:model=$RM" --explore-hint "$HINT" \
  --reward-timeout 600 --heldout 0 --output "$OUT/align" "${ALIGN_ARGS[@]}"

# 3. Base and aligned model on the bundled held-out prompts: the RM's score, the emoji count beside it,
#    and answer accuracy (answer_match over each prompt's accepted answers).
"$RAFTKIT" eval "$OUT/align" --dataset bundled --reward "reward_model:model=$RM" --reward emoji \
  "${EVAL_ARGS[@]}" --json > "$OUT/eval.json"

"$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
epochs = [json.loads(line) for line in (out / "rm" / "metrics.jsonl").read_text().splitlines()]
pairs = json.loads((out / "rm" / "run.json").read_text())["pairs"]
first, last = epochs[0], epochs[-1]
print(f"RM held-out pair accuracy ({pairs['heldout']} pairs): {first['heldout/accuracy']:.3f} -> "
      f"{last['heldout/accuracy']:.3f}, margin {first['heldout/margin']:.3f} -> {last['heldout/margin']:.3f} "
      f"(epoch 0 -> {last['epoch']})")
results = json.loads((out / "eval.json").read_text())
base, model = results["base_eval"], results["model_eval"]
rm = next(k for k in model["rewards"] if k.startswith("reward_model"))
print(f"held-out prompts ({model['prompts']} prompts, {model['samples']} samples), base -> aligned: "
      f"RM score {base['rewards'][rm]:.3f} -> {model['rewards'][rm]:.3f}, "
      f"answer accuracy {base['accuracy']:.3f} -> {model['accuracy']:.3f}, "
      f"emoji {base['rewards']['emoji']:.2f} -> {model['rewards']['emoji']:.2f}, "
      f"degenerate {base['degenerate']:.3f} -> {model['degenerate']:.3f}")
if results.get("alarm"):
    print("alarm:", results["alarm"])
EOF
