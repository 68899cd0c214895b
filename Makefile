# The two set-up commands of the README. Each creates .venv on first use.
#   make demo   train GroCo and the SimCLR baseline on the embedded digits, then evaluate
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install clean

$(BIN)/rankssl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch and torchvision first, pinned, so that nothing pulls a newer build.
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev,mmpretrain]"
	touch $@

install: $(BIN)/rankssl

demo: install
	$(BIN)/rankssl demo

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) work_dirs
