# islr: `make train` sets everything up and trains on the embedded synthetic set;
# `make test` sets everything up and runs the tests. `make help` lists the rest.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?=
ARGS ?=
CKPT ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,kaggle,onnx,bench,plots,video,serve,serve-test]'
	touch $@

.PHONY: help setup train evaluate bench synth bench-prepare test test-slow lint format clean
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: DATA=dir (default: synthetic set), ARGS='--epochs 10 ...', CKPT=file,"
	@echo "             RAW=dir (bench-prepare; default: ../shared/data/asl-signs-raw)"

setup: $(VENV)/.installed ## Create .venv with the pinned dependencies

train: $(VENV)/.installed ## Train the default Transformer (DATA=dir for real data, ARGS=... for flags)
	$(PY) islr.py train $(if $(DATA),--data "$(DATA)") $(ARGS)

evaluate: $(VENV)/.installed ## Evaluate a checkpoint: make evaluate CKPT=runs/<name>/model.safetensors
	@test -n "$(CKPT)" || { echo "usage: make evaluate CKPT=runs/<name>/model.safetensors"; exit 2; }
	$(PY) islr.py evaluate "$(CKPT)" $(if $(DATA),--data "$(DATA)") $(ARGS)

bench: $(VENV)/.installed ## Training and inference speed of a preset (ARGS='--preset article10 ...')
	$(PY) islr.py bench $(ARGS)

synth: $(VENV)/.installed ## Generate the synthetic top-10 set into datasets/synthetic-top10
	@if [ -z "$(ARGS)" ] && [ -f datasets/synthetic-top10/sign_to_prediction_index_map.json ]; then \
		echo "datasets/synthetic-top10 is already there (make clean removes it)"; \
	else $(PY) islr.py synth $(ARGS); fi

bench-prepare: $(VENV)/.installed ## Conversion speed: ours vs one pandas DataFrame per file (RAW=dir)
	$(PY) -m bench.prepare "$(or $(RAW),../shared/data/asl-signs-raw)"

test: $(VENV)/.installed ## Run the tests (fast ones; real-data tests skip without ../shared/data)
	$(PY) -m pytest -q $(ARGS)

test-slow: $(VENV)/.installed ## Run the slow end-to-end tests too
	$(PY) -m pytest -q -m '' $(ARGS)

lint: $(VENV)/.installed ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed ## ruff format and fix
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean: ## Remove the venv, caches and the synthetic set (keeps runs/ and other datasets/)
	rm -rf $(VENV) datasets/synthetic-top10 .pytest_cache .ruff_cache *.egg-info build
