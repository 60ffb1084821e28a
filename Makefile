# Every target sets itself up: a fresh machine needs only python3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check supervisord_lite tests $(wildcard bench contrib)
	$(BIN)/mypy

test: venv lint
	$(BIN)/python -m pytest

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash contrib/demo.sh

bench: venv
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench]'
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/brr_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
