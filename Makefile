# Two commands matter: `make run` (serve on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast lint openapi bench container-test scale-test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)  ## migrate the database, then serve on AUTH_HOST:AUTH_PORT
	$(BIN)/auth-service migrate
	exec $(BIN)/auth-service serve

test: $(STAMP) lint  ## ensure PostgreSQL, Redis, Chromium and the OIDC relying parties, then the suite
	scripts/ensure-services
	scripts/ensure-browser
	scripts/ensure-oidc-rps
	$(BIN)/pytest

test-fast: $(STAMP) lint  ## the suite without the tests that start real processes (-m 'not slow')
	scripts/ensure-services
	$(BIN)/pytest -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff check auth_service tests examples bench
	$(BIN)/ruff format --check auth_service tests examples bench
	$(BIN)/mypy

container-test: $(STAMP)  ## build the image with buildah, run it, check health, register, login
	scripts/ensure-services
	scripts/container-test

scale-test: $(STAMP)  ## faults across namespaced hosts under load (root; not part of test)
	scripts/ensure-scale-tools
	$(BIN)/python -m tests.scale.run

openapi: $(STAMP)  ## regenerate the committed openapi.json
	$(BIN)/auth-service openapi --output openapi.json

bench: $(STAMP)  ## load benchmark on both backends (not part of test); BENCH_QUICK=1 for ~1 min
	scripts/ensure-services
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
