# The commands of the README. Each sets itself up from a fresh clone: a virtual environment in
# .venv, installed from pyproject.toml at the exact versions of cluster/constraints.txt (re-installed
# whenever either changes). The constraints are what the tests pass with, and they spare pip's resolver
# its backtracking through boto3/botocore/aiobotocore releases: measured on 2 cores with no pip cache,
# 75 s with them against 251 s without (most of it resolving), in a quickstart of about 10 minutes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: quickstart test test-fast lint bench chromium

$(VENV)/.installed: pyproject.toml cluster/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -c cluster/constraints.txt
	touch $@

## Run the main job on the embedded default (local Ray, synthetic data, jobs/quickstart.yaml).
quickstart: $(VENV)/.installed
	$(BIN)/partctl submit --encoders all

## Headless Chromium for the report tests (they open report.html in it); installed once, if missing.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

## Lint and run the whole test suite (what CI runs).
test: $(VENV)/.installed chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

## The fast lane: lint, then every test that needs no Ray, no S3 server, no browser and no long training
## (under 2 minutes on 2 cores). tests/conftest.py fails a test that uses Ray, S3 or Chromium without its marker.
test-fast: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not ray and not s3 and not browser and not slow"

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
