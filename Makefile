# Two entry points: `make serve` (run the service with the bundled model) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUNDLE ?= models/en-de
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint typecheck pytest test-quick model bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The service needs no torch: a fresh `make serve` installs only the service extra.
$(VENV)/.service: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[service]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[service,export,dev]'
	touch $@ $(VENV)/.service

serve: $(VENV)/.service
	SERVICE_BUNDLE_DIR=$(BUNDLE) SERVICE_HOST=$(HOST) SERVICE_PORT=$(PORT) $(PY) -m service

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check service model_export tests
	$(VENV)/bin/mypy

pytest: $(VENV)/.dev
	$(PY) -m pytest -q -p no:cacheprovider

test: lint pytest

# Reproduce the shipped default model from scratch (downloads the Debian package, ~45 min).
model: $(VENV)/.dev
	$(PY) -m model_export all --lang de --work work --out $(BUNDLE)

clean:
	rm -rf $(VENV) work .pytest_cache .mypy_cache .ruff_cache
