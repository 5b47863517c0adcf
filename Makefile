# Two commands for a fresh machine: `make train` and `make test` (each sets everything up first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup data browser train test test-fast lint format clean

setup: $(INSTALLED) data browser

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[dev]'
	touch $@

data:
	./scripts/install_data.sh

browser:  ## Debian's chromium for the explorer's browser test
	./scripts/install_browser.sh

train: setup  ## train the default experiment (DCGAN on Fashion-MNIST); extra overrides via ARGS="..."
	$(BIN)/ganforge-train $(ARGS)

test: lint  ## lint, then the whole suite, slow tests included (what CI runs)
	$(BIN)/pytest -m "slow or not slow" $(PYTEST_ARGS)

test-fast: setup  ## the quick suite only
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup  ## ruff, mypy and the (offline) pre-commit hooks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src benchmarks scripts
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pre-commit run --all-files --show-diff-on-failure

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
