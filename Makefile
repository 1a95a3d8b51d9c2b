# Every target sets itself up from a fresh clone: the venvs are built on first use and rebuilt
# when a requirements file changes.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The repository root, whatever the working directory: `sam build` runs this Makefile's build-*
# targets from a scratch copy of the function's CodeUri (see "Lambda package" below).
ROOT := $(patsubst %/,%,$(dir $(abspath $(firstword $(MAKEFILE_LIST)))))
PYTHON_RUNTIME := $(shell $(ROOT)/scripts/find-python.sh 3.13)
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
	@echo "make build        sam build into .aws-sam/ (dependencies, code and bytecode)"

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
	$(PY) -m pytest tests/reliability -p no:randomly --reliability-full -n 2 --dist loadgroup -p tests.reliability.summary

bench: setup
	PATH="$(dir $(PYTHON_RUNTIME)):$$PATH" TOOLS_BIN="$(abspath $(TOOLS))" $(RUN) -m tools.bench

# `make build` is plain `sam build`: the template's functions use the build-* targets below, so
# there is one way to build the package, whoever runs it.
build: $(VENV_TOOLS)/.stamp
	PATH="$(dir $(PYTHON_RUNTIME)):$$PATH" $(TOOLS)/sam build

# --- Lambda package ---------------------------------------------------------------------------
# template.yaml builds each function with `BuildMethod: makefile` (ContextPath: the repository
# root, where this file is), so plain `sam build` runs `make build-<LogicalId>` with ARTIFACTS_DIR
# set, from a scratch copy of the CodeUri. These targets need only python3.13 (the Lambda runtime,
# found by scripts/find-python.sh) and the package index: no venv, so a fresh clone builds.
#  1. the dependencies of requirements.txt, as wheels for the function's platform (python3.13,
#     arm64; every dependency is pure Python today, and --only-binary fails loudly if one is not);
#  2. the CodeUri's code (lambda/), without caches: the handler's package only, no CLI;
#  3. bytecode. Lambda's code directory is read-only, so without it every cold start compiles
#     each module it imports (`make bench` measures both). unchecked-hash, because SAM zips files
#     with 1980 timestamps that timestamp-based .pyc files would never match.
LAMBDA_PYTHON = $(shell $(ROOT)/scripts/find-python.sh 3.13 --exact)
LAMBDA_CODE := $(ROOT)/lambda
LAMBDA_PLATFORM := --platform manylinux2014_aarch64 --implementation cp --python-version 3.13 \
	--only-binary=:all:
LAMBDA_FUNCTIONS := RotatorFunction HealthCheckFunction
COPY_CODE := import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2], dirs_exist_ok=True, \
	ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))

.PHONY: $(addprefix build-,$(LAMBDA_FUNCTIONS))
$(addprefix build-,$(LAMBDA_FUNCTIONS)):
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set: run sam build" >&2; exit 1; }
	@test -n "$(LAMBDA_PYTHON)" || { echo "python3.13 (the Lambda runtime) not found" >&2; exit 1; }
	$(LAMBDA_PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile \
		--target "$(ARTIFACTS_DIR)" $(LAMBDA_PLATFORM) -r "$(ROOT)/requirements.txt"
	rm -rf "$(ARTIFACTS_DIR)/bin"
	$(LAMBDA_PYTHON) -c '$(COPY_CODE)' "$(LAMBDA_CODE)" "$(ARTIFACTS_DIR)"
	$(LAMBDA_PYTHON) -m compileall -q -j0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)"

clean:
	rm -rf $(VENV) $(VENV_TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache .hypothesis
