# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
HELM := .tools/bin/helm

.PHONY: run test test-fast lint bench helm clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

$(HELM):
	./scripts/ensure-helm.sh

helm: $(HELM)

## A local stack: real Synapse on SQLite, every service wired to it, ready-to-curl URLs.
run: $(STAMP)
	$(BIN)/python -m devstack

## Install what the tests need and run them all (every tier: unit, charts, integration).
test: $(STAMP) $(HELM)
	./scripts/ensure-system-packages.sh
	./scripts/ensure-e2ee-reader.sh
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/pytest $(PYTEST_ARGS)

## The fast tiers only: unit (pure functions, in-process apps) and charts (render-only helm).
test-fast: $(STAMP) $(HELM)
	./scripts/ensure-system-packages.sh
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/pytest -m "unit or charts" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## Benchmarks: prints numbers and ratios against the comparison run in the same session.
bench: $(STAMP)
	scripts/ensure-helm.sh
	scripts/ensure-system-packages.sh bench
	scripts/ensure-e2ee-reader.sh
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
