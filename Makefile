# The two set-up commands of the README. Each creates .venv on first use (about 6 GB,
# 2-3 minutes with a fast network: torch's Linux wheels bring CUDA libraries even on
# CPU-only machines).
#   make demo   train GroCo and the SimCLR baseline on the embedded digits, then evaluate
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

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

clean:
	rm -rf $(VENV) work_dirs
