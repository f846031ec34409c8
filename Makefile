# The two commands of the README: `make demo` and `make test`. Both set everything up on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# guardlink and what it runs on; then the test tools too (pytest, scipy, hypothesis ...)
DEMO_STAMP := $(VENV)/.demo-installed
TEST_STAMP := $(VENV)/.test-installed

.PHONY: demo test lint install system-deps schemas clean

$(BIN)/python:
	@echo "== creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "== installing guardlink and its runtime dependencies (once; the test tools are not needed for the demo)"
	$(BIN)/python -m pip install --progress-bar on -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(DEMO_STAMP)
	@echo "== installing the test tools (pytest, scipy, hypothesis ...)"
	$(BIN)/python -m pip install --progress-bar on -e '.[test]'
	touch $@

install: $(TEST_STAMP)

## demo: embedded broker, edge node, simulated devices and a police watcher (Ctrl-C stops)
# The shell traps Ctrl-C so that the demo's own clean stop (exit 130) is not reported by make as an error.
demo: $(DEMO_STAMP)
	@trap true INT; $(BIN)/guardlink demo || [ $$? -eq 130 ]

## test: installs the servers tests run against (mosquitto, victoria-metrics), then runs the whole suite
test: $(TEST_STAMP) system-deps
	$(BIN)/python -m pytest

## lint: ruff, mypy on the contract, drivers, gateway, edge and hub, and the import layers (pyproject.toml)
lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

system-deps:
	bash .ci/system-deps

## schemas: regenerate the committed JSON Schemas from the models
schemas: $(DEMO_STAMP)
	$(BIN)/guardlink schema all --write

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
