# Every target sets itself up from a fresh clone: the venvs are built on first use and rebuilt
# when a requirements file changes.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_RUNTIME := $(shell scripts/find-python.sh 3.13)
VENV := .venv
VENV_TOOLS := .venv-tools
PY := $(VENV)/bin/python
TOOLS := $(VENV_TOOLS)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHONDONTWRITEBYTECODE := 1
# The Lambda code root and the repository root (for infra/), as pytest's `pythonpath` has them.
RUN := PYTHONPATH=lambda:. $(PY)
BUILD_DIR := .aws-sam/build

.PHONY: help setup demo test lint typecheck unit infra-check reliability bench build clean

help:
	@echo "make demo         rotations on local stand-ins (moto server + fake Cekura), admin mode too"
	@echo "make test         lint, types, template checks and every test"
	@echo "make reliability  the full fault matrix, random sequences and bad-input set"
	@echo "make bench        benchmark figures (cold start, production-shaped time and calls, package, memory, scale)"
	@echo "make build        sam build into .aws-sam/ (plus bytecode)"

$(VENV)/.stamp: requirements.txt requirements-aws.txt requirements-dev.txt
	rm -rf $(VENV)
	$(PYTHON_RUNTIME) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

$(VENV_TOOLS)/.stamp: requirements-tools.txt
	rm -rf $(VENV_TOOLS)
	$(PYTHON_RUNTIME) -m venv $(VENV_TOOLS)
	$(TOOLS)/python -m pip install -q -r requirements-tools.txt 2> >(grep -v "is ignored: it is neither" >&2)
	touch $@

setup: $(VENV)/.stamp $(VENV_TOOLS)/.stamp

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.stamp
	$(VENV)/bin/mypy

unit: $(VENV)/.stamp
	$(PY) -m pytest tests/unit tests/integration

test: setup lint typecheck
	PATH="$(dir $(PYTHON_RUNTIME)):$$PATH" TOOLS_BIN="$(abspath $(TOOLS))" $(PY) -m pytest -n 2 --dist loadgroup -p tests.reliability.summary

demo: $(VENV)/.stamp
	$(RUN) -m infra.local.demo

reliability: $(VENV)/.stamp
	$(PY) -m pytest tests/reliability -p no:randomly --reliability-full

bench: setup
	PATH="$(dir $(PYTHON_RUNTIME)):$$PATH" TOOLS_BIN="$(abspath $(TOOLS))" $(RUN) -m tools.bench

# Plain `sam build` (samconfig.toml at the root names the manifest), then bytecode on top.
# Bytecode is compiled into the package: Lambda's code directory is read-only, so without it every
# cold start compiles each module it imports (`make bench`: 851 ms -> 393 ms). unchecked-hash,
# because SAM zips files with 1980 timestamps that timestamp-based .pyc files would never match.
build: $(VENV_TOOLS)/.stamp
	PATH="$(dir $(PYTHON_RUNTIME)):$$PATH" $(TOOLS)/sam build
	$(PYTHON_RUNTIME) -m compileall -q -j0 --invalidation-mode unchecked-hash $(BUILD_DIR)/RotatorFunction

clean:
	rm -rf $(VENV) $(VENV_TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
