# Two entry points for a fresh machine with only Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint lock bench openapi fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs are locked: exact versions with hashes (requirements/*.lock, refreshed by `make lock`),
# then the project itself without resolving anything (its build backend is in the lock too).
$(VENV)/.installed: requirements/run.lock | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements/run.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: requirements/dev.lock | $(BIN)/python
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed

# Re-resolve the newest versions the ranges in pyproject.toml allow and write both lock files.
LOCK := $(BIN)/uv pip compile pyproject.toml requirements/build.in --generate-hashes --python-version 3.11 -q
lock: | $(BIN)/python
	$(BIN)/python -m pip install -q uv
	$(LOCK) -o requirements/run.lock
	$(LOCK) --extra test --extra bench -o requirements/dev.lock

run: $(VENV)/.installed
	$(BIN)/spool serve

test: $(VENV)/.installed-test
	$(BIN)/ruff check engine api spool tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

# schemathesis over docs/openapi.json against a live app, many examples and the stateful phase
# (`make test` runs a few): SPOOL_FUZZ_EXAMPLES per operation, SPOOL_FUZZ_SEED to replay a run.
fuzz: $(VENV)/.installed-test
	SPOOL_FUZZ=1 $(BIN)/pytest -q -s tests/api/test_schemathesis.py

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
