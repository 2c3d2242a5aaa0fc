# Two entry points for a fresh machine with only Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench openapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/spool serve

test: $(VENV)/.installed-test
	$(BIN)/ruff check engine api spool tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

# docs/openapi.json: the committed OpenAPI document (tests/api/test_openapi.py fails when it drifts).
openapi: $(VENV)/.installed
	$(BIN)/python -m api.openapi > docs/openapi.json.tmp
	mv docs/openapi.json.tmp docs/openapi.json

bench: $(VENV)/.installed-test
	$(BIN)/python bench/append.py
	$(BIN)/python bench/sse_latency.py
	$(BIN)/python bench/sse_fanout.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/reconnect_storm.py
	$(BIN)/python bench/idle_connections.py
	$(BIN)/python bench/turns.py
	$(BIN)/python bench/projections.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
