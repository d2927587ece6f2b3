# Two commands do everything on a fresh Debian 12 machine:
#   make demo   - bootstrap, then run the embedded default case (quick preset)
#   make test   - bootstrap, then the whole test suite (fast and slow checks)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CASE ?= cases/graphene_borophene
PRESET ?= quick
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MPLBACKEND := Agg

.PHONY: bootstrap demo test test-fast test-slow clean-runs

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/multiscale run $(CASE) --preset $(PRESET)

# Fast checks first (they fail early), then the slow physics checks.
test: bootstrap
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m "slow" || test $$? -eq 5  # exit 5: no slow test collected

test-fast: bootstrap
	$(PY) -m pytest -q -m "not slow"

test-slow: bootstrap
	$(PY) -m pytest -q -m "slow" || test $$? -eq 5  # exit 5: no slow test collected

clean-runs:
	rm -rf $(CASE)/runs
