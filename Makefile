# Every target sets itself up: a fresh machine needs only python3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-systemd test-fleet lint demo bench bench-quick chaos clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check supervisord_lite tests $(wildcard bench chaos contrib)
	$(BIN)/mypy

# tests/systemd boots a real systemd in throwaway namespaces (root only, about 80 s here):
# its own target, which .ci/run calls after this one.
test: venv lint
	$(BIN)/python -m pytest --ignore=tests/systemd

test-systemd: venv
	$(BIN)/python -m pytest tests/systemd

# Many hosts: network namespaces with their own sshd and daemon, driven by Ansible
# (root, sshd and the `fleet` extra; a few minutes). tests/fleet skips without it.
test-fleet: venv
	$(BIN)/python -m pip install --quiet -e '.[test,lint,fleet]'
	BRR_FLEET_TESTS=1 $(BIN)/python -m pytest tests/fleet tests/brr/test_transfer.py

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash contrib/demo.sh

# Every benchmark, each printing its table and rewriting its section of docs/benchmarks.md.
# The peers (supervisord, circus) go into their own venv, bench/.venv-peers.
# compileall: an editable install writes no .pyc (and none is written under
# PYTHONDONTWRITEBYTECODE), so every command would compile its modules at each start, in
# time and memory that an installed wheel never pays.
bench: venv
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench]'
	$(BIN)/python -m compileall -q supervisord_lite
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/brr_bench.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/daemon_bench.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/switch_bench.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/ledger_bench.py

# A few minutes, only printed: to see that the benchmarks still run.
bench-quick: venv
	$(BIN)/python -m pip install --quiet -e '.[test,lint,bench]'
	$(BIN)/python -m compileall -q supervisord_lite
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/brr_bench.py --runs 3 --files 10,2000 --no-save
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/daemon_bench.py --quick
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/ledger_bench.py --quick --no-save

# CHAOS_SECONDS (default 300) of faults; the table goes to docs/reliability.md.
chaos: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python chaos/run.py

clean:
	rm -rf $(VENV) bench/.venv-peers bench/out .mypy_cache .ruff_cache .pytest_cache
