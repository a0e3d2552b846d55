# One command per habit. `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Offline mirror, local directory, file:// or http(s) URL; empty = the public mirrors.
SOURCE ?=
# Dask scheduler for sweeps (tcp://host:8786); empty = a thread pool on this machine.
DASK   ?=
ARGS   ?=

export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# This machine's pip config names local indexes that may not exist; drop that noise only.
QUIET := { grep -v "^WARNING: Location" || true; }

.DEFAULT_GOAL := help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

.PHONY: help run score ingest drift simulate sweep gc test test-fast lint bench bench-retrain bench-drift bench-growth bench-ingest bench-streaming bench-storage venv clean-cache server pool deploy worker deployment-run stop

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | $(QUIET)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -c "import tensorflow, prefect, pytest"  # fail now if the install did
	touch $@

venv: $(VENV)/.installed

# Uses the local server of `make server` when it is up (no temporary server: faster).
USE_SERVER = if $(PY) -c "from ops.local_prefect import is_healthy as h; exit(not h('$(API)'))"; \
  then export PREFECT_API_URL=$(API); fi

run: venv          ## run the flow (SOURCE=dir|URL, ARGS="--epochs 5 ...")
	$(USE_SERVER); $(PY) -m flows.autoencoder $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

score: venv        ## score images with the champion (INPUT=dir|URL|file; formats: docs/scoring.md)
	@test -n "$(INPUT)" || { echo "make score: give INPUT=<images: python -m mnist_autoencoder.data.inputs lists the formats>" >&2; exit 2; }
	$(USE_SERVER); MNIST_AE_DASK_ADDRESS=$(DASK) $(PY) -m flows.score --input $(INPUT) $(ARGS)

ingest: venv       ## add a batch of labelled images as a new snapshot (BATCH=dir|URL|file)
	@test -n "$(BATCH)" || { echo "make ingest: give BATCH=<labelled images: python -m mnist_autoencoder.data.inputs lists the formats>" >&2; exit 2; }
	$(USE_SERVER); $(PY) -m flows.ingest --batch $(BATCH) $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

drift: venv        ## check a batch for drift against the champion, without ingesting it (BATCH=...)
	@test -n "$(BATCH)" || { echo "make drift: give BATCH=<directory, URL or file of images>" >&2; exit 2; }
	$(USE_SERVER); $(PY) -m flows.drift --batch $(BATCH) $(ARGS)

simulate: venv     ## cut MNIST into a base and batches (data/simulate), ingest them one by one
	$(PY) -m ops.simulate $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

sweep: venv        ## compare variants x code sizes (ARGS="--latent-dims 8,32 ...", DASK=)
	$(USE_SERVER); MNIST_AE_DASK_ADDRESS=$(DASK) $(PY) -m flows.sweep $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

DRY_RUN ?=  # make gc DRY_RUN=1: list what would be removed, remove nothing
gc: venv           ## remove old derived files nothing in use needs (DRY_RUN=1 only lists them)
	$(PY) -m ops.gc $(if $(DRY_RUN),--dry-run) $(ARGS)

# ---- Deployments on a local Prefect server and worker (see README) ----------
PORT       ?= 4200
API        := http://127.0.0.1:$(PORT)/api
DEPLOYMENT ?= default
PREFECT    := PREFECT_API_URL=$(API) $(VENV)/bin/prefect

server: venv       ## start the Prefect server (127.0.0.1:$(PORT)) in the background; PREFECT_DATABASE=postgresql://... for PostgreSQL
	PREFECT_DATABASE=$(PREFECT_DATABASE) $(PY) -m ops.local_prefect server --port $(PORT)

pool: server       ## create (or update) the process work pool
	$(PREFECT) work-pool create mnist-autoencoder --type process --overwrite

deploy: pool       ## register every deployment of prefect.yaml; SOURCE= is their data source
	MNIST_AE_SOURCE=$(SOURCE) MNIST_AE_DASK_ADDRESS=$(DASK) $(PREFECT) --no-prompt deploy --all

worker: pool       ## start a worker for the pool in the background
	$(PY) -m ops.local_prefect worker --port $(PORT)

FLOW_sweep  := mnist-sweep
FLOW_score  := mnist-score
FLOW_ingest := mnist-ingest
deployment-run:    ## run a deployment (DEPLOYMENT=default|smoke|scheduled-retrain|score|ingest|sweep), watch it
	$(PREFECT) deployment run '$(or $(FLOW_$(DEPLOYMENT)),mnist-autoencoder)/$(DEPLOYMENT)' \
	  --watch --watch-timeout 3600 $(ARGS)

stop:              ## stop the worker and the server
	$(PY) -m ops.local_prefect stop

test: venv         ## run the test suite (the command CI runs)
	$(PY) -m pytest

test-fast: venv    ## the inner loop: every test that needs no Prefect server or real MNIST
	$(PY) -m pytest -m "not slow" -q

# Side by side on real MNIST: plain Keras vs ours, cached vs uncached (docs/benchmarks.md).
bench: venv        ## side-by-side benchmark on real MNIST
	$(PY) -m benchmarks.run $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

bench-retrain: venv ## a warm retrain on a grown snapshot against a run from scratch (about 9 min)
	$(PY) -m benchmarks.retrain $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

bench-drift: venv  ## the drift gate's false alarms and power on real MNIST (docs/drift.md)
	$(PY) -m benchmarks.drift $(ARGS)

bench-growth: venv ## retrain, from-scratch, disk and ingest at 65k-3M images (docs/growth.md)
	$(PY) -m benchmarks.growth $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

bench-storage: venv ## the default pipeline on local disk and on S3 (moto), side by side
	$(PY) -m benchmarks.storage $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

bench-ingest: venv ## ingest 1,000,000 images as Parquet and as IDX: time and memory
	$(PY) -m benchmarks.ingest $(ARGS)

bench-streaming: venv ## the training loop before and after shards, side by side
	$(PY) -m benchmarks.streaming $(ARGS)

lint: venv         ## ruff
	$(VENV)/bin/ruff check mnist_autoencoder flows tasks tests benchmarks ops

# Forget every cached stage result (outputs in data/ and artifacts/ stay).
clean-cache:       ## forget cached stage results
	rm -rf .cache/prefect
