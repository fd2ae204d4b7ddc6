# Forgeway: `make up` runs the local stack, `make test` runs the tests; both bootstrap .venv first.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.stamp

# torch first and pinned: it comes as a CPU wheel from local disk; left to the resolver it pulls a CUDA build.
TORCH_VERSION := 2.13.0
# llama-cpp-python ships no wheel: built once (about 6-8 minutes on 2 cores) into the git-ignored .wheels/.
LLAMA_CPP_VERSION := 0.3.36
WHEELS := .wheels
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF

# State for `make up` (models, jobs, logs) stays inside the checkout unless set.
FORGEWAY_HOME ?= $(CURDIR)/.forgeway
TESTS ?= tests
PYTEST_ARGS ?=

.PHONY: help venv protos test up bench clean distclean

help:
	@echo "make up         bootstrap .venv, build the demo model, run the local stack (Ctrl-C stops it)"
	@echo "make test       bootstrap .venv and run the tests (TESTS=tests/unit, PYTEST_ARGS="-k name" to narrow)"
	@echo "make venv       create .venv: torch $(TORCH_VERSION) CPU, llama-cpp-python $(LLAMA_CPP_VERSION), forgeway[all,dev]"
	@echo "make protos     regenerate forgeway/v1 stubs from protos/ (they are committed)"
	@echo "make bench      run every benchmarks/*.py"
	@echo "make clean      remove caches and build output; distclean also removes .venv, .wheels, .forgeway"

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==$(TORCH_VERSION)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 \
	  || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -e '.[all,dev]'
	touch $@

protos: | $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/forgeway/v1/*.proto

test: | $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS) $(TESTS)

# The demo model is built offline, once; the stamp marks it done for this FORGEWAY_HOME.
$(FORGEWAY_HOME)/.demo-model: | $(STAMP)
	mkdir -p $(FORGEWAY_HOME)
	FORGEWAY_HOME=$(FORGEWAY_HOME) HF_HUB_OFFLINE=1 $(VENV)/bin/forgeway demo-model
	touch $@

up: $(FORGEWAY_HOME)/.demo-model | $(STAMP)
	FORGEWAY_HOME=$(FORGEWAY_HOME) $(VENV)/bin/forgeway up

bench: | $(STAMP)
	for script in $(sort $(wildcard benchmarks/*.py)); do \
	  echo "== $$script"; HF_HUB_OFFLINE=1 $(PY) $$script; \
	done

clean:
	rm -rf build dist .pytest_cache *.egg-info
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(WHEELS) .forgeway
