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
# llama.cpp's own server, which the llamacpp service runs (one child per model): built once (about 8-11 minutes on 2
# cores) from the llama.cpp source that the llama-cpp-python sdist vendors, cached in .wheels/, copied into .venv/bin.
# For a GPU build: make venv LLAMA_SERVER_CMAKE_ARGS="-DGGML_CUDA=ON" (after removing the cached binary).
LLAMA_SERVER := $(WHEELS)/llama-server-$(LLAMA_CPP_VERSION)/llama-server
LLAMA_SERVER_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LLAMA_SERVER_BUILD := $(WHEELS)/llama-server-build

# State for `make up` (models, jobs, logs) stays inside the checkout unless set.
FORGEWAY_HOME ?= $(CURDIR)/.forgeway
TESTS ?= tests
PYTEST_ARGS ?=

# Unsloth pins older transformers/trl/datasets and pulls CUDA packages: it lives in its own environment, built only on
# request, so .venv (CPU torch, newest transformers/trl) is never touched. unsloth goes in with --no-deps on top of
# services/unsloth/requirements.txt (torch pinned to the same $(TORCH_VERSION)).
UNSLOTH_VENV := .venv-unsloth
UNSLOTH_PY := $(UNSLOTH_VENV)/bin/python
UNSLOTH_VERSION := 2026.10.9
UNSLOTH_STAMP := $(UNSLOTH_VENV)/.stamp

.PHONY: help venv protos test up bench clean distclean unsloth-env

help:
	@echo "make up         bootstrap .venv, build the demo model, run the local stack (Ctrl-C stops it)"
	@echo "make test       bootstrap .venv and run the tests (TESTS=tests/unit, PYTEST_ARGS="-k name" to narrow)"
	@echo "make venv       create .venv: torch $(TORCH_VERSION) CPU, llama-cpp-python $(LLAMA_CPP_VERSION), forgeway[all,dev]"
	@echo "make unsloth-env  build $(UNSLOTH_VENV) (unsloth $(UNSLOTH_VERSION), its pinned transformers/trl); make up then runs the unsloth trainer from it"
	@echo "make protos     regenerate forgeway/v1 stubs from protos/ (they are committed)"
	@echo "make bench      run every benchmarks/*.py"
	@echo "make clean      remove caches and build output; distclean also removes .venv, .wheels, .forgeway"

venv: $(STAMP) $(VENV)/bin/llama-server

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==$(TORCH_VERSION)
	ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 \
	  || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(PIP) install $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install -e '.[all,dev]'
	touch $@

$(LLAMA_SERVER):
	mkdir -p $(LLAMA_SERVER_BUILD) $(dir $@)
	ls $(LLAMA_SERVER_BUILD)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz >/dev/null 2>&1 \
	  || $(PYTHON) -m pip download --no-deps --no-binary :all: -d $(LLAMA_SERVER_BUILD) llama-cpp-python==$(LLAMA_CPP_VERSION)
	tar -xzf $(LLAMA_SERVER_BUILD)/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz -C $(LLAMA_SERVER_BUILD)
	cmake -S $(LLAMA_SERVER_BUILD)/llama_cpp_python-$(LLAMA_CPP_VERSION)/vendor/llama.cpp -B $(LLAMA_SERVER_BUILD)/out \
	  -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
	  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF $(LLAMA_SERVER_CMAKE_ARGS)
	cmake --build $(LLAMA_SERVER_BUILD)/out --target llama-server -j$$(nproc)
	install -m 755 $(LLAMA_SERVER_BUILD)/out/bin/llama-server $@
	rm -rf $(LLAMA_SERVER_BUILD)

$(VENV)/bin/llama-server: $(LLAMA_SERVER) | $(STAMP)
	install -m 755 $(LLAMA_SERVER) $@

unsloth-env: $(UNSLOTH_STAMP)

$(UNSLOTH_STAMP): services/unsloth/requirements.txt pyproject.toml setup.py
	test -x $(UNSLOTH_PY) || $(PYTHON) -m venv $(UNSLOTH_VENV)
	$(UNSLOTH_PY) -m pip install --upgrade pip
	$(UNSLOTH_PY) -m pip install torch==$(TORCH_VERSION)
	$(UNSLOTH_PY) -m pip install -r services/unsloth/requirements.txt
	$(UNSLOTH_PY) -m pip install --no-deps unsloth==$(UNSLOTH_VERSION) unsloth_zoo==$(UNSLOTH_VERSION)
	$(UNSLOTH_PY) -m pip install -e .
	$(UNSLOTH_PY) -m forgeway.services.unsloth.availability
	touch $@

protos: | $(STAMP)
	$(PY) -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. protos/forgeway/v1/*.proto

test: | $(STAMP) $(VENV)/bin/llama-server
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS) $(TESTS)

# The demo models (demo, demo-embed) are built offline, once; the stamp marks them done for this FORGEWAY_HOME.
$(FORGEWAY_HOME)/.demo-models: | $(STAMP)
	mkdir -p $(FORGEWAY_HOME)
	FORGEWAY_HOME=$(FORGEWAY_HOME) HF_HUB_OFFLINE=1 $(VENV)/bin/forgeway demo-model
	touch $@

# The unsloth trainer (when FORGEWAY_UP_SERVICES names it) runs under $(UNSLOTH_VENV)'s Python if that exists (up's
# service command picks each service's environment); without $(UNSLOTH_VENV) it is left out, and the gateway's backend auto trains with trl (fallback event).
up: $(FORGEWAY_HOME)/.demo-models | $(STAMP) $(VENV)/bin/llama-server
	services="$${FORGEWAY_UP_SERVICES:-}"; \
	if [[ ",$$services," == *,unsloth,* && ! -x $(UNSLOTH_PY) ]]; then \
	  echo "make up: $(UNSLOTH_VENV) is absent (make unsloth-env builds it): not starting unsloth; training goes to trl"; \
	  services=$$(echo ",$$services," | sed -e 's/,unsloth,/,/' -e 's/^,//' -e 's/,$$//'); \
	  if [[ -n "$$services" ]]; then export FORGEWAY_UP_SERVICES="$$services"; else unset FORGEWAY_UP_SERVICES; fi; \
	fi; \
	FORGEWAY_HOME=$(FORGEWAY_HOME) FORGEWAY_UNSLOTH_PYTHON=$(abspath $(UNSLOTH_PY)) \
	  FORGEWAY_UP_SERVICE_COMMAND='["$(abspath $(PY))", "-m", "forgeway.services.unsloth.environment"]' $(VENV)/bin/forgeway up

bench: | $(STAMP) $(VENV)/bin/llama-server
	for script in $(sort $(wildcard benchmarks/*.py)); do \
	  echo "== $$script"; HF_HUB_OFFLINE=1 $(PY) $$script; \
	done

clean:
	rm -rf build dist .pytest_cache *.egg-info
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(UNSLOTH_VENV) $(WHEELS) .forgeway
