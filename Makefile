# bulutfon_pipeline — every target creates .venv and installs into it when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# `make test` runs on pytest-xdist workers: most of the suite waits on subprocesses, the
# simulator's latency and Dagster's daemon (two workers kept a 2-core machine's cores busy
# only half the time), so three workers share the two cores (the tests that start
# `dagster dev` take turns). TEST_WORKERS=0: one process. See README.
TEST_WORKERS ?= 3
# Byte-compiles the package before the commands that start it many times: with
# PYTHONDONTWRITEBYTECODE set (as on our machines), Python never caches what it compiles,
# and each `bulutfon-pipeline` process compiled the package again (0.4 CPU s of a no-op sync).
COMPILE := $(BIN)/python -m compileall -q bulutfon_pipeline

.PHONY: install demo test test-all test-fast test-browser lint ui sync clean bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## run the main job against the embedded simulator into data/demo.duckdb
	$(BIN)/bulutfon-pipeline demo

test: $(STAMP) ## the suite but its `extended` variants, on $(TEST_WORKERS) pytest-xdist workers
	$(COMPILE)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not extended" --durations=20 $(PYTEST_ARGS)

test-all: $(STAMP) ## every test, the `extended` variants too
	$(COMPILE)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: $(STAMP) ## the inner loop: skips the slow end-to-end scenarios
	$(BIN)/python -m pytest -m "not slow and not reliability and not browser" $(PYTEST_ARGS)

test-browser: $(STAMP) ## the Dagster UI in Chromium (needs /usr/bin/chromium); screenshots in test-artifacts/browser/
	$(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

ui: $(STAMP) ## the simulator plus `dagster dev` on http://127.0.0.1:3000
	$(BIN)/bulutfon-pipeline ui

BENCH_ARGS ?=
bench: $(STAMP) ## the benchmarks (installs the bench extra: dlt); BENCH_ARGS=--quick for a smoke run
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(COMPILE)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
