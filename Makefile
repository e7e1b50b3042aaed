# Two commands do all the set-up on a fresh machine: `make run` and `make test`; `make check` is the quick loop.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run check test lint chromium openapi-lint protos protos-check buf-lint proto-baseline unit integration bench clean

$(STAMP): requirements.lock pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e clients/python -e .
	touch $(STAMP)

## run: start webhookd dev (embedded PostgreSQL + OpenBao, gRPC, REST gateway, workers)
run: $(STAMP)
	$(BIN)/webhookd dev

## check: the quick loop, under a minute: lint, format, types, and the tests that need no PostgreSQL or OpenBao
check: $(STAMP) lint
	$(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests/unit tests/gateway

## test: the whole suite: lint, format, types, proto lint and drift, and every test, the browser ones included
# In TEST_PROCESSES pytest processes (pytest-xdist), a file to each at a time: most of the suite's time is
# waiting on processes it started, and each pytest process has its own PostgreSQL and OpenBao.
TEST_PROCESSES ?= 2
test: $(STAMP) chromium openapi-lint lint protos-check buf-lint
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadfile

# The benchmarks reach into the stores' statements: typed, a renamed one fails here, not in a bench run.
lint: $(STAMP)
	$(BIN)/ruff check server tests tools bench
	$(BIN)/ruff format --check server tests tools bench
	$(BIN)/mypy
	$(BIN)/mypy bench

# The browser tests drive Debian's Chromium: installed with apt-get when missing, or a one-line reason why not.
chromium:
	tools/chromium.sh

# The contract tests lint the OpenAPI document with Redocly and Spectral, pinned in tools/openapi-lint.
openapi-lint:
	tools/openapi-lint.sh

## protos: regenerate clients/python from protos/
protos: $(STAMP)
	$(BIN)/python tools/protos.py gen

protos-check: $(STAMP)
	$(BIN)/python tools/protos.py check

buf-lint: $(STAMP)
	$(BIN)/python tools/protos.py deps
	$(BIN)/buf lint
	$(BIN)/buf breaking protos --against protos/api-baseline.binpb

## proto-baseline: accept the current protos as the API later changes must stay compatible with
proto-baseline: $(STAMP)
	$(BIN)/python tools/protos.py deps
	$(BIN)/buf build protos -o protos/api-baseline.binpb

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

## bench: every benchmark (service, baselines and load generators in processes of their own), one table of ratios
bench: $(STAMP)
	$(BIN)/python bench/all.py

clean:
	rm -rf $(VENV) build .webhookd
