#!/usr/bin/env bash
# The GPU path, measured in one short call on a machine with an NVIDIA GPU (optional).
#   bash benchmarks/gpu.sh            # installs (vllm for CUDA), then prints the two benchmarks' ratios
# Writes its logs under ${OUT:-benchmarks/gpu-out}. Each step is capped so the whole script fits in ~10 min.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/gpu-out}
mkdir -p "$OUT"
nvidia-smi -L | tee "$OUT/gpu.txt" || { echo "no GPU: nothing to measure"; exit 1; }

# scripts/install.sh installs vllm (CUDA) when nvidia-smi sees a GPU.
timeout 420 bash scripts/install.sh > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
.venv/bin/raftkit prepare-model >> "$OUT/install.log" 2>&1

# Sampler: vLLM vs HF generate on the bundled model, same prompts, same run.
timeout 240 .venv/bin/python benchmarks/sampler.py --prompts 64 --k 8 --new-tokens 64 \
    2>&1 | tee "$OUT/sampler.txt" | tail -15
# GRPO step: raftkit vs TRL 1.16 on the same batch, same run.
timeout 300 .venv/bin/python benchmarks/grpo_vs_trl.py --steps 3 \
    2>&1 | tee "$OUT/grpo_vs_trl.txt" | tail -15
