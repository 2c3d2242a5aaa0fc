# Two entry points for a fresh machine with only Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint lock bench bench-quick openapi sdk fuzz clean

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

# The SDK's generated modules: spool/_models.py from docs/openapi.json, spool/_sync/ from
# spool/_async/ (tests/spool/test_models.py fails when they are stale).
sdk: | $(BIN)/python
	$(BIN)/python scripts/generate_sdk.py

# Every scenario in bench/, one after another: bench/results/<date>-<commit>.json and the table in
# docs/BENCHMARKS.md. `make bench-quick` (or `make bench QUICK=1`): all of it in about 2 minutes.
# bench/http_submit.py drives the load with wrk: installed here when missing and apt-get can.
bench: $(VENV)/.installed-test
	@command -v wrk >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
		&& { apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }; } \
		>/dev/null 2>&1; } \
		|| echo "wrk is missing and apt-get could not install it: http_submit will be reported failed" >&2
	$(BIN)/python bench/report.py $(if $(QUICK),--quick)

bench-quick:
	$(MAKE) bench QUICK=1

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
