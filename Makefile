# Two commands matter: `make demo` and `make test`. Both set up .venv on their own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CPU_TORCH := torch==2.13.0
STAMP := $(VENV)/.installed
# Two pytest workers: most of a test's time is process start-up and waiting on ranks, jobs and probes,
# so one worker leaves about half of two cores idle.
TEST_WORKERS ?= 2

.PHONY: install test demo control bench clean

install: $(STAMP)

# On a machine without an NVIDIA GPU, install the pinned CPU torch before anything can pull a CUDA build.
# With a GPU, the torch already in .venv (or pip's default) is kept: `make install` after installing the
# torch build you want into .venv.
$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install --quiet $(CPU_TORCH); fi
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,eval,wandb]"
	touch $(STAMP)

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup tests

demo: install
	$(BIN)/plasticity-dist demo --out runs/demo

# The control study (permuted text, README "Control problem"): plasticity loss seen on 2 CPU cores
control: install
	$(BIN)/plasticity-dist control

bench: install
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
