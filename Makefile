# rolechain developer commands. Needs only Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo` needs only rolechain and its sandbox extra (moto, cheroot), not the dev
# toolchain; a venv that has the dev install already has them.
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: help install demo test lint typecheck pytest bench clean

help:
	@echo "make demo   - create .venv, install, run the offline sandbox demo"
	@echo "make test   - create .venv, install, run lint, type checks and the test suite"
	@echo "make bench  - run the benchmarks and print their figures"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then :; else \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[sandbox]'; fi
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/rolechain run chains/demo.yaml --job inventory --sandbox --format table

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
