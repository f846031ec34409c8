# The two commands of the README: `make demo` and `make test`. Both set everything up on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install system-deps schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## demo: embedded broker, edge node, simulated devices and a police watcher (Ctrl-C stops)
demo: $(STAMP)
	$(BIN)/guardlink demo

## test: installs the servers tests run against (mosquitto, victoria-metrics), then runs the whole suite
test: $(STAMP) system-deps
	$(BIN)/python -m pytest

system-deps:
	bash .ci/system-deps

## schemas: regenerate the committed JSON Schemas from the models
schemas: $(STAMP)
	$(BIN)/guardlink schema all --write

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis *.egg-info
