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

.PHONY: bootstrap demo test test-fast test-slow clean-runs peer-motep

bootstrap:
	@bash scripts/bootstrap.sh

# The demo farms its fits, MD runs and FE solves over RANKS MPI ranks (one per core; serial
# where mpirun is missing, which is checked after the bootstrap installed it). Results equal the
# serial run's (docs/runner.md, MPI). Unbound ranks (--bind-to none): a rank done with its share of
# the fits sleeps, and the threads of the last fit (training/fit_stage.py) use its core.
RANKS ?= 2
demo: bootstrap
	@if command -v mpirun >/dev/null && [ "$(RANKS)" != 1 ]; then \
	  set -x; mpirun -n $(RANKS) --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS -x MPLBACKEND \
	    $(VENV)/bin/multiscale run $(CASE) --preset $(PRESET); \
	else set -x; $(VENV)/bin/multiscale run $(CASE) --preset $(PRESET); fi

# Fast checks first (they fail early), then the slow physics checks.
test: bootstrap
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m "slow" || test $$? -eq 5  # exit 5: no slow test collected

test-fast: bootstrap
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"

test-slow: bootstrap
	$(PY) -m pytest -q -m "slow" || test $$? -eq 5  # exit 5: no slow test collected

clean-runs:
	rm -rf $(CASE)/runs

# Independent peer for validation (../shared/ENVIRONMENT.md, "Independent peers"): motep, the MIT
# Python MTP code that reads MLIP files, in its own venv because it pulls numpy 2. Idempotent: a
# second run only checks that motep imports. tests/test_motep_peer.py uses it and skips without it.
PEER_MOTEP := .venv-peers/motep
peer-motep:
	@if [ -x $(PEER_MOTEP)/bin/python ] && $(PEER_MOTEP)/bin/python -c "import motep, motep.calculator, ase" 2>/dev/null; then \
	  echo "[peer-motep] $(PEER_MOTEP) is ready"; \
	else set -e; \
	  PYBIN=$$(command -v /usr/bin/python3 || command -v python3); \
	  $$PYBIN -m venv $(PEER_MOTEP); \
	  $(PEER_MOTEP)/bin/pip install -q --upgrade pip; \
	  $(PEER_MOTEP)/bin/pip install -q motep; \
	  $(PEER_MOTEP)/bin/python -c "import motep, motep.calculator, ase"; \
	  echo "[peer-motep] installed motep into $(PEER_MOTEP)"; \
	fi
