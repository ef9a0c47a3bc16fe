# Developer entry points. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint bench venv

# The virtualenv is rebuilt whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## Start the daemon on the embedded default database (./data/keysmith.db).
run: venv
	$(PY) -m daemon serve

## Install what the suite needs (Python packages, and Debian tools when root), lint, run every test.
test: venv
	bash tests/system-deps.sh
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## Full-size benchmarks (not part of `make test`).
bench: venv
	$(PY) bench/bench_migrate.py
