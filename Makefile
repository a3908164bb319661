# Two commands matter: `make run` (serve on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pytest-xdist workers: each has its own SQLite file, PostgreSQL database and Redis prefix
# (tests/conftest.py), and service processes bind port 0; a module's tests stay on one
# worker (--dist loadscope) so a module-scoped server starts once. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 4
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope
STAMP := $(VENV)/.installed-stamp
# Python's default, bytecode caching, even where the environment turns it off
# (PYTHONDONTWRITEBYTECODE=1 on this machine): otherwise each of the suite's hundreds of
# service processes compiles the service from source again (~0.2 s of CPU each).
export PYTHONDONTWRITEBYTECODE :=

.PHONY: run test test-fast lint openapi docs bench container-test scale-test scale-throughput clean

# uv installs what pip would (from PyPI; set UV_INDEX_URL for a mirror) in parallel and
# from its cache: ~11 s with bytecode on a machine that installed it before (pip: ~50 s).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	test -x $(BIN)/uv || $(PYTHON) -m pip --python $(BIN)/python install --quiet --disable-pip-version-check 'uv>=0.5'
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## migrate the database, then serve on AUTH_HOST:AUTH_PORT
	$(BIN)/auth-service migrate
	exec $(BIN)/auth-service serve

# Runs $(1) with the linters beside it (~20 s of one core): their output follows, and
# either failing fails the target.
define beside_the_linters
	@echo "make: linting beside the suite (output in $(VENV)/lint.log, shown at the end)"
	@$(MAKE) --no-print-directory lint > $(VENV)/lint.log 2>&1 & linting=$$!; \
	$(1); suite=$$?; \
	wait $$linting; linted=$$?; cat $(VENV)/lint.log; \
	if [ $$linted -ne 0 ]; then echo "make: lint failed"; fi; \
	[ $$suite -eq 0 ] && [ $$linted -eq 0 ]
endef

test: $(STAMP)  ## lint, and ensure PostgreSQL, Redis, Chromium, the OIDC relying parties, HAProxy and redis-sentinel, then the suite
	$(call beside_the_linters,scripts/ensure-services && scripts/ensure-browser \
	  && scripts/ensure-oidc-rps && scripts/ensure-scale-tools && $(PYTEST))

test-fast: $(STAMP)  ## lint, and the suite without the tests that start real processes (-m 'not slow')
	$(call beside_the_linters,scripts/ensure-services && $(PYTEST) -m 'not slow')

lint: $(STAMP)
	$(BIN)/ruff check auth_service tests examples bench
	$(BIN)/ruff format --check auth_service tests examples bench
	$(BIN)/mypy

container-test: $(STAMP)  ## build the image with buildah, run it, check health, register, login
	scripts/ensure-services
	scripts/container-test

scale-test: $(STAMP)  ## faults across namespaced hosts under load (root; run by .ci/run)
	scripts/ensure-scale-tools
	$(BIN)/python -m tests.scale.run

scale-throughput: $(STAMP)  ## the same hosts: requests/s and round trips, 1 vs 3 replicas on one CPU
	scripts/ensure-scale-tools
	$(BIN)/python -m tests.scale.run --throughput --out scale-throughput

openapi: $(STAMP)  ## regenerate the committed openapi.json
	$(BIN)/auth-service openapi --output openapi.json

docs: $(STAMP)  ## regenerate docs/configuration.md from the settings' docstrings
	$(BIN)/auth-service config-docs --output docs/configuration.md

bench: $(STAMP)  ## load benchmark on both backends (not part of test); BENCH_QUICK=1 for ~1 min
	scripts/ensure-services
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
