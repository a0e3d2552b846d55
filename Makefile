# One command per habit. `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Offline mirror, local directory, file:// or http(s) URL; empty = the public mirrors.
SOURCE ?=
ARGS   ?=

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# This machine's pip config names local indexes that may not exist; drop that noise only.
QUIET := { grep -v "^WARNING: Location" || true; }

.PHONY: run test lint bench venv clean-cache

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | $(QUIET)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -c "import tensorflow, prefect, pytest"  # fail now if the install did
	touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) -m flows.autoencoder $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

test: venv
	$(PY) -m pytest

# Side by side on real MNIST: plain Keras vs ours, cached vs uncached (about 6 minutes).
bench: venv
	$(PY) -m benchmarks.run $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

lint: venv
	$(VENV)/bin/ruff check flows tasks tests

# Forget every cached stage result (outputs in data/ and artifacts/ stay).
clean-cache:
	rm -rf .cache/prefect
