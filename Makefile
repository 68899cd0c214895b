# The two set-up commands of the README. Each creates .venv on first use (about 6 GB,
# 2-3 minutes with a fast network: torch's Linux wheels bring CUDA libraries even on
# CPU-only machines).
#   make demo   train GroCo and the SimCLR baseline on the embedded digits, then evaluate
#   make test   run the test suite
#   make lint   ruff (lint and format check) and mypy, as CI runs them
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint mypy-tree install clean

$(BIN)/rankssl: pyproject.toml
	@echo "[set-up 1/3] creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@echo "[set-up 2/3] installing torch 2.14.1 + torchvision 0.29.1 (about 4 GB with the CUDA libraries; the longest step)"
	@# torch and torchvision first, pinned, so that nothing pulls a newer build.
	@$(BIN)/python -m pip install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
	@echo "[set-up 3/3] installing rankssl (editable) with lightly, pytorch-metric-learning, mmengine, mmpretrain, pytest"
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev,mmpretrain]"
	@touch $@
	@echo "[set-up done] $(VENV) is ready ($$(du -sh $(VENV) 2>/dev/null | cut -f1))"

install: $(BIN)/rankssl

demo: install
	@echo "[demo] rankssl demo: GroCo, then SimCLR, 50 epochs each (4-9 min on 2 idle CPU cores, longer on a busy machine; progress below)"
	$(BIN)/rankssl demo

test: install
	TRITON_INTERPRET=1 $(BIN)/python -m pytest -q --durations=10

# What ruff checks: the package's three folders and the tests that belong to the lint set.
LINT_PATHS := plugin registry recipes tests/test_doctests.py
# mypy sees the package by its import name through a link tree: package-dir maps plugin/ to `rankssl`,
# registry/ to `rankssl.registry` and recipes/ to `rankssl.recipes`, which no folder on disk spells.
MYPY_TREE := build/mypy

mypy-tree:
	@rm -rf $(MYPY_TREE) && mkdir -p $(MYPY_TREE)/rankssl
	@for f in plugin/*; do ln -s ../../../$$f $(MYPY_TREE)/rankssl/; done
	@ln -s ../../../registry $(MYPY_TREE)/rankssl/registry
	@ln -s ../../../recipes $(MYPY_TREE)/rankssl/recipes

# All three checks run, so that one report shows every finding; the target fails if any check does.
# mypy's paths are turned back into the repository's (build/mypy/rankssl/ops/x.py -> plugin/ops/x.py).
lint: install mypy-tree
	@status=0; \
	echo "[lint 1/3] ruff check"; $(BIN)/python -m ruff check $(LINT_PATHS) || status=1; \
	echo "[lint 2/3] ruff format --check"; $(BIN)/python -m ruff format --check $(LINT_PATHS) || status=1; \
	echo "[lint 3/3] mypy"; $(BIN)/python -m mypy > $(MYPY_TREE).log 2>&1 || status=1; \
	sed -e 's|^$(MYPY_TREE)/rankssl/registry/|registry/|' -e 's|^$(MYPY_TREE)/rankssl/recipes/|recipes/|' \
	    -e 's|^$(MYPY_TREE)/rankssl/|plugin/|' $(MYPY_TREE).log; \
	exit $$status

clean:
	rm -rf $(VENV) work_dirs $(MYPY_TREE) $(MYPY_TREE).log
